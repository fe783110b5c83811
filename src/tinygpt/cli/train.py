"""Train a tiny GPT.   tinygpt-train [key=value ...]   (see configs/train.yaml)

A single run is composed once, checked, and only then given its folder (`precheck`); a sweep
(`-m`), or a command with Hydra's own flags, runs through Hydra's app, each job checked first."""

from __future__ import annotations

import sys
import traceback
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from tinygpt.cli.finish import exit_now
from tinygpt.errors import (
    USAGE_EXIT,
    RunStopped,
    StoppedAtOnce,
    UsageError,
    print_error,
    usage_errors_exit,
)
from tinygpt.run_dir import HYDRA, RunFolder, holds_run
from tinygpt.training import sweep as jobs
from tinygpt.training.config import CONFIG_PATH, register_configs
from tinygpt.training.hydra_callbacks import JobFailed, first_process
from tinygpt.training.precheck import Run, precheck, task
from tinygpt.training.quiet import quiet_dependencies
from tinygpt.training.settings import Settings, settle
from tinygpt.training.threads import apply_wait_policy

register_configs()


def start(settings: Settings, run_dir: str | Path, sweep: bool = False) -> object:
    """Train; torch and Lightning load only now, with the config known to be good (a mistake in
    it was answered in a fraction of a second instead of after their imports)."""
    quiet_dependencies()
    s = settings.config
    apply_wait_policy(s.cpu.wait, s.cpu.spin)  # read once, as torch loads: before
    from tinygpt.training.train import train

    return train(settings, run_dir, sweep=sweep)


def exit_code(result: object) -> int:
    """0, or 128 + the signal that stopped the run (as a shell reports a signal's end)."""
    return 0 if result.signal is None else 128 + result.signal


def run(r: Run) -> int:
    """A single run in its folder; its exit code. A run refused before it trained takes back
    what it added to the folder (`RunFolder`); one that trained and stopped keeps it."""
    folder = RunFolder(r.run_dir)
    writes = first_process() and r.config.hydra.output_subdir is not None
    try:
        if writes:
            write_record(folder, r)
        # Hydra's view of the run, as a run under Hydra's app has it: Lightning's DDP launcher
        # reads it to start the other ranks in this run's folder.
        HydraConfig.instance().set_config(r.config)
        result = start(r.settings, r.run_dir)
    except UsageError as e:
        if first_process():  # every rank of a multi-process run stops with the same error
            print_error(e)
            if not isinstance(e, RunStopped):
                folder.undo()
        return USAGE_EXIT
    except StoppedAtOnce as stop:  # a second signal: what it kept is printed already
        return 128 + stop.signum
    return exit_code(result)


def write_record(folder: RunFolder, r: Run) -> None:
    """The run's record in `.hydra/` (as Hydra's app writes it): its settings as it runs them,
    every interpolation resolved; the overrides it was started with; Hydra's own node."""
    def yaml(node: object) -> bytes:
        return OmegaConf.to_yaml(node, resolve=True).encode()

    folder.write(f"{HYDRA}/config.yaml", yaml(task(r.config)))
    folder.write(f"{HYDRA}/hydra.yaml", yaml(OmegaConf.masked_copy(r.config, "hydra")))
    folder.write(f"{HYDRA}/overrides.yaml", yaml(list(r.settings.overrides)))


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="train")
def hydra_job(cfg: DictConfig) -> object:
    """One run Hydra's app starts: a job of a sweep, or a run given Hydra's own flags. A refusal
    or (in a sweep) a crash returns `JobFailed`: the sweep goes on, and Hydra's callbacks take
    back the job's folder and end with the exit code."""
    hc = HydraConfig.get()
    if hc.mode == RunMode.MULTIRUN and jobs.in_job_process():
        # A parallel launcher's worker: the job ends by returning, whatever stops it; the main
        # process passes a stop on and ends the sweep (tinygpt.training.sweep).
        with jobs.own_stops():
            signum = jobs.stop_requested(Path(hc.sweep.dir))
            if signum is not None:
                return JobFailed("not started: the sweep was stopped", signum=signum)
            return job(cfg, hc, worker=True)
    return job(cfg, hc)


def job(cfg: DictConfig, hc: DictConfig, worker: bool = False) -> object:
    """Train one job of Hydra's app; what it returns to Hydra (`JobFailed` where it did not end
    as it should). `worker`: in a process of the launcher's own, which ends by returning."""
    sweep = hc.mode == RunMode.MULTIRUN
    run_dir = hc.runtime.output_dir
    try:
        settings = settle(cfg, run_dir, hc.overrides.task)
        result = start(settings, run_dir, sweep=sweep)
    except UsageError as e:
        if first_process():
            print_error(e)
        return JobFailed(str(e), trained=isinstance(e, RunStopped))
    except StoppedAtOnce as stop:  # a second signal ends the sweep too
        if worker:
            return JobFailed("stopped at once", trained=holds_run(Path(run_dir)),
                             signum=stop.signum)
        sys.exit(128 + stop.signum)
    except Exception as e:
        if not sweep:
            raise
        traceback.print_exc()  # a bug: its traceback, and the sweep's other jobs still run
        return JobFailed(f"{type(e).__name__}: {e}", trained=True, crashed=True)
    if result.signal is not None:  # a stop signal ends the sweep too
        if worker:
            return JobFailed("stopped", trained=True, signum=result.signal)
        sys.exit(exit_code(result))
    return result


def main() -> None:
    with usage_errors_exit():
        args, single = precheck(sys.argv[1:])
    if single is not None:
        swept = single.config.hydra.sweeper.get("params") or {}
        if swept:  # an experiment that is a sweep, started as one run
            values = "; ".join(f"{k}={v}" for k, v in swept.items())
            print(f"one run: this experiment sweeps {values} with -m", flush=True)
        exit_now(run(single))
    sys.argv[1:] = args
    # Hydra's app ends as Python ends, not by exit_now: a parallel launcher's worker processes
    # are shut down by the interpreter's own exit (skipped, the last one waited out loky's 300 s
    # idle timeout). One teardown per sweep: about a second.
    hydra_job()
    sys.exit(0)


if __name__ == "__main__":
    main()
