"""Train a tiny GPT.   tinygpt-train [key=value ...]   (see configs/train.yaml)"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from tinygpt.cli.finish import exit_now
from tinygpt.errors import USAGE_EXIT, UsageError, print_error, usage_errors_exit
from tinygpt.run_dir import HYDRA, holds_run
from tinygpt.training.hydra_callbacks import JobFailed, first_process
from tinygpt.training.precheck import precheck
from tinygpt.training.quiet import quiet_dependencies
from tinygpt.training.schema import CONFIG_PATH, register_configs
from tinygpt.training.settings import Settings, settle
from tinygpt.training.threads import apply_wait_policy

register_configs()
# What main() settled from the command line; Hydra then composes the same config for the run (its
# record in .hydra/ and the run folder) and the run takes these checked settings as they are.
settled: Settings | None = None


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="train")
def run(cfg: DictConfig) -> object:
    quiet_dependencies()
    apply_wait_policy(cfg.thread_wait, cfg.thread_spin)  # read once, as torch loads: before
    hc = HydraConfig.get()
    sweep = hc.mode == RunMode.MULTIRUN
    try:
        # a sweep's job settles its own config (main() checked the sweep's base config)
        settings = settled or settle(cfg, hc.runtime.output_dir, hc.overrides.task)
        # torch and Lightning load only now, with the config known to be good: a mistake in it
        # was answered before this, in a fraction of a second instead of after their imports.
        from tinygpt.training.train import train

        result = train(settings, hc.runtime.output_dir, sweep=sweep)
    except UsageError as e:
        if first_process():  # every rank of a multi-process run stops with the same error
            print_error(e)
            if not (cfg.resume or cfg.ckpt_path):
                forget(Path(hc.runtime.output_dir))
        if sweep:  # the sweep goes on; SweepStatus exits non-zero once every job ran
            return JobFailed(str(e))
        sys.exit(USAGE_EXIT)
    if result.signal is not None:
        sys.exit(128 + result.signal)
    return result


def forget(run_dir: Path) -> None:
    """A new run refused before it trained leaves no folder: Hydra's record and log of it go,
    then each folder up to the working directory that is left empty (a run, or anything else
    found there, stays)."""
    if holds_run(run_dir):
        return
    shutil.rmtree(run_dir / HYDRA, ignore_errors=True)
    for log in run_dir.glob("*.log"):
        log.unlink()
    here = Path.cwd().resolve()
    folder = run_dir.resolve()
    while folder != here and folder.is_relative_to(here) and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent


def main() -> None:
    global settled
    with usage_errors_exit():
        sys.argv[1:], settled = precheck(sys.argv[1:])
    try:
        run()
    except SystemExit as stop:  # Hydra's and ours: the same code, the same quick exit
        exit_now(stop.code)
    exit_now(0)


if __name__ == "__main__":
    main()
