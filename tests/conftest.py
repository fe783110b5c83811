"""Shared fixtures. Tests call the library in-process (`train_run`); `run_script` starts a real
entry point only where the process boundary is what a test checks (signals, exit codes, DDP)."""

import contextlib
import http.server
import io
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from tinygpt.training.settings import configure
from tinygpt.training.train import train

ROOT = Path(__file__).resolve().parents[1]
SEARCH_EXTRA = ROOT / ".venv" / "search"  # the search extra, apart from the venv (Makefile)

if os.environ.get("PYTEST_XDIST_WORKER"):
    # pytest -n 2: each worker (and the scripts it starts) on one thread, so two workers share
    # the cores instead of fighting over them (a matmul's threads stall while the other runs).
    import torch

    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"

# Every process the suite starts inherits this mark, so one still running when the session ends
# is found, even after the shell that started it has exited.
SESSION = "TINYGPT_TEST_SESSION"


# The user's own cache folder (their $TINYGPT_CACHE, or ~/.cache/tinygpt), as the suite found it:
# no test may write there. Every process the tests start (workers, scripts) gets a cache of the
# session's own instead, and the suite fails if the user's changed anyway.
USER_CACHE = "TINYGPT_TEST_USER_CACHE"


def cache_listing(folder: Path) -> dict[str, tuple[int, int]]:
    """Each file under folder: its size and modification time."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.rglob("*") if p.is_file()} if folder.is_dir() else {}


def pytest_configure(config):
    os.environ.setdefault(SESSION, str(os.getpid()))  # the controller's: its workers inherit it
    if os.environ.get("PYTEST_XDIST_WORKER") or USER_CACHE in os.environ:
        return
    from tinygpt.data.corpus import cache_path

    user = cache_path()
    config.user_cache = (user, cache_listing(user))
    os.environ[USER_CACHE] = str(user)
    os.environ["TINYGPT_CACHE"] = tempfile.mkdtemp(prefix="tinygpt-test-cache-")


# Modules of long tests (ten seconds and more each: processes started, notebooks executed)
LONG = ("test_distributed.py", "test_notebooks.py", "test_resume.py", "test_reliability.py")


def pytest_collection_modifyitems(config, items):
    """The long tests first: two workers then share out the short ones at the end, instead of
    one worker finishing a long test while the other waits (the suite's last minute, before)."""
    items.sort(key=lambda item: not (item.get_closest_marker("slow")
                                     or item.path.name in LONG))


def marked_processes() -> dict[int, str]:
    """Running processes (other than this one) that carry this session's mark: pid -> command."""
    mark, found = f"{SESSION}={os.environ[SESSION]}".encode(), {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if mark in (proc / "environ").read_bytes().split(b"\0"):
                cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
                if "multiprocessing.resource_tracker" in cmd and parent == os.getpid():
                    continue  # multiprocessing's helper of this process: it ends with it
                found[int(proc.name)] = cmd[:160]
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


@pytest.hookimpl(trylast=True)  # after pytest-xdist has shut its workers down
def pytest_sessionfinish(session, exitstatus):
    """Fail the suite if a process a test started outlives it (a server left running), or if
    a test wrote into the user's cache folder."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return
    report = session.config.pluginmanager.get_plugin("terminalreporter")
    if hasattr(session.config, "user_cache"):
        user, before = session.config.user_cache
        changed = sorted(set(cache_listing(user).items()) ^ set(before.items()))
        shutil.rmtree(os.environ["TINYGPT_CACHE"], ignore_errors=True)
        if changed:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
            report.write_line(f"tests wrote into the user's cache {user}: "
                              f"{sorted({name for name, _ in changed})}", red=True)
    if not Path("/proc").is_dir():
        return
    deadline = time.time() + 30  # workers and processes being stopped finish exiting
    while (left := marked_processes()) and time.time() < deadline:
        time.sleep(0.2)
    if left:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        lines = "\n".join(f"  {pid}: {cmd}" for pid, cmd in left.items())
        report.write_line(f"processes started by the tests are still running:\n{lines}",
                          red=True)


# The seconds-long config (configs/experiment/smoke.yaml), quiet.
SMOKE = ["experiment=smoke", "trainer.enable_progress_bar=false"]


@pytest.fixture(scope="session")
def smoke() -> list[str]:
    """The overrides of a seconds-long run that exercises everything."""
    return list(SMOKE)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One token cache for the whole session: each corpus is tokenised once."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def run_script():
    """Run scripts/<script> in a subprocess, as a user would; returns the CompletedProcess."""

    def run(script: str, *args: str, cwd: Path | None = None, timeout: int = 300,
            env: dict | None = None) -> subprocess.CompletedProcess:
        env = os.environ | {"PYTHONUNBUFFERED": "1"} | (env or {})
        return subprocess.run(
            [sys.executable, str(ROOT / "scripts" / script), *args],
            capture_output=True, text=True, timeout=timeout, cwd=cwd or ROOT, env=env,
        )

    return run


@pytest.fixture
def cli_main(monkeypatch, capsys):
    """An entry point's main() in this process, as a user types it (`cli_main("report", *args)`):
    its exit code and what it printed to stderr. For what the process boundary is not the point
    of: an exit code is SystemExit's code here."""
    import importlib

    def run(name: str, *args: str) -> tuple[int, str]:
        module = importlib.import_module(f"tinygpt.cli.{name}")
        if hasattr(module, "exit_now"):  # the training entry point ends without Python's teardown
            monkeypatch.setattr(module, "exit_now", lambda code=0: (_ for _ in ()).throw(
                SystemExit(code)))
        monkeypatch.setattr(sys, "argv", [f"tinygpt-{name}", *args])
        capsys.readouterr()
        with pytest.raises(SystemExit) as stop:
            module.main()
        code = stop.value.code
        return (code if isinstance(code, int) else 0 if code is None else 1), \
            capsys.readouterr().err

    return run


@pytest.fixture
def train_cli(cli_main):
    """tinygpt-train in this process (`train_cli(*args)`): its exit code and its stderr."""
    return lambda *args: cli_main("train", *args)


@pytest.fixture(scope="session")
def popen_train():
    """scripts/train.py started in the background (for signals); stdout and stderr piped."""

    def start(*args: str, cwd: Path | None = None, **kw) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, str(ROOT / "scripts" / "train.py"), *args],
                                cwd=cwd or ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, **kw)

    return start


def wait_until(predicate, timeout: float = 120.0, what: str = "condition") -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="session")
def wait_for():
    """Poll a condition until it holds, or fail the test naming it."""
    return wait_until


def smoke_train(cache: Path, run_dir: Path, *overrides: str, callbacks=None):
    """train() in this process on the smoke config; returns (result, what it printed)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        settings = configure(*SMOKE, f"data.cache_dir={cache}", *overrides, run_dir=run_dir)
        result = train(settings, run_dir, callbacks=callbacks)
    return result, out.getvalue()


@pytest.fixture
def train_run(cache_dir, tmp_path):
    """Train in-process on the smoke config plus overrides, into tmp_path/run by default."""

    def run(*overrides: str, run_dir: Path | None = None, callbacks=None):
        return smoke_train(cache_dir, run_dir or tmp_path / "run", *overrides,
                           callbacks=callbacks)

    return run


@pytest.fixture(scope="session")
def train_into(cache_dir):
    """train_into(run_dir, *overrides): an in-process smoke run into a directory of your choice
    (for module- and session-scoped fixtures)."""

    def run(run_dir: Path, *overrides: str, callbacks=None):
        return smoke_train(cache_dir, run_dir, *overrides, callbacks=callbacks)

    return run


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory, cache_dir) -> Path:
    """One smoke run, in-process, shared by the tests that only read what it wrote."""
    run_dir = tmp_path_factory.mktemp("run") / "run"
    _, printed = smoke_train(cache_dir, run_dir)
    (run_dir / "stdout.txt").write_text(printed)
    return run_dir


@pytest.fixture
def http_server(tmp_path):
    """A file server on 127.0.0.1 for tmp_path/www; yields its base URL and the folder."""
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
