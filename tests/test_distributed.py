"""Two CPU processes through Lightning's DDP (gloo), via the real entry point."""

import os
import signal
import subprocess
import sys

import pytest

from conftest import ROOT, TINY, run_script, scalars_by_step
from test_reliability import wait_for
from tinygpt.checkpoint import read_checkpoint

# Dropout off: with it, each rank draws its own masks and no two runs could agree exactly.
BASE = [*TINY, "model.drop_rate=0", "trainer.log_every_n_steps=1", "save_every_n_steps=10"]
DDP = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"]
TOL = 1e-4  # float32 sums of the same numbers in another order (all-reduce vs one batch)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    out = {}
    for name, extra in (("one", []), ("two", DDP)):
        p = run_script("train.py", *BASE, *extra, f"data.cache_dir={tmp / 'cache'}",
                       f"hydra.run.dir={tmp / name}")
        assert p.returncode == 0, p.stderr[-3000:]
        out[name] = tmp / name
    out["tmp"] = tmp
    return out


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
    va, vb = scalars_by_step(one, "hp/val_loss"), scalars_by_step(two, "hp/val_loss")
    assert abs(list(va.values())[-1] - list(vb.values())[-1]) < TOL
    # train/loss of the two-process run is the mean over both ranks' halves of the batch
    la, lb = scalars_by_step(one, "train/loss"), scalars_by_step(two, "train/loss")
    assert la.keys() == lb.keys() and all(abs(la[s] - lb[s]) < TOL for s in la)


@pytest.mark.slow
def test_two_process_run_killed_and_resumed_continues_the_per_step_loss(runs):
    run = runs["tmp"] / "killed"
    common = [*BASE, *DDP, f"data.cache_dir={runs['tmp'] / 'cache'}", f"hydra.run.dir={run}"]
    proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "train.py"), *common],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # its own group: both ranks die together
    last = run / "checkpoints" / "last.ckpt"
    try:
        wait_for(lambda: last.exists() and read_checkpoint(last)["global_step"] >= 20,
                 what="a checkpoint at step 20")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    k = read_checkpoint(last)["global_step"]
    assert 20 <= k < 40
    p = run_script("train.py", *common, "resume=true")
    assert p.returncode == 0, p.stderr[-3000:]
    straight = scalars_by_step(runs["two"], "train/loss")
    resumed = scalars_by_step(run, "train/loss")
    assert all(s in resumed for s in range(k, 40))
    assert all(abs(resumed[s] - straight[s]) < 1e-6 for s in resumed)


def test_global_batch_must_split_evenly(tmp_path):
    p = run_script("train.py", *TINY, *DDP, "data.batch_size=7", f"data.cache_dir={tmp_path}",
                   f"hydra.run.dir={tmp_path / 'run'}")
    assert p.returncode != 0 and "Traceback" not in p.stderr
    assert "error: data.batch_size=7" in p.stderr and "multiple of devices" in p.stderr


def test_fsdp_config_builds_a_block_wrapping_strategy():
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate
    from lightning.pytorch.strategies import FSDPStrategy

    from conftest import ROOT
    from tinygpt.config import register_configs
    from tinygpt.model import Block

    register_configs()
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["trainer=fsdp", "trainer.devices=8",
                                                      "trainer.num_nodes=2"])
    strategy = instantiate(cfg.trainer.strategy)
    assert isinstance(strategy, FSDPStrategy)
    assert strategy.kwargs["auto_wrap_policy"]._module_classes == {Block}
    assert cfg.trainer.devices == 8 and cfg.trainer.num_nodes == 2
