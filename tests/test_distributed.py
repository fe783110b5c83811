"""Two CPU processes through Lightning's DDP (gloo), via the real entry point."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tinygpt.errors import UsageError
from tinygpt.lab.report.events import scalars_by_step
from tinygpt.training.datamodule import split_batch
from tinygpt.weights.checkpoint import read_checkpoint

ROOT = Path(__file__).resolve().parents[1]
# Dropout off: with it, each rank draws its own masks and no two runs could agree exactly.
BASE = ["experiment=smoke", "trainer.enable_progress_bar=false", "model.drop_rate=0",
        "trainer.log_every_n_steps=1", "save_every_n_steps=10"]
DDP = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"]
TOL = 1e-4  # float32 sums of the same numbers in another order (all-reduce vs one batch)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, run_script, cache_dir, train_into):
    """The same run on one process (in-process) and on two (a real DDP launch)."""
    tmp = tmp_path_factory.mktemp("ddp")
    train_into(tmp / "one", *BASE[2:])
    p = run_script("train.py", *BASE, *DDP, f"data.cache_dir={cache_dir}",
                   f"hydra.run.dir={tmp / 'two'}")
    assert p.returncode == 0, p.stderr[-3000:]
    return {"one": tmp / "one", "two": tmp / "two", "tmp": tmp, "cache": cache_dir}


@pytest.mark.slow
def test_two_processes_train_the_same_model_as_one(runs):
    one, two = runs["one"], runs["two"]
    assert len(list(two.glob("events.out.tfevents.*"))) == 1  # rank 0 alone writes events
    assert sorted(p.name for p in (two / "checkpoints").iterdir()) == ["best-40.ckpt", "last.ckpt"]
    a, b = read_checkpoint(one / "checkpoints" / "last.ckpt"), read_checkpoint(
        two / "checkpoints" / "last.ckpt")
    diff = max((a["state_dict"][k] - b["state_dict"][k]).abs().max().item()
               for k in a["state_dict"])
    assert diff < 1e-5
    va, vb = scalars_by_step(one, "val/loss"), scalars_by_step(two, "val/loss")
    assert abs(list(va.values())[-1] - list(vb.values())[-1]) < TOL
    # train/loss of the two-process run is the mean over both ranks' halves of the batch
    la, lb = scalars_by_step(one, "train/loss"), scalars_by_step(two, "train/loss")
    assert la.keys() == lb.keys() and all(abs(la[s] - lb[s]) < TOL for s in la)


def test_global_batch_must_split_evenly():
    assert split_batch(16, world_size=2, accumulate=2) == 4
    with pytest.raises(UsageError, match="data.batch_size=7 .* multiple of devices"):
        split_batch(7, world_size=2, accumulate=1)


def test_fsdp_config_names_a_block_wrapping_strategy():
    # a name Lightning's registry builds, not an object the config builds
    from lightning.pytorch.strategies import FSDPStrategy, StrategyRegistry

    from tinygpt.model.gpt import Block
    from tinygpt.training.config import compose_train
    from tinygpt.training.train import FSDP_BLOCKS

    cfg = compose_train("trainer=fsdp", "trainer.devices=8", "trainer.num_nodes=2")
    assert cfg.trainer.strategy == FSDP_BLOCKS
    strategy = StrategyRegistry.get(FSDP_BLOCKS)
    assert isinstance(strategy, FSDPStrategy)
    assert strategy.kwargs["auto_wrap_policy"]._module_classes == {Block}
    assert cfg.trainer.devices == 8 and cfg.trainer.num_nodes == 2


def nan_on_rank_1(at: int) -> dict:
    faults = str(ROOT / "tests" / "faults")
    return {"TINYGPT_NAN_AT_CALL": str(at), "TINYGPT_NAN_ON_RANK": "1", "PYTHONPATH": faults}


@pytest.mark.slow
def test_a_nan_on_one_rank_stops_every_rank_at_the_same_step(tmp_path, run_script, cache_dir):
    # Before the ranks agreed, rank 1 skipped backward while rank 0 waited in the gradient
    # all-reduce: a hang until gloo's timeout (this subprocess timeout fails it first).
    run = tmp_path / "run"
    p = run_script("train.py", *BASE, *DDP, f"data.cache_dir={cache_dir}",
                   f"hydra.run.dir={run}", env=nan_on_rank_1(13), timeout=180)
    ended = time.time()
    assert p.returncode == 2, p.stderr[-3000:]
    injected = float(p.stderr.split("nan injected at ")[1].split()[0])
    errors = [line for line in p.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "NaN or inf at step 12" in errors[0], p.stderr[-3000:]
    ckpt = read_checkpoint(run / "checkpoints" / "last.ckpt")
    assert ckpt["global_step"] == 10  # the last good one, written by both ranks' agreement
    print(f"a NaN on rank 1 ended both ranks' processes {ended - injected:.2f} s later")


@pytest.mark.slow
def test_a_nan_on_one_rank_is_skipped_on_every_rank(tmp_path, run_script, cache_dir):
    run = tmp_path / "run"
    p = run_script("train.py", *BASE, *DDP, "on_nonfinite=skip", f"data.cache_dir={cache_dir}",
                   f"hydra.run.dir={run}", env=nan_on_rank_1(13), timeout=180)
    assert p.returncode == 0, p.stderr[-3000:]
    assert read_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"] == 40
    assert scalars_by_step(run, "train/skipped_batches")[39] == 1.0


@pytest.mark.slow
def test_a_preempted_process_group_stops_together_and_resumes_exactly(runs, run_script,
                                                                      wait_for):
    # SIGUSR1, a scheduler's notice; SIGTERM takes the same handler (tests/test_resume.py sends it
    # to a single process, whose stop and resume it checks step for step)
    signum = signal.SIGUSR1
    run = runs["tmp"] / f"preempted-{signum}"
    common = [*BASE, *DDP, f"data.cache_dir={runs['cache']}", f"hydra.run.dir={run}"]
    proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "train.py"), *common],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # its own group, as a scheduler sees it
    last = run / "checkpoints" / "last.ckpt"
    wait_for(lambda: last.exists() and read_checkpoint(last)["global_step"] >= 10,
             what="a checkpoint at step 10")
    os.killpg(proc.pid, signum)  # every rank at once
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, err[-3000:]
    k = read_checkpoint(last)["global_step"]
    assert 10 <= k < 40 and f"stopped by {signal.Signals(signum).name} after step {k}" in err
    assert not [p for p in last.parent.iterdir() if ".tmp" in p.name]  # one whole last.ckpt
    p = run_script("train.py", *common, "resume=true")
    assert p.returncode == 0, p.stderr[-3000:]
    straight = scalars_by_step(runs["two"], "train/loss")
    resumed = scalars_by_step(run, "train/loss")
    assert all(s in resumed for s in range(k, 40))
    worst = max(abs(resumed[s] - straight[s]) for s in resumed)
    assert worst < 1e-6
    print(f"{signal.Signals(signum).name}: stopped after step {k}; resumed losses differ from "
          f"an uninterrupted run by at most {worst:.1e}")
