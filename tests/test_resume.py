"""A resume continues the run it is pointed at, with that run's own settings: its own last.ckpt
(never another run's), its recorded overrides, and only the settings a resume may change."""

import shlex
import signal
import subprocess
import time
from pathlib import Path

import lightning as L
import pytest
import yaml

from tinygpt.errors import UsageError
from tinygpt.lab.report.events import scalars_by_step
from tinygpt.training.resume import merged_overrides, refuse_changes
from tinygpt.weights.checkpoint import read_checkpoint


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


def test_the_cli_resumes_with_the_runs_own_settings_and_refuses_changes(tmp_path, train_cli):
    run, cache = tmp_path / "run", f"data.cache_dir={tmp_path / 'cache'}"
    code, err = train_cli("experiment=smoke", "seed=9", "trainer.max_steps=10", cache,
                          f"hydra.run.dir={run}")
    assert code == 0, err[-2000:]
    before = hydra_record(run)
    code, err = train_cli(f"hydra.run.dir={run}", "resume=true", "seed=3", "trainer.max_steps=20")
    assert code == 2 and "seed=9 -> 3" in err, err[-2000:]
    assert hydra_record(run) == before  # a refused resume changes nothing on disk
    # the command the stop message prints has no overrides: the run's own come back
    code, err = train_cli(f"hydra.run.dir={run}", "resume=true", "trainer.max_steps=20")
    assert code == 0, err[-2000:]
    assert "not resumable" not in err  # the loader's place is in the checkpoint
    cfg = yaml.safe_load((run / ".hydra" / "config.yaml").read_text())
    assert cfg["seed"] == 9 and cfg["trainer"]["max_steps"] == 20
    assert cfg["model"]["emb_dim"] == 32  # experiment=smoke's shape, from the record
    assert max(scalars_by_step(run, "train/loss")) >= 15


def stop_at(proc: subprocess.Popen, step: int, signum: int) -> tuple[str, str]:
    """Signal a running tinygpt-train once its progress line says `step` (the handler is in
    place before the first step, so this lands mid-run however fast the machine); its stdout
    and stderr."""
    for line in proc.stdout:
        if line.startswith("step ") and int(line.split()[1].split("/")[0]) >= step:
            break
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, err[-2000:]  # 143, 130: as a shell reports it
    assert "Traceback" not in err and f"stopped by {signal.Signals(signum).name}" in err
    return out, err


def printed_resume(err: str) -> str:
    line = next(line for line in err.splitlines() if line.startswith("resume with: "))
    return line.removeprefix("resume with: ")


@pytest.mark.slow
def test_a_run_stopped_by_sigterm_then_ctrl_c_resumes_by_its_printed_commands(
        tmp_path, smoke, popen_train, train_run):
    # A scheduler's SIGTERM, then a Ctrl+C (SIGINT) in the resumed run: each stops after its
    # step with a checkpoint, and the command each prints continues the run step for step.
    # Let Hydra name the folder after the overrides: the printed command must paste back anyway.
    exact = ["model.drop_rate=0.1", "trainer.log_every_n_steps=1", "trainer.max_steps=60",
             "save_every_n_steps=0", "sample.max_new_tokens=4", "seed=9",
             f"data.cache_dir={tmp_path / 'cache'}"]
    straight, _ = train_run(*exact, run_dir=tmp_path / "straight")
    proc = popen_train(*smoke, *exact, "trainer.enable_progress_bar=true", cwd=tmp_path)
    _, err = stop_at(proc, 10, signal.SIGTERM)
    command = printed_resume(err)
    assert ":" in command and "seed:9" in command  # the folder is named after its overrides
    again = subprocess.Popen(shlex.split(command) + ["trainer.enable_progress_bar=true"],
                             cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    _, err = stop_at(again, 30, signal.SIGINT)
    assert printed_resume(err) == command  # the same run, the same command
    p = subprocess.run(command, shell=True, cwd=tmp_path, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    run = next((tmp_path / "outputs").rglob("last.ckpt")).parent.parent
    a, b = scalars_by_step(straight.run_dir, "train/loss"), scalars_by_step(run, "train/loss")
    assert len(a) == 60 and set(b) == set(a)
    for s in a:  # the two stops and the pasted resumes repeat the uninterrupted run step for step
        assert b[s] == pytest.approx(a[s], abs=1e-6), s


# --- a run folder holds values, never code ---------------------------------------------------

PAYLOAD = "trainer.profiler={_target_:os.makedirs,_args_:[made_by_the_replay]}"


@pytest.fixture
def cli_run(tmp_path, train_cli, smoke, cache_dir, monkeypatch):
    """A smoke run made by tinygpt-train in this process, in tmp_path (the working folder,
    where a payload would leave its mark)."""
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    code, err = train_cli(*smoke, "trainer.max_steps=10", f"data.cache_dir={cache_dir}",
                          f"hydra.run.dir={run}")
    assert code == 0, err[-2000:]
    return run


def resume(train_cli, run: Path, *more: str) -> tuple[int, str]:
    return train_cli(f"hydra.run.dir={run}", "resume=true", "trainer.max_steps=12", *more)


def one_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err[-3000:]
    return lines[0]


def test_a_replayed_override_that_names_an_object_is_refused_and_never_runs(cli_run,
                                                                            train_cli):
    overrides = cli_run / ".hydra" / "overrides.yaml"
    overrides.write_text(overrides.read_text() + f"- {PAYLOAD}\n")
    before = {p.name: p.read_bytes() for p in (cli_run / ".hydra").iterdir()}
    code, err = resume(train_cli, cli_run)
    assert code == 2
    line = one_error(err)
    assert str(overrides) in line and "trainer.profiler._target_=os.makedirs" in line
    assert not (cli_run.parent / "made_by_the_replay").exists()  # the payload never ran
    assert {p.name: p.read_bytes() for p in (cli_run / ".hydra").iterdir()} == before


def test_a_replayed_override_of_hydras_own_config_is_refused(cli_run, train_cli):
    overrides = cli_run / ".hydra" / "overrides.yaml"
    evil = "hydra.callbacks.run_dir_guard._target_=os.getcwd"
    overrides.write_text(overrides.read_text() + f"- {evil}\n")
    code, err = resume(train_cli, cli_run)
    assert code == 2 and evil in one_error(err) and "Hydra's own config" in err


def test_a_recorded_config_that_names_an_object_is_refused(cli_run, train_cli):
    config = cli_run / ".hydra" / "config.yaml"
    text = config.read_text().replace("  profiler: null\n", "  profiler:\n    _target_: "
                                      "os.makedirs\n    _args_:\n    - made_by_the_replay\n")
    assert "_target_" in text
    config.write_text(text)
    code, err = resume(train_cli, cli_run)
    assert code == 2
    line = one_error(err)
    assert str(config) in line and "trainer.profiler._target_=os.makedirs" in line
    assert not (cli_run.parent / "made_by_the_replay").exists()


def test_a_checkpoints_settings_that_name_an_object_are_refused(cli_run, train_cli, tmp_path):
    import torch

    from tinygpt.weights.checkpoint import RUN_SETTINGS

    moved = tmp_path / "moved.ckpt"  # away from its run folder: its own record is read
    ckpt = torch.load(cli_run / "checkpoints" / "last.ckpt", weights_only=False)
    ckpt[RUN_SETTINGS]["trainer.profiler._target_"] = "os.makedirs"
    torch.save(ckpt, moved)
    code, err = train_cli(f"ckpt_path={moved}", f"hydra.run.dir={tmp_path / 'new'}")
    assert code == 2
    line = one_error(err)
    assert str(moved) in line and "trainer.profiler._target_=os.makedirs" in line
    assert not (tmp_path / "new").exists()


def test_a_command_line_object_is_refused_before_anything_is_written(train_cli, tmp_path,
                                                                    monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, err = train_cli(PAYLOAD, "trainer.max_steps=2")
    assert code == 2 and "names a Python object to build" in one_error(err)
    assert "trainer.profiler=simple" in err  # what to give instead
    assert not (tmp_path / "made_by_the_replay").exists() and not list(tmp_path.iterdir())


def test_a_malformed_record_is_one_line(cli_run, train_cli):
    (cli_run / ".hydra" / "overrides.yaml").write_text("- seed=1\n  - : [\n")
    code, err = resume(train_cli, cli_run)
    assert code == 2 and "cannot read" in one_error(err)


def test_resuming_a_default_run_keeps_its_tokenizer(train_cli, tmp_path, cache_dir):
    # the default config names its tokenizer by an interpolation; the record holds its value, so
    # a resume compares values (it once compared "${tokenizer_for:...}" with "bpe" and refused)
    run = tmp_path / "run"
    common = ["trainer.enable_progress_bar=false", "model.n_layers=1", "model.emb_dim=32",
              "model.context_length=32", "data.vocab_size=300", "probes.every=0",
              "sample.max_new_tokens=4", f"data.cache_dir={cache_dir}", f"hydra.run.dir={run}"]
    code, err = train_cli(*common, "trainer.max_steps=2", "trainer.val_check_interval=2")
    assert code == 0, err[-2000:]
    assert "tokenizer: bpe" in (run / ".hydra" / "config.yaml").read_text()
    code, err = train_cli(f"hydra.run.dir={run}", "resume=true", "trainer.max_steps=3")
    assert code == 0, err[-2000:]
