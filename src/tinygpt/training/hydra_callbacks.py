"""Hydra callbacks for the runs Hydra's app starts (sweeps; configs/train.yaml lists them): never
clobber a run directory, take back the folder of a job that was refused, and let a sweep finish
every job when one fails, then exit with what went wrong."""

from __future__ import annotations

import os
import shutil
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from tinygpt.errors import USAGE_EXIT, UsageError, exit_usage, print_error
from tinygpt.run_dir import HYDRA, RunFolder, folder_name, holds_run
from tinygpt.training import sweep as jobs


def first_process() -> bool:
    """Not a second rank of a multi-process run: Lightning's launcher and torchrun start those
    with the first one's run directory, which that one may already have written to (and Slurm
    starts a job's tasks, one per rank, alike)."""
    return all(int(os.environ.get(k, 0)) == 0
               for k in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"))


@dataclass
class JobFailed:
    """What a job returns when it ended with an `error:` line (already printed), in a sweep with
    a bug's traceback (`crashed`), or in a parallel sweep's worker stopped by a signal (`signum`;
    its resume command printed). `trained`: it got as far as training, so its folder stays."""

    message: str
    trained: bool = False
    crashed: bool = False
    signum: int | None = None


def failure(job_return: JobReturn) -> JobFailed | None:
    """What a job that ended with `JobFailed` returned; None for any other end."""
    if job_return.status == JobStatus.COMPLETED and isinstance(job_return.return_value,
                                                               JobFailed):
        return job_return.return_value
    return None


class RunDirGuard(Callback):
    """Refuses to start a new run in a directory that holds another one (never clobber), and
    takes back what a refused job made: a run's folder (`RunFolder`, taken before Hydra makes
    it), or a sweep job's folder where the sweep's folder did not hold it before.

    Resuming (`ckpt_path=...` or `resume=true`) is allowed to continue a run in place."""

    def __init__(self) -> None:
        self.run: RunFolder | None = None
        self.sweep_had: set[str] | None = None

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check([Path(config.hydra.run.dir)], config)
        self.run = RunFolder(config.hydra.run.dir)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep = Path(config.hydra.sweep.dir)
        self._check([sweep, *(p for p in sweep.glob("*") if p.is_dir())], config)
        self.sweep_had = set(os.listdir(sweep)) if sweep.is_dir() else set()

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        failed = failure(job_return)
        if failed is None or failed.trained or not first_process():
            return
        if self.run is not None:
            self.run.undo()
        elif self.sweep_had is not None:
            job = Path(config.hydra.runtime.output_dir)
            if job.name not in self.sweep_had:
                shutil.rmtree(job, ignore_errors=True)

    @staticmethod
    def _check(dirs: list[Path], config: DictConfig) -> None:
        if config.get("resume") or config.get("ckpt_path") or not first_process():
            return
        for d in dirs:
            try:
                refuse_to_clobber(d)
            except UsageError as e:
                exit_usage(e)


def refuse_to_clobber(run_dir: Path) -> None:
    """A new run never starts in a folder that holds another run or another run's record."""
    if holds_run(run_dir) or (run_dir / HYDRA).exists():
        raise UsageError(f"{run_dir} already holds a training run (resume it with resume=true, "
                         "or leave hydra.run.dir / hydra.sweep.dir to pick a new directory)")


def sweep_keys(config: DictConfig) -> frozenset[str]:
    """The keys a multirun sweeps: its command line's lists (a=1,2) and the sweeper's params."""
    task = [o.split("=", 1) for o in config.hydra.overrides.task if "=" in o]
    given = {k.lstrip("+~") for k, v in task if "," in v or v.startswith(("range(", "choice("))}
    return frozenset(given | set(config.hydra.sweeper.get("params") or {}))


class SweepStatus(Callback):
    """Lets a sweep run every job even when one fails (the job returns `JobFailed`), then exits
    non-zero with a count (2 where every failure was bad input, 1 where a job crashed), so one
    diverging configuration does not cost the rest. A run Hydra's app starts alone exits 2 when
    it was refused. Each job's end goes to the sweep folder's jobs.jsonl, which the main process
    reads at the end: under the parallel launcher the jobs end in other processes. There a stop
    signal is passed on to the running jobs, and the sweep exits with 128 + its number."""

    def __init__(self) -> None:
        self.failed = False  # a single run's refusal
        self.sweep_dir: Path | None = None
        self.offset = 0
        self.stops: jobs.PassStopsOn | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # Each job's folder (and TensorBoard run) leads with what the sweep varies.
        varying = sweep_keys(config)
        OmegaConf.register_new_resolver(
            "folder_name", lambda text: folder_name(text, varying), replace=True)
        self.sweep_dir = Path(config.hydra.sweep.dir)
        self.offset = jobs.size(self.sweep_dir)
        if "joblib" in config.hydra.launcher.get("_target_", ""):  # this process's workers
            self.stops = jobs.PassStopsOn(self.sweep_dir)
            self.stops.start()

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        value = failure(job_return)
        if self.sweep_dir is None:
            self.failed |= value is not None
            return
        name = Path(config.hydra.runtime.output_dir).name
        end = jobs.JobEnd(name) if value is None else jobs.JobEnd(
            name, failed=value.signum is None, crashed=value.crashed, message=value.message,
            signum=value.signum, started=value.trained)
        jobs.record(self.sweep_dir, end)

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self.failed:
            raise SystemExit(USAGE_EXIT)  # its error line is above

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self.stops is not None:
            self.stops.stop()
        ended = jobs.ends(self.sweep_dir, self.offset)
        stopped = [e for e in ended if e.signum is not None]
        failed = [f"{e.job} (crashed: {e.message})" if e.crashed else e.job
                  for e in ended if e.failed]
        if failed:
            print_error(f"{len(failed)} of {len(ended)} jobs failed: {'; '.join(failed)} "
                        "(their error lines or tracebacks are above)")
        if stopped:
            name = signal.Signals(stopped[0].signum).name
            untrained = [e.job for e in stopped if not e.started]
            print(f"sweep stopped by {name}: {len(stopped) - len(untrained)} jobs stopped in "
                  "training (each printed its resume command above)"
                  + (f"; {len(untrained)} did not train: {', '.join(untrained)}" if untrained
                     else ""), file=sys.stderr, flush=True)
            raise SystemExit(128 + stopped[0].signum)
        if failed:
            raise SystemExit(1 if any(e.crashed for e in ended) else USAGE_EXIT)
