"""A resume continues the run it is pointed at, with that run's own settings: its own last.ckpt
(never another run's), its recorded overrides, and only the settings a resume may change."""

import subprocess
import time
from pathlib import Path

import lightning as L
import pytest
import yaml

from tinygpt.checkpoint import read_checkpoint
from tinygpt.errors import UsageError
from tinygpt.lab.run_events import scalars_by_step
from tinygpt.training.resume import merged_overrides, refuse_changes


class FirstStep(L.Callback):
    def on_train_start(self, trainer, *args) -> None:
        self.step = trainer.global_step


def test_resuming_a_run_after_a_newer_one_continues_its_own(train_run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # outputs/ below here holds both runs
    a, b = tmp_path / "outputs" / "A", tmp_path / "outputs" / "B"
    train_run("trainer.max_steps=10", run_dir=a)
    time.sleep(0.05)  # B's checkpoint is the newer one
    train_run("trainer.max_steps=20", "seed=2", run_dir=b)
    b_bytes = (b / "checkpoints" / "last.ckpt").read_bytes()
    first = FirstStep()
    result, printed = train_run("trainer.max_steps=30", "resume=true", run_dir=a,
                                callbacks=[first])
    assert first.step == 10  # A's own checkpoint, not B's newer one at step 20
    assert result.steps == 30
    assert read_checkpoint(a / "checkpoints" / "last.ckpt")["global_step"] == 30
    assert (b / "checkpoints" / "last.ckpt").read_bytes() == b_bytes  # B untouched


def test_ckpt_path_latest_names_the_newest_under_outputs(train_run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    train_run("trainer.max_steps=10", run_dir=tmp_path / "outputs" / "A")
    first = FirstStep()
    _, printed = train_run("trainer.max_steps=12", "ckpt_path=latest", callbacks=[first])
    assert first.step == 10 and "ckpt_path=latest: resuming outputs/A/checkpoints" in printed


def test_a_resume_with_another_seed_or_learning_rate_is_refused_naming_each(train_run, tmp_path):
    train_run("trainer.max_steps=10", "seed=9")
    with pytest.raises(UsageError) as e:
        train_run("trainer.max_steps=20", "resume=true", "seed=3", "optim.lr=0.01")
    assert "seed=9 -> 3" in str(e.value) and "optim.lr=0.003 -> 0.01" in str(e.value)


def test_what_a_resume_may_change_and_what_it_may_not():
    record = {"seed": 9, "trainer.max_steps": 100, "sample.prompt": "a", "data.name": "text"}
    refuse_changes(record, record | {"trainer.max_steps": 200, "sample.prompt": "b"}, Path("c"))
    with pytest.raises(UsageError, match=r"data.name=text -> python_docs"):
        refuse_changes(record, record | {"data.name": "python_docs"}, Path("c"))


def test_a_resume_runs_with_the_recorded_overrides_under_the_new_ones():
    recorded = ["seed=9", "trainer.max_steps=100", "resume=true"]
    assert merged_overrides(recorded, ["hydra.run.dir=x", "resume=true",
                                       "trainer.max_steps=200"]) == [
        "seed=9", "hydra.run.dir=x", "resume=true", "trainer.max_steps=200"]


def hydra_record(run: Path) -> dict[str, bytes]:
    return {f.name: f.read_bytes() for f in (run / ".hydra").iterdir()}


def test_the_cli_resumes_with_the_runs_own_settings_and_refuses_changes(tmp_path, run_script):
    run, cache = tmp_path / "run", f"data.cache_dir={tmp_path / 'cache'}"
    p = run_script("train.py", "experiment=smoke", "seed=9", "trainer.max_steps=10", cache,
                   f"hydra.run.dir={run}")
    assert p.returncode == 0, p.stderr[-2000:]
    before = hydra_record(run)
    refused = run_script("train.py", f"hydra.run.dir={run}", "resume=true", "seed=3",
                         "trainer.max_steps=20")
    assert refused.returncode == 2 and "seed=9 -> 3" in refused.stderr, refused.stderr[-2000:]
    assert hydra_record(run) == before  # a refused resume changes nothing on disk
    # the command the stop message prints has no overrides: the run's own come back
    p = run_script("train.py", f"hydra.run.dir={run}", "resume=true", "trainer.max_steps=20")
    assert p.returncode == 0, p.stderr[-2000:]
    assert "not resumable" not in p.stderr  # the loader's place is in the checkpoint
    cfg = yaml.safe_load((run / ".hydra" / "config.yaml").read_text())
    assert cfg["seed"] == 9 and cfg["trainer"]["max_steps"] == 20
    assert cfg["model"]["emb_dim"] == 32  # experiment=smoke's shape, from the record
    assert max(scalars_by_step(run, "train/loss")) >= 15


@pytest.mark.slow
def test_a_sigterm_stopped_run_resumes_by_its_printed_command(tmp_path, smoke, popen_train,
                                                               train_run):
    # Let Hydra name the folder after the overrides: the printed command must paste back anyway.
    exact = ["model.drop_rate=0.1", "trainer.log_every_n_steps=1", "trainer.max_steps=100",
             "save_every_n_steps=0", "sample.max_new_tokens=4", "seed=9",
             f"data.cache_dir={tmp_path / 'cache'}"]
    straight, _ = train_run(*exact, run_dir=tmp_path / "straight")
    proc = popen_train(*smoke, *exact, "trainer.enable_progress_bar=true", cwd=tmp_path)
    # the signal lands mid-run: once its progress line says step 10 of 100 (the handler is in
    # place before the first step), however fast the machine
    for line in proc.stdout:
        if line.startswith("step ") and int(line.split()[1].split("/")[0]) >= 10:
            break
    proc.send_signal(15)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + 15, err[-2000:]
    assert "Traceback" not in err and "stopped by SIGTERM" in err
    command = next(line for line in err.splitlines() if line.startswith("resume with: "))
    command = command.removeprefix("resume with: ")
    assert ":" in command and "seed:9" in command  # the folder is named after its overrides
    p = subprocess.run(command, shell=True, cwd=tmp_path, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    run = next((tmp_path / "outputs").rglob("last.ckpt")).parent.parent
    a, b = scalars_by_step(straight.run_dir, "train/loss"), scalars_by_step(run, "train/loss")
    assert len(a) == 100 and set(b) == set(a)
    for s in a:  # the stop and the pasted resume repeat the uninterrupted run step for step
        assert b[s] == pytest.approx(a[s], abs=1e-6), s
