"""Reliability: exact resume after SIGKILL, crash-safe checkpoints, signals, safe loading,
non-finite losses and verified downloads. Kills and signals go to a real scripts/train.py; the
rest runs in-process."""

import hashlib
import os
import pickle
import signal
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch

from tinygpt.atomic import atomic_write, temporary_beside
from tinygpt.data import corpus
from tinygpt.errors import RunStopped, UsageError
from tinygpt.lab.report.events import scalars_by_step
from tinygpt.model.gpt import GPT
from tinygpt.training import checkpoint_callbacks as checkpoints
from tinygpt.training import train as train_module
from tinygpt.weights.checkpoint import read_checkpoint
from tinygpt.weights.complete import complete

ROOT = Path(__file__).resolve().parents[1]
# Dropout on, so that resuming must also restore the RNG; a loss logged at every step.
EXACT = ["model.drop_rate=0.1", "trainer.log_every_n_steps=1", "trainer.max_steps=60",
         "trainer.val_check_interval=25", "save_every_n_steps=10", "sample.max_new_tokens=4"]


def ckpt_step(path: Path) -> int:
    return read_checkpoint(path)["global_step"]


@pytest.mark.slow
def test_sigkill_then_resume_repeats_every_later_loss(tmp_path, smoke, run_script, popen_train,
                                                      wait_for, train_run):
    cache = f"data.cache_dir={tmp_path / 'cache'}"
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    train_run(*EXACT, run_dir=straight)  # the uninterrupted run, in-process

    proc = popen_train(*smoke, *EXACT, cache, f"hydra.run.dir={killed}")
    last = killed / "checkpoints" / "last.ckpt"
    try:
        wait_for(lambda: last.exists() and ckpt_step(last) >= 20, what="a checkpoint at step 20")
    finally:
        proc.kill()  # SIGKILL: no handler runs, nothing is flushed
        proc.communicate()
    k = ckpt_step(last)
    assert 20 <= k < 60

    p = run_script("train.py", *smoke, *EXACT, cache, f"hydra.run.dir={killed}", "resume=true")
    assert p.returncode == 0, p.stderr[-2000:]
    a = scalars_by_step(straight, "train/loss")
    b = scalars_by_step(killed, "train/loss")
    assert len(a) == 60 and all(s in b for s in range(k, 60))
    for s in b:  # same config and seed: the same loss at every step, before and after the kill
        assert b[s] == pytest.approx(a[s], abs=1e-6), s


def test_a_signal_that_lands_during_the_ranks_agreement_is_not_lost(train_run, monkeypatch):
    # Python runs a handler between any two bytecodes, also inside the all-reduce by which the
    # ranks agree; a DDP run once lost a SIGUSR1 that landed there and trained to the end.
    agree, sent = checkpoints.signal_on_any_rank, []

    def signal_mid_agreement(received, trainer):
        if trainer.global_step == 10 and not sent:
            sent.append(True)
            os.kill(os.getpid(), signal.SIGUSR1)  # handled before this function returns
        return agree(received, trainer)

    monkeypatch.setattr(checkpoints, "signal_on_any_rank", signal_mid_agreement)
    result, _ = train_run("save_every_n_steps=0")
    assert sent and result.signal == signal.SIGUSR1
    assert result.steps == 11  # picked up by the next step's agreement
    assert ckpt_step(result.last_checkpoint) == 11


KILL_MID_WRITE = """
import os, signal, sys, torch
from tinygpt.atomic import atomic_write
path = sys.argv[1]
with atomic_write(path) as f:
    torch.save({"global_step": 1, "w": torch.ones(1000)}, f)
with atomic_write(path) as f:
    f.write(b"PK half a checkpoint")
    f.flush()
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_kill_during_checkpoint_write_keeps_previous_loadable(tmp_path):
    path = tmp_path / "last.ckpt"
    p = subprocess.run([sys.executable, "-c", KILL_MID_WRITE, str(path)], cwd=ROOT)
    assert p.returncode == -signal.SIGKILL
    ckpt = read_checkpoint(path)
    assert ckpt["global_step"] == 1 and torch.equal(ckpt["w"], torch.ones(1000))


def test_checkpoints_are_written_atomically_in_one_step(tmp_path, monkeypatch):
    from tinygpt.weights import checkpoint as checkpoint_mod

    used = []
    real = checkpoint_mod.atomic_write
    monkeypatch.setattr(checkpoint_mod, "atomic_write", lambda p: used.append(p) or real(p))
    path = tmp_path / "c.ckpt"
    checkpoints.AtomicCheckpointIO().save_checkpoint({"a": torch.ones(2)}, path)
    checkpoints.AtomicCheckpointIO().save_checkpoint({"a": torch.zeros(2)}, path)
    assert used == [path, path]  # Lightning's writes go through atomic_write
    assert torch.equal(read_checkpoint(path)["a"], torch.zeros(2))
    assert [f.name for f in tmp_path.iterdir()] == ["c.ckpt"]


def test_the_trainer_writes_every_checkpoint_through_the_atomic_writer(train_run,
                                                                       monkeypatch):
    from tinygpt.weights import checkpoint as checkpoint_mod

    written, real = [], checkpoint_mod.atomic_write
    monkeypatch.setattr(checkpoint_mod, "atomic_write",
                        lambda p: written.append(Path(p).name) or real(p))
    result, _ = train_run("save_every_n_steps=10")
    saved = sorted(p.name for p in (result.run_dir / "checkpoints").iterdir())
    assert saved == ["best-40.ckpt", "last.ckpt"] and set(saved) <= set(written)


def dead_pid() -> int:
    """The pid of a process that has ended."""
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    return done.pid


def test_a_killed_writes_temporary_goes_at_the_next_write(tmp_path):
    path = tmp_path / "last.ckpt"
    p = subprocess.run([sys.executable, "-c", KILL_MID_WRITE, str(path)], cwd=ROOT)
    assert p.returncode == -signal.SIGKILL
    left = sorted(f.name for f in tmp_path.iterdir())
    assert len(left) == 2 and ".last.ckpt.tmp" in left[0]  # the killed write's temporary
    with atomic_write(path) as f:
        f.write(b"the next write")
    assert [f.name for f in tmp_path.iterdir()] == ["last.ckpt"]


def test_a_killed_downloads_temporary_goes_at_the_next_download(http_server, tmp_path,
                                                                monkeypatch):
    url, www = http_server
    (www / "corpus.txt").write_text("To be, or not to be. " * 50)
    monkeypatch.setitem(corpus.PRESETS, "the_verdict",
                        {"text": corpus.Download(f"{url}/corpus.txt", None)})
    dest = tmp_path / "cache" / "corpora" / "the_verdict.txt"
    stale = temporary_beside(dest).with_name(
        temporary_beside(dest).name.rsplit("-", 1)[0] + f"-{dead_pid()}")
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half a download")  # what a SIGKILL mid-download leaves
    corpus.load_text("the_verdict", cache_dir=tmp_path / "cache")
    assert sorted(f.name for f in dest.parent.iterdir()) == ["the_verdict.txt",
                                                             "the_verdict.txt.sha256"]


def test_a_live_writers_temporary_is_left_alone(tmp_path):
    path = tmp_path / "f"
    mine = temporary_beside(path)  # this process's: it is running
    mine.write_bytes(b"being written")
    with atomic_write(tmp_path / "f") as f:  # the same process, another write: its own name
        f.write(b"x")
    assert not mine.exists()  # a write's own temporary is its to replace
    other = mine.with_name(mine.name.rsplit("-", 1)[0] + f"-{os.getppid()}")  # alive
    other.write_bytes(b"another writer's")
    with atomic_write(path) as f:
        f.write(b"y")
    assert other.exists()


def test_the_rename_is_followed_by_a_sync_of_its_folder(tmp_path, monkeypatch):
    import stat

    events, fsync, replace = [], os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: events.append(
        "sync folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "sync file") or fsync(fd))
    monkeypatch.setattr(os, "replace", lambda a, b: events.append("rename") or replace(a, b))
    with atomic_write(tmp_path / "f") as f:
        f.write(b"x")
    assert events == ["sync file", "rename", "sync folder"]


def test_a_second_signal_while_stopping_ends_the_run_at_once(tmp_path, train_cli, smoke,
                                                            cache_dir, monkeypatch):
    # the first SIGTERM lands at step 12; the second while that step's checkpoint is written
    real_save = checkpoints.FinalCheckpoint._save

    class FirstSignal(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if trainer.global_step == 12:
                os.kill(os.getpid(), signal.SIGTERM)

    def save_then_signal_again(self, trainer):
        os.kill(os.getpid(), signal.SIGTERM)
        real_save(self, trainer)

    monkeypatch.setattr(checkpoints.FinalCheckpoint, "_save", save_then_signal_again)
    real_train = train_module.train
    monkeypatch.setattr(train_module, "train", lambda *a, **k: real_train(
        *a, **k, callbacks=[FirstSignal()]))
    before = signal.getsignal(signal.SIGTERM)
    run = tmp_path / "run"
    code, err = train_cli(*smoke, "save_every_n_steps=5", f"data.cache_dir={cache_dir}",
                          f"hydra.run.dir={run}")
    assert code == 128 + signal.SIGTERM, err[-2000:]
    assert "stopped at once by a second SIGTERM" in err and "is from step 10" in err
    assert "resume with: " in err and "Traceback" not in err
    assert ckpt_step(run / "checkpoints" / "last.ckpt") == 10  # the one before, whole
    assert signal.getsignal(signal.SIGTERM) == before  # the run's handler is gone with it


class Payload:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_malicious_checkpoint_is_refused_and_never_runs(tmp_path, train_run, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where the payload would leave its mark
    evil = tmp_path / "evil.ckpt"
    evil.write_bytes(pickle.dumps({"state_dict": Payload(), "hyper_parameters": {}}))
    with pytest.raises(UsageError, match="cannot read checkpoint"):
        complete(str(evil), "The", 5)
    with pytest.raises(UsageError, match="cannot read checkpoint"):
        train_run(f"ckpt_path={evil}")
    assert not (tmp_path / "PWNED").exists()


class InfGradient(torch.autograd.Function):
    """The identity, whose gradient is inf: a finite loss with a gradient that overflowed."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float("inf")


BAD = {"nan": lambda loss: loss * torch.tensor(float("nan")),
       "inf": lambda loss: loss * torch.tensor(float("inf")),
       "inf gradient": InfGradient.apply}


@pytest.fixture
def bad_at(monkeypatch):
    """Spoil the k-th training loss (validation losses stay real): NaN, inf, or finite with an
    inf gradient."""

    def inject(k: int, how: str = "nan") -> None:
        real, calls = GPT.loss, {"n": 0}

        def loss(self, idx, targets):
            out = real(self, idx, targets)
            if self.training and idx.device.type != "meta":  # not the FLOP count's dry run
                calls["n"] += 1
                if calls["n"] == k:
                    return BAD[how](out)
            return out

        monkeypatch.setattr(GPT, "loss", loss)

    return inject


class Weights(L.Callback):
    """The weights as the step at `step` begins, and the module, to read its weights after."""

    def __init__(self, step: int):
        self.step, self.before, self.module = step, None, None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.module = pl_module
        if trainer.global_step == self.step and self.before is None:
            self.before = {k: v.clone() for k, v in pl_module.model.state_dict().items()}

    def unchanged(self) -> bool:
        after = self.module.model.state_dict()
        return all(torch.equal(self.before[k], after[k]) for k in self.before)


@pytest.mark.parametrize("how", BAD)
def test_a_bad_step_stops_the_run_untouched_and_keeps_the_last_good_checkpoint(train_run,
                                                                                bad_at, how):
    bad_at(13, how)
    weights = Weights(12)
    with pytest.raises(RunStopped) as e:
        train_run("save_every_n_steps=5", callbacks=[weights])
    what = "gradient" if how == "inf gradient" else "loss"
    assert f"the {what} became NaN or inf at step 12" in str(e.value)
    assert "last good checkpoint" in str(e.value)
    ckpt = read_checkpoint(Path(str(e.value).split("checkpoint is ")[1].split(" (")[0]))
    assert ckpt["global_step"] == 10
    assert weights.unchanged()  # the bad step reached no weight


@pytest.mark.parametrize("how", BAD)
def test_a_bad_step_can_be_skipped(train_run, bad_at, how):
    bad_at(13, how)
    weights = Weights(12)

    class After(L.Callback):  # the weights once the skipped step is over
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trainer.global_step == 13 and not hasattr(self, "same"):
                self.same = weights.unchanged()

    after = After()
    result, _ = train_run("on_nonfinite=skip", callbacks=[weights, after])
    ckpt = read_checkpoint(result.last_checkpoint)
    assert ckpt["global_step"] == 40  # the step was taken, with nothing to apply
    assert after.same  # and it changed no weight
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values())
    assert scalars_by_step(result.run_dir, "train/skipped_batches")[39] == 1.0


# --- downloads ------------------------------------------------------------------------------

def test_download_verifies_and_caches(http_server, tmp_path, monkeypatch):
    url, www = http_server
    text = "To be, or not to be, that is the question.\n" * 50
    (www / "corpus.txt").write_text(text, encoding="utf-8")
    sha = hashlib.sha256(text.encode()).hexdigest()
    monkeypatch.setitem(corpus.PRESETS, "the_verdict",
                        {"text": corpus.Download(f"{url}/corpus.txt", sha)})
    cache = tmp_path / "cache"
    assert corpus.load_text("the_verdict", cache_dir=cache) == text
    (www / "corpus.txt").unlink()  # the second read comes from the cache, not the server
    assert corpus.load_text("the_verdict", cache_dir=cache) == text
    assert [f.name for f in (cache / "corpora").iterdir()] == ["the_verdict.txt"]


def test_corrupted_download_is_rejected_and_leaves_nothing(http_server, tmp_path, train_run):
    url, www = http_server
    (www / "the-verdict.txt").write_text("not the verdict at all", encoding="utf-8")
    cache = tmp_path / "dl"
    with pytest.raises(UsageError) as e:
        train_run("data.name=the_verdict", f"data.url={url}/the-verdict.txt",
                  f"data.cache_dir={cache}")
    assert "corrupt" in str(e.value) and "data.name=text data.path" in str(e.value)
    assert not any((cache / "corpora").iterdir())


def test_server_down_says_how_to_use_a_local_file(tmp_path, train_run):
    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket closes
    with pytest.raises(UsageError) as e:
        train_run("data=tinyshakespeare", f"data.url=http://127.0.0.1:{port}/input.txt",
                  f"data.cache_dir={tmp_path / 'dl'}")
    assert "cannot download tinyshakespeare" in str(e.value)
    assert "data.name=text data.path=" in str(e.value)

