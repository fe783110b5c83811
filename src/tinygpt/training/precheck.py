"""What `tinygpt-train` does before Hydra starts a run: compose the config from the command line,
answer any mistake in it with one `error:` line (a misspelt key with the nearest valid one), and
for a resume put the run's own recorded settings back under the command's. All before a run
folder, an event file or a cache entry exists, and before torch or Lightning load."""

from __future__ import annotations

import copy
import difflib
import re
from pathlib import Path

from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from tinygpt.errors import UsageError
from tinygpt.training.checks import check_train_config
from tinygpt.training.commands import override
from tinygpt.training.resume import (
    LATEST,
    flatten,
    merged_overrides,
    recorded_config,
    recorded_overrides,
    recorded_run,
    refuse_changes,
    resume_source,
)
from tinygpt.training.schema import compose_train


def precheck(args: list[str]) -> list[str]:
    """The overrides Hydra should run with; a UsageError for any mistake in `args`. Hydra's own
    flags (--help, --cfg, -m, ...) pass through untouched: Hydra answers those itself."""
    if any(a.startswith("-") for a in args):
        return args
    cfg = compose(args)
    source = resume_source(cfg.ckpt_path, cfg.resume, Path(cfg.hydra.run.dir))
    if source is not None and cfg.ckpt_path == LATEST:  # the one it found, named for Hydra's record
        args = [a for a in args if not a.startswith("ckpt_path=")] + [override("ckpt_path",
                                                                             source)]
    run = recorded_run(source) if source else None
    if run is not None:  # a resume takes the run's own settings; the command may change a few
        args = merged_overrides(recorded_overrides(run), args)
        cfg = compose(args)
        current = flatten(OmegaConf.to_container(task(cfg), resolve=True, enum_to_str=True))
        refuse_changes(recorded_config(run), current, source)
    check_train_config(task(cfg))
    return args


def task(cfg: DictConfig) -> DictConfig:
    """The config without Hydra's own node: what the run receives."""
    out = copy.deepcopy(cfg)
    with read_write(out), open_dict(out):
        del out["hydra"]
    return out


def compose(args: list[str]) -> DictConfig:
    """The config these overrides make (with Hydra's node); Hydra's errors as UsageErrors."""
    try:
        return compose_train(*args, hydra=True)
    except MissingConfigException as e:  # an unknown option of a config group
        raise UsageError(unknown_option(str(e))) from None
    except HydraException as e:
        raise UsageError(composition_error(e)) from None


def unknown_option(message: str) -> str:
    found = re.search(r"Could not find '([^/']+)/([^']+)'", message)
    options = re.findall(r"^\t(\S+)$", message.split("Config search path")[0], re.MULTILINE)
    if not found:
        return message.splitlines()[0]
    group, name = found.groups()
    return f"{group}={name} is unknown (use one of {', '.join(options)})"


def composition_error(e: HydraException) -> str:
    """One line for what Hydra says in several: the override, what is wrong, how to fix it."""
    text = str(e)
    misspelt = re.match(r"Could not override '([^']+)'", text)
    if misspelt:
        key = misspelt.group(1)
        near = difflib.get_close_matches(key, config_keys_known(), n=1, cutoff=0.6)
        hint = f"did you mean {near[0]}?" if near else "see configs/train.yaml for the keys"
        return f"{key} is not a config key ({hint})"
    merging = re.match(r"Error merging override (\S+)", text)
    cause = e.__cause__ or e.__context__
    reason = str(cause).splitlines()[0] if cause is not None else ""
    if merging:
        choices = re.search(r"expected one of \[([^\]]+)\]", reason)
        fix = f"use one of {choices.group(1)}" if choices else "give a value of the key's type"
        return f"{merging.group(1)}: {reason} ({fix})"
    first = text.splitlines()[0].removeprefix("LexerNoViableAltException: ")
    if isinstance(e, OverrideParseException):
        return (f"cannot read the overrides: {first} (quote a value that holds spaces, quotes, "
                "= or , for Hydra: key=\"...\", inside single quotes for the shell)")
    return f"cannot read the command line: {first} (see `tinygpt-train --help`)"


def config_keys_known() -> list[str]:
    """Every dotted key of the default config, and the group names: what a key can be."""
    cfg = compose_train()
    keys = list(flatten(OmegaConf.to_container(cfg, resolve=False)))
    return keys + ["model", "data", "tokenizer", "trainer", "experiment", "debug"]
