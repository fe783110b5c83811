"""What `tinygpt-train` makes of its command line before anything is written: the config composed
once and settled (`settings.settle`) for a single run; for a sweep, every job's config settled
before Hydra launches the first. A mistake in any of them is one `error:` line, before a run
folder, an event file or a cache entry exists, and before torch or Lightning load. A resume puts
the run's own recorded overrides first and the command's after them."""

from __future__ import annotations

import copy
import difflib
import itertools
import os
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
from hydra.types import RunMode
from omegaconf import DictConfig, open_dict, read_write
from omegaconf.errors import ConfigAttributeError, ConfigKeyError

from tinygpt.configs import CONFIG_DIR
from tinygpt.errors import UsageError, unknown_choice
from tinygpt.training.commands import command, entry_point, override
from tinygpt.training.config import TrainConfig, compose_train
from tinygpt.training.hydra_callbacks import first_process, refuse_to_clobber
from tinygpt.training.resume import (
    LATEST,
    merged_overrides,
    recorded_overrides,
    recorded_run,
    resume_source,
)
from tinygpt.training.settings import Settings, settle

MULTIRUN = ("-m", "--multirun")  # Hydra's flag for a sweep
# The launchers and sweepers an extra installs: pyproject's optional dependencies
PLUGINS = {"hydra/launcher/submitit_slurm": ("hydra-submitit-launcher", "cluster"),
           "hydra/launcher/submitit_local": ("hydra-submitit-launcher", "cluster"),
           "hydra/sweeper/optuna": ("hydra-optuna-sweeper", "search")}
BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


@dataclass(frozen=True)
class Run:
    """One run, settled: its settings, its folder, and the config composed with Hydra's node
    (what the run's record holds, and what Hydra's helpers read while it runs)."""

    settings: Settings
    run_dir: Path
    config: DictConfig


def precheck(args: list[str]) -> tuple[list[str], Run | None]:
    """The command line to run and, for a single run, the Run it makes; a UsageError for any
    mistake. No Run where Hydra's app takes over: a sweep (every job's config checked here
    first) or Hydra's own flags (--help, --cfg, -cd: Hydra answers those)."""
    if "--experimental-rerun" in args:
        raise UsageError("--experimental-rerun unpickles a file, which can run any code (resume "
                         "a run with resume=true hydra.run.dir=<its folder>)")
    flags = [a for a in args if a.startswith("-")]
    if any(f not in MULTIRUN for f in flags):
        return args, None
    overrides = [a for a in args if a not in MULTIRUN]
    parsed = parse(overrides)
    given = {o.key_or_group: o.value() for o in parsed}
    source = None
    if given.get("resume") is True or given.get("ckpt_path") is not None:
        run_dir = given.get("hydra.run.dir")
        source = resume_source(given.get("ckpt_path"), given.get("resume") is True,
                               Path(run_dir) if run_dir else None)
        run = recorded_run(source)
        if run is not None:  # a resume takes the run's own settings; the command may change a few
            overrides = merged_overrides(recorded_overrides(run), overrides)
        if given.get("ckpt_path") == LATEST:  # the file it found, named in the run's record
            overrides = [a for a in overrides if not a.startswith("ckpt_path=")] + [
                override("ckpt_path", source)]
        parsed = parse(overrides)
    sweeps = {o.input_line for o in parsed if o.is_sweep_override()}
    cfg = compose([a for a in overrides if a not in sweeps], parsed)
    if flags or cfg.hydra.mode == RunMode.MULTIRUN:
        check_sweep(cfg, overrides)
        return [*flags, *overrides], None
    if sweeps:
        again = command([*entry_point("train"), "-m", *overrides])
        raise UsageError(f"{' '.join(sorted(sweeps))} gives several values: a sweep (add -m to "
                         f"run one job per value: {again})")
    run_dir = Path(cfg.hydra.run.dir)  # the time in its name is read once, here
    with read_write(cfg), open_dict(cfg):
        cfg.hydra.run.dir = str(run_dir)
        cfg.hydra.runtime.output_dir = str(run_dir.absolute())
    # what the run's record keeps of its command line: its own settings, not Hydra's (as Hydra's
    # app records them)
    settings = settle(task(cfg), run_dir, list(cfg.hydra.overrides.task), resume_from=source)
    if settings.resume_from is None and first_process():
        refuse_to_clobber(run_dir)
    return overrides, Run(settings, run_dir, cfg)


def check_sweep(cfg: DictConfig, overrides: list[str]) -> None:
    """Settle the config of every job of the sweep `overrides` make (with the sweeper's own
    `hydra.sweeper.params`), before the first job starts; a UsageError naming the job."""
    note = parallel_note(cfg.hydra.launcher)
    if note:
        print(note, flush=True)
    if cfg.hydra.sweeper.get("_target_") != BASIC_SWEEPER:
        return  # another sweeper draws its jobs as it goes: each checks its own
    params = [f"{k}={v}" for k, v in (cfg.hydra.sweeper.params or {}).items()]
    jobs = sweep_jobs(parse([*params, *overrides]))
    for i, job in enumerate(jobs, 1):
        try:
            job_cfg = compose(job, parse(job))
            settle(task(job_cfg), Path(job_cfg.hydra.sweep.dir) / job_cfg.hydra.sweep.subdir,
                   job)
        except UsageError as e:
            raise UsageError(f"job {i} of {len(jobs)} ({' '.join(job)}): {e}") from None


def parallel_note(launcher: DictConfig) -> str | None:
    """For a launcher that runs jobs side by side (hydra/launcher=parallel): a UsageError for a
    job count joblib cannot take, and what it will do when it asks for more jobs than cores."""
    if "joblib" not in launcher.get("_target_", ""):
        return None
    n, cores = launcher.n_jobs, os.cpu_count() or 1
    if n == 0 or n < -cores:
        raise UsageError(f"hydra.launcher.n_jobs={n}: no job could run (give 1 to {cores} jobs "
                         f"at once, or -1: one per core)")
    if n <= cores:
        return None
    return (f"{n} jobs at once on {cores} cores: each runs one torch thread and they take "
            f"turns on the cores (hydra.launcher.n_jobs={cores}: one job per core)")


def sweep_jobs(parsed: list[Override]) -> list[list[str]]:
    """Each job's overrides, as Hydra's basic sweeper lists them: every combination of the swept
    keys' values, in the order the keys were given (a key given again takes its place)."""
    values: dict[str, list[str]] = {}
    for o in parsed:
        key = o.get_key_element()
        if not o.is_sweep_override():
            values[key] = [f"{key}={o.get_value_element_as_str()}"]
        elif o.is_discrete_sweep():
            values[key] = [f"{key}={v}" for v in o.sweep_string_iterator()]
        else:
            raise UsageError(f"{o.input_line}: the basic sweeper takes lists of values, not a "
                             "range or an interval (give key=a,b,c)")
    return [list(job) for job in itertools.product(*values.values())]


def task(cfg: DictConfig) -> DictConfig:
    """The config without Hydra's own node: what the run receives."""
    out = copy.deepcopy(cfg)
    with read_write(out), open_dict(out):
        del out["hydra"]
    return out


def parse(args: list[str]) -> list[Override]:
    """The overrides as Hydra reads them; a UsageError for words it cannot read."""
    try:
        return OverridesParser.create().parse_overrides(args)
    except OverrideParseException as e:
        first = str(e).splitlines()[0].removeprefix("LexerNoViableAltException: ")
        raise UsageError(f"cannot read the overrides: {first} (quote a value that holds spaces, "
                         "quotes, = or , for Hydra: key=\"...\", inside single quotes for the "
                         "shell)") from None


def compose(args: list[str], parsed: list[Override]) -> DictConfig:
    """The config these overrides (`parsed`: as Hydra reads them) make, with Hydra's node; what
    Hydra refuses as a UsageError naming the override and the fix, read from the exception's own
    fields."""
    try:
        return compose_train(*args, hydra=True)
    except MissingConfigException as e:  # an unknown option of a config group
        group, _, name = (e.missing_cfg_file or "").rpartition("/")
        if f"{group}/{name}" in PLUGINS:
            package, extra = PLUGINS[f"{group}/{name}"]
            raise UsageError(f"{group}={name} needs the {package} package (pip install -e "
                             f"'.[{extra}]')") from None
        raise unknown_choice(f"{group}={name}", e.options or []) from None
    except ConfigCompositionException as e:
        cause = e.__cause__
        if isinstance(cause, ConfigAttributeError | ConfigKeyError):  # not a key of the schema
            key = next((o.key_or_group for o in parsed
                        if o.key_or_group.startswith(cause.full_key)), cause.full_key)
            near = difflib.get_close_matches(key, known_keys(), n=1, cutoff=0.6)
            hint = f"did you mean {near[0]}?" if near else "see configs/train.yaml for the keys"
            if key.startswith("hydra."):  # the launcher's and sweeper's own
                hint = "add --cfg hydra to a run's command to list Hydra's keys"
            raise UsageError(f"{key} is not a config key ({hint})") from None
        if cause is not None and hasattr(cause, "full_key"):  # a value of the wrong type
            reason = str(cause).splitlines()[0]
            raise UsageError(f"{cause.full_key}={cause.value}: {reason} (give a value the key "
                             "takes)") from None
        raise UsageError(f"{str(e).splitlines()[0]} (see `tinygpt-train --help`)") from None


def known_keys() -> list[str]:
    """Every dotted key of the schema, and the config groups: what an override can name."""
    def keys(node: type, prefix: str = "") -> list[str]:
        out = []
        for f in fields(node):  # a node is a field whose default is a dataclass
            nested = is_dataclass(f.default_factory)
            out += keys(f.default_factory, f"{prefix}{f.name}.") if nested else [prefix + f.name]
        return out

    groups = sorted(p.name for p in CONFIG_DIR.iterdir() if p.is_dir() and p.name[0] != "_")
    return keys(TrainConfig) + groups
