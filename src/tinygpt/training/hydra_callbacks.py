"""Hydra callbacks (configs/train.yaml lists them): never clobber a run directory, and let a
sweep finish every job when one fails."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from tinygpt.errors import exit_usage
from tinygpt.run_dir import folder_name, holds_run


def first_process() -> bool:
    """Not a second rank of a multi-process run: Lightning's launcher and torchrun start those
    with the first one's run directory, which that one may already have written to."""
    return all(int(os.environ.get(k, 0)) == 0 for k in ("RANK", "LOCAL_RANK", "NODE_RANK"))


class RunDirGuard(Callback):
    """Refuses to start a new run in a directory that holds another one (never clobber).

    Hydra calls this before it writes anything into the run directory; resuming
    (`ckpt_path=...` or `resume=true`) is allowed to continue a run in place.
    """

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check([Path(config.hydra.run.dir)], config)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep = Path(config.hydra.sweep.dir)
        self._check([sweep, *(p for p in sweep.glob("*") if p.is_dir())], config)

    @staticmethod
    def _check(dirs: list[Path], config: DictConfig) -> None:
        if config.get("resume") or config.get("ckpt_path") or not first_process():
            return
        for d in dirs:
            if holds_run(d):
                exit_usage(f"{d} already holds a training run (resume it with resume=true, "
                           "or leave hydra.run.dir / hydra.sweep.dir to pick a new directory)")


@dataclass
class JobFailed:
    """What a sweep job returns when it ended with an `error:` line (already printed)."""

    message: str


def sweep_keys(config: DictConfig) -> frozenset[str]:
    """The keys a multirun sweeps: its command line's lists (a=1,2) and the sweeper's params."""
    task = [o.split("=", 1) for o in config.hydra.overrides.task if "=" in o]
    given = {k.lstrip("+~") for k, v in task if "," in v or v.startswith(("range(", "choice("))}
    return frozenset(given | set(config.hydra.sweeper.get("params") or {}))


class SweepStatus(Callback):
    """Lets a sweep run every job even when one fails (the job returns `JobFailed`), then exits
    non-zero with a count, so one diverging configuration does not cost the rest."""

    def __init__(self) -> None:
        self.failed: list[str] = []
        self.jobs = 0

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # Each job's folder (and TensorBoard run) leads with what the sweep varies.
        varying = sweep_keys(config)
        OmegaConf.register_new_resolver(
            "folder_name", lambda text: folder_name(text, varying), replace=True)

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        self.jobs += 1
        if job_return.status.name == "COMPLETED" and isinstance(job_return.return_value,
                                                                  JobFailed):
            self.failed.append(Path(config.hydra.runtime.output_dir).name)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self.failed:
            exit_usage(f"{len(self.failed)} of {self.jobs} jobs failed: "
                       f"{'; '.join(self.failed)} (their error lines are above)")
