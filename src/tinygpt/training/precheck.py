"""What `tinygpt-train` does before Hydra starts a run: compose the config the command line names
(once) and settle it (`settings.settle`), so a mistake is one `error:` line before a run folder,
an event file or a cache entry exists, and before torch or Lightning load. A resume puts the
run's own recorded overrides first and the command's after them."""

from __future__ import annotations

import copy
import difflib
from dataclasses import fields, is_dataclass
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
from tinygpt.training.resume import (
    LATEST,
    merged_overrides,
    recorded_overrides,
    recorded_run,
    resume_source,
)
from tinygpt.training.schema import TrainConfig, compose_train
from tinygpt.training.settings import Settings, settle


def precheck(args: list[str]) -> tuple[list[str], Settings | None]:
    """The overrides Hydra should run with, and their Settings; a UsageError for any mistake.
    No Settings where Hydra runs a sweep (its jobs settle their own configs, the base config
    checked here first) or is given its own flags (--help, --cfg, -m: Hydra answers those)."""
    if any(a.startswith("-") for a in args):
        return args, None
    parsed = parse(args)
    given = {o.key_or_group: o.value() for o in parsed}
    source = None
    if given.get("resume") is True or given.get("ckpt_path") is not None:
        run_dir = given.get("hydra.run.dir")
        source = resume_source(given.get("ckpt_path"), given.get("resume") is True,
                               Path(run_dir) if run_dir else None)
        run = recorded_run(source)
        if run is not None:  # a resume takes the run's own settings; the command may change a few
            args = merged_overrides(recorded_overrides(run), args)
        if given.get("ckpt_path") == LATEST:  # the file it found, named in Hydra's record
            args = [a for a in args if not a.startswith("ckpt_path=")] + [
                override("ckpt_path", source)]
    sweeps = [o for o in parsed if o.is_sweep_override()]
    cfg = compose([a for a in args if a not in {o.input_line for o in sweeps}], parsed)
    if sweeps and cfg.hydra.mode != RunMode.MULTIRUN:
        words = " ".join(o.input_line for o in sweeps)
        again = command([*entry_point("train"), "-m", *args])
        raise UsageError(f"{words} gives several values: a sweep (add -m to run one job per "
                         f"value: {again})")
    settings = settle(task(cfg), cfg.hydra.run.dir, args, resume_from=source)
    return args, None if cfg.hydra.mode == RunMode.MULTIRUN else settings


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
        raise unknown_choice(f"{group}={name}", e.options or []) from None
    except ConfigCompositionException as e:
        cause = e.__cause__
        if isinstance(cause, ConfigAttributeError | ConfigKeyError):  # not a key of the schema
            key = next((o.key_or_group for o in parsed
                        if o.key_or_group.startswith(cause.full_key)), cause.full_key)
            near = difflib.get_close_matches(key, known_keys(), n=1, cutoff=0.6)
            hint = f"did you mean {near[0]}?" if near else "see configs/train.yaml for the keys"
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
