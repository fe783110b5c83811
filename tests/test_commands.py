"""Every command a run prints works when pasted into a shell as printed: the summary's generate
and tensorboard lines, a sweep's report line, values Hydra and the shell would misread."""

import json
import os
import shlex
import signal
import socket
import subprocess
import time
import urllib.request

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser

from conftest import marked_processes
from tinygpt.training.commands import override


@pytest.mark.parametrize("value", ["The for statement", "it's = a, b", "a\\b", "end\\",
                                   "outputs/seed:9+x:1/2026-11-29_10-00-00", ""])
def test_an_override_reads_back_as_its_value(value):
    word = override("prompt", value)
    assert OverridesParser.create().parse_overrides([word])[0].value() == value
    assert shlex.split(shlex.quote(word)) == [word]


def printed(stdout: str, label: str) -> str:
    return next(line for line in stdout.splitlines() if line.startswith(label)).split(
        label, 1)[1].split("   (")[0].strip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_summarys_commands_run_as_printed(tmp_path, run_script):
    # overrides in the folder's name, and a prompt with a space and a quote
    p = run_script("train.py", "experiment=smoke", "seed=9", "sample.prompt=\"It's the\"",
                   f"data.cache_dir={tmp_path / 'cache'}", cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    generate = printed(p.stdout, "generate:")
    assert "seed:9" in generate
    g = subprocess.run(generate, shell=True, cwd=tmp_path, capture_output=True, text=True,
                       timeout=120)
    assert g.returncode == 0 and g.stdout.startswith("It's the"), g.stderr[-2000:]

    port = free_port()
    tensorboard = printed(p.stdout, "tensorboard:") + f" --host 127.0.0.1 --port {port}"
    # as the shell would run it, but as its own process group: stopping it stops TensorBoard
    tb = subprocess.Popen(shlex.split(tensorboard), cwd=tmp_path, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        runs, deadline = [], time.time() + 60
        while not runs and time.time() < deadline:
            try:
                url = f"http://127.0.0.1:{port}/data/runs"
                runs = json.loads(urllib.request.urlopen(url, timeout=5).read())
            except OSError:  # not listening yet
                time.sleep(0.5)
        assert len(runs) == 1 and runs[0].startswith("experiment:smoke+")
    finally:
        os.killpg(tb.pid, signal.SIGTERM)
        tb.wait(timeout=20)


def test_the_suite_finds_a_process_a_test_left_running():
    # what pytest_sessionfinish relies on: a started process carries the session's mark, also
    # once its parent has gone (here a shell that started it in the background and exited)
    subprocess.run("sleep 60 &", shell=True, check=True)
    left = wait_for_marked("sleep 60")
    assert left, "the background sleep was not found"
    for pid in left:
        os.kill(pid, signal.SIGTERM)


def wait_for_marked(command: str) -> list[int]:
    deadline = time.time() + 10
    while time.time() < deadline:
        found = [pid for pid, cmd in marked_processes().items() if cmd.startswith(command)]
        if found:
            return found
        time.sleep(0.05)
    return []
