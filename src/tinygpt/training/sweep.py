"""What a sweep's jobs share when a launcher runs them in processes of their own (the parallel
launcher: docs/sweeps.md): how each ended, in a file of the sweep's folder that the main process
reads at the end, and a stop signal, which the main process passes on to every running job and
which keeps the jobs not yet started from starting."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tinygpt.errors import StoppedAtOnce

JOBS = "jobs.jsonl"  # in the sweep's folder: a line for each job as it ends
STOP = ".stopping"  # in the sweep's folder while a stop signal is being passed on
MAIN_ENV = "TINYGPT_SWEEP_MAIN"  # the sweep's main process, for its jobs to tell they are apart
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass
class JobEnd:
    """How one job of a sweep ended: its folder's name, and what it returned (`JobFailed`'s
    fields, or none for a job that trained to its end)."""

    job: str
    failed: bool = False
    crashed: bool = False
    message: str = ""
    signum: int | None = None
    started: bool = True


def record(sweep_dir: Path, end: JobEnd) -> None:
    """Append a job's end to the sweep's file: one short line in one write, which the kernel
    keeps whole beside the other processes' lines (O_APPEND)."""
    line = (json.dumps(asdict(end)) + "\n").encode()
    fd = os.open(sweep_dir / JOBS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def ends(sweep_dir: Path, offset: int) -> list[JobEnd]:
    """The ends recorded after `offset` bytes of the sweep's file: this sweep's jobs."""
    path = sweep_dir / JOBS
    if not path.exists():
        return []
    with path.open("rb") as f:
        f.seek(offset)
        return [JobEnd(**json.loads(line)) for line in f.read().splitlines() if line.strip()]


def size(sweep_dir: Path) -> int:
    """How long the sweep's file is before this sweep's jobs add to it (a folder may hold an
    earlier sweep's lines, of jobs that were all refused)."""
    path = sweep_dir / JOBS
    return path.stat().st_size if path.exists() else 0


def in_job_process() -> bool:
    """Whether this process runs a job for a sweep's main process (a parallel launcher's worker)."""
    main = os.environ.get(MAIN_ENV)
    return main is not None and main != str(os.getpid())


class PassStopsOn:
    """The main process's handlers while the jobs run in worker processes: a stop signal is
    passed on to every running job (each stops at its next step and prints its resume command;
    a second one stops them at once), and the jobs not started yet see it and do not start."""

    def __init__(self, sweep_dir: Path):
        self.sweep_dir = sweep_dir
        self.previous: dict[int, Any] = {}

    def start(self) -> None:
        os.environ[MAIN_ENV] = str(os.getpid())
        for s in STOP_SIGNALS:
            self.previous[s] = signal.signal(s, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        (self.sweep_dir / STOP).write_text(f"{signal.Signals(signum).name}\n")
        for child in multiprocessing.active_children():
            os.kill(child.pid, signum)

    def stop(self) -> None:
        for s, handler in self.previous.items():
            signal.signal(s, handler)
        (self.sweep_dir / STOP).unlink(missing_ok=True)
        os.environ.pop(MAIN_ENV, None)


def stop_requested(sweep_dir: Path) -> int | None:
    """The signal that stopped the sweep before this job began, if one did."""
    path = sweep_dir / STOP
    if not path.exists():
        return None
    return signal.Signals[path.read_text().strip()].value


@contextmanager
def own_stops() -> Iterator[None]:
    """Around a job in a worker process: signals reach the job through the main process only (its
    own process group, away from the terminal's Ctrl+C, which would otherwise arrive twice), one
    that arrives before training begins stops the job there (training puts its own handler in
    place while it runs), and one that reaches the worker between jobs is ignored (the next job
    sees the stop and does not start)."""
    os.setpgrp()

    def stop(signum: int, frame: Any) -> None:
        raise StoppedAtOnce(signum)

    for s in STOP_SIGNALS:
        signal.signal(s, stop)
    try:
        yield
    finally:
        for s in STOP_SIGNALS:
            signal.signal(s, signal.SIG_IGN)
