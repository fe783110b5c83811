"""Reliability: exact resume after SIGKILL, crash-safe checkpoints, signals, safe loading,
non-finite losses and verified downloads, each through the real entry points."""

import hashlib
import http.server
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import ROOT, TINY, run_script, scalars_by_step
from tinygpt import data as data_mod
from tinygpt.checkpoint import AtomicCheckpointIO, read_checkpoint

# Dropout on, so that resuming must also restore the RNG; a loss logged at every step.
EXACT = [*TINY, "model.drop_rate=0.1", "trainer.log_every_n_steps=1", "trainer.max_steps=60",
         "trainer.val_check_interval=25", "save_every_n_steps=10", "sample.max_new_tokens=4"]


def popen_train(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "train.py"), *args], cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def wait_for(predicate, timeout=120.0, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def ckpt_step(path: Path) -> int:
    return read_checkpoint(path)["global_step"]


@pytest.mark.slow
def test_sigkill_then_resume_repeats_every_later_loss(tmp_path):
    cache = f"data.cache_dir={tmp_path / 'cache'}"
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    p = run_script("train.py", *EXACT, cache, f"hydra.run.dir={straight}")
    assert p.returncode == 0, p.stderr[-2000:]

    proc = popen_train(*EXACT, cache, f"hydra.run.dir={killed}")
    last = killed / "checkpoints" / "last.ckpt"
    try:
        wait_for(lambda: last.exists() and ckpt_step(last) >= 20, what="a checkpoint at step 20")
    finally:
        proc.kill()  # SIGKILL: no handler runs, nothing is flushed
        proc.communicate()
    k = ckpt_step(last)
    assert 20 <= k < 60

    p = run_script("train.py", *EXACT, cache, f"hydra.run.dir={killed}", "resume=true")
    assert p.returncode == 0, p.stderr[-2000:]
    a = scalars_by_step(straight, "train/loss")
    b = scalars_by_step(killed, "train/loss")
    assert len(a) == 60 and all(s in b for s in range(k, 60))
    for s in b:  # same config and seed: the same loss at every step, before and after the kill
        assert b[s] == pytest.approx(a[s], abs=1e-6), s


def test_sigterm_saves_last_and_resumes(tmp_path):
    run = tmp_path / "run"
    args = [*TINY, "trainer.max_steps=100000", "save_every_n_steps=0",
            f"data.cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={run}"]
    proc = popen_train(*args)
    wait_for(lambda: list(run.glob("events.out.tfevents.*")), what="training to start")
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert "Traceback" not in err and "stopped by SIGTERM" in err
    k = ckpt_step(run / "checkpoints" / "last.ckpt")
    assert k > 0
    p = run_script("train.py", *args[:-1], f"hydra.run.dir={run}", "resume=true",
                   f"trainer.max_steps={k + 5}")
    assert p.returncode == 0, p.stderr[-2000:]
    assert f"trained {k + 5} steps" in p.stdout


KILL_MID_WRITE = """
import os, signal, sys, torch
from tinygpt.checkpoint import AtomicCheckpointIO
io, path = AtomicCheckpointIO(), sys.argv[1]
io.save_checkpoint({"global_step": 1, "w": torch.ones(1000)}, path)
real = torch.save
def dying_save(obj, f, *a, **k):
    f.write(b"PK half a checkpoint")
    f.flush()
    os.kill(os.getpid(), signal.SIGKILL)
torch.save = dying_save
io.save_checkpoint({"global_step": 2, "w": torch.zeros(1000)}, path)
"""


def test_kill_during_checkpoint_write_keeps_previous_loadable(tmp_path):
    path = tmp_path / "last.ckpt"
    p = subprocess.run([sys.executable, "-c", KILL_MID_WRITE, str(path)], cwd=ROOT)
    assert p.returncode == -signal.SIGKILL
    ckpt = read_checkpoint(path)
    assert ckpt["global_step"] == 1 and torch.equal(ckpt["w"], torch.ones(1000))


def test_atomic_write_replaces_in_one_step(tmp_path):
    path = tmp_path / "c.ckpt"
    AtomicCheckpointIO().save_checkpoint({"a": torch.ones(2)}, path)
    AtomicCheckpointIO().save_checkpoint({"a": torch.zeros(2)}, path)
    assert torch.equal(read_checkpoint(path)["a"], torch.zeros(2))
    assert [f.name for f in tmp_path.iterdir()] == ["c.ckpt"]


class Payload:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def error_line(p) -> str:
    """The last stderr line, after checking the process failed without a traceback."""
    assert p.returncode != 0, p.stdout[-500:]
    assert "Traceback" not in p.stderr, p.stderr[-2000:]
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: "), p.stderr[-2000:]
    assert sum(line.startswith("error: ") for line in lines) == 1
    return lines[-1]


def test_malicious_checkpoint_is_refused_and_never_runs(tmp_path):
    evil = tmp_path / "evil.ckpt"
    evil.write_bytes(pickle.dumps({"state_dict": Payload(), "hyper_parameters": {}}))
    p = run_script("generate.py", f"ckpt={evil}", cwd=tmp_path)
    assert "cannot read checkpoint" in error_line(p)
    p = run_script("train.py", *TINY, f"ckpt_path={evil}", f"data.cache_dir={tmp_path}",
                   f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert "cannot read checkpoint" in error_line(p)
    assert not (tmp_path / "PWNED").exists()


def nan_env(call: int) -> dict:
    faults = str(ROOT / "tests" / "faults")
    return {"TINYGPT_NAN_AT_CALL": str(call),
            "PYTHONPATH": os.pathsep.join([faults, os.environ.get("PYTHONPATH", "")])}


def test_nan_loss_stops_with_the_step_and_keeps_last_good_checkpoint(tmp_path):
    run = tmp_path / "run"
    p = run_script("train.py", *TINY, "save_every_n_steps=5", f"data.cache_dir={tmp_path}",
                   f"hydra.run.dir={run}", env=nan_env(13))
    line = error_line(p)
    assert "NaN or inf at step 12" in line and "last good checkpoint" in line
    ckpt = read_checkpoint(run / "checkpoints" / "last.ckpt")
    assert ckpt["global_step"] == 10
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values())


def test_nan_loss_can_skip_the_batch(tmp_path):
    run = tmp_path / "run"
    p = run_script("train.py", *TINY, "on_nonfinite=skip", f"data.cache_dir={tmp_path}",
                   f"hydra.run.dir={run}", env=nan_env(13))
    assert p.returncode == 0, p.stderr[-2000:]
    ckpt = read_checkpoint(run / "checkpoints" / "last.ckpt")
    assert ckpt["global_step"] == 40  # the NaN batch was dropped, not counted as a step
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values())
    ea = EventAccumulator(str(run), size_guidance={"scalars": 0})
    ea.Reload()
    assert ea.Scalars("train/skipped_batches")[-1].value == 1.0
    assert "nan at step 12: batch skipped" in p.stderr


# --- downloads ------------------------------------------------------------------------------

@pytest.fixture
def http_server(tmp_path):
    """A file server on 127.0.0.1 for tmp_path/www; yields its base URL."""
    www = tmp_path / "www"
    www.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **k):
            super().__init__(*a, directory=str(www), **k)

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", www
    server.shutdown()
    server.server_close()


def test_download_verifies_and_caches(http_server, tmp_path, monkeypatch):
    url, www = http_server
    text = "To be, or not to be, that is the question.\n" * 50
    (www / "corpus.txt").write_text(text, encoding="utf-8")
    sha = hashlib.sha256(text.encode()).hexdigest()
    monkeypatch.setitem(data_mod.PRESETS, "tiny_test", (f"{url}/corpus.txt", sha))
    cache = tmp_path / "cache"
    assert data_mod.load_text("tiny_test", cache_dir=cache) == text
    (www / "corpus.txt").unlink()  # the second read comes from the cache, not the server
    assert data_mod.load_text("tiny_test", cache_dir=cache) == text
    assert [f.name for f in (cache / "corpora").iterdir()] == ["tiny_test.txt"]


def test_corrupted_download_is_rejected_and_leaves_nothing(http_server, tmp_path):
    url, www = http_server
    (www / "the-verdict.txt").write_text("not the verdict at all", encoding="utf-8")
    cache = tmp_path / "cache"
    p = run_script("train.py", *TINY, "data.name=the_verdict", f"data.url={url}/the-verdict.txt",
                   f"data.cache_dir={cache}", f"hydra.run.dir={tmp_path / 'run'}")
    assert "corrupt" in error_line(p) and "data.name=text data.path" in error_line(p)
    assert not any((cache / "corpora").iterdir())


def test_server_down_says_how_to_use_a_local_file(tmp_path):
    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket closes
    p = run_script("train.py", *TINY, "data=tinyshakespeare",
                   f"data.url=http://127.0.0.1:{port}/input.txt",
                   f"data.cache_dir={tmp_path}", f"hydra.run.dir={tmp_path / 'run'}")
    line = error_line(p)
    assert "cannot download tinyshakespeare" in line and "data.name=text data.path=" in line

