"""Which checkpoint a resume continues, and with which settings: the run directory's own
`last.ckpt` (or a named one), under the run's own recorded settings, of which only the
`RESUMABLE` ones may change. A record holds values only: a `_target_` (a Python object for
Hydra's `instantiate` to build) anywhere in a run's overrides, config or a checkpoint's settings
is refused, so sharing a run folder shares no code. No torch: the entry point answers before
anything loads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import OverrideParseException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from tinygpt.errors import UsageError, missing_file
from tinygpt.run_dir import HYDRA, LAST, last_checkpoint
from tinygpt.training.config import RESUMABLE, flatten, register_configs, yaml_value

LATEST = "latest"  # ckpt_path=latest: the newest last.ckpt under outputs/, named as it starts
OWN = "last"  # ckpt_path=last: the run directory's own, as resume=true
TARGET = "_target_"  # the key by which Hydra's instantiate builds an object
# What every run recorded before the Trainer was built from values: a value, never instantiated
RECORDED_TRAINER = ("trainer._target_", "lightning.Trainer")


def resume_source(ckpt_path: str | None, resume: bool, run_dir: Path | None,
                  outputs: Path = Path("outputs")) -> Path | None:
    """The checkpoint a run continues from: None for a new run. run_dir: the run's folder (None:
    a new folder, not named yet)."""
    if resume or ckpt_path == OWN:
        own = last_checkpoint(run_dir) if run_dir is not None else None
        if own is None or not own.is_file():
            where = run_dir if run_dir is not None else "a new run folder"
            raise UsageError(f"there is no {LAST} to resume in {where} (resume=true continues "
                             "the run in hydra.run.dir: point it at that run's folder, or give "
                             f"ckpt_path={LATEST} or ckpt_path=/path/to/file.ckpt)")
        return own
    if ckpt_path == LATEST:
        found = [p for p in outputs.rglob(LAST)] if outputs.is_dir() else []
        if not found:
            raise UsageError(f"there is no {LAST} under {outputs}/ (train first, or give "
                             "ckpt_path=/path/to/file.ckpt)")
        newest = max(found, key=lambda p: p.stat().st_mtime)
        print(f"ckpt_path={LATEST}: resuming {newest}", flush=True)
        return newest
    if ckpt_path is None:
        return None
    if Path(ckpt_path).is_dir():
        raise UsageError(f"ckpt_path={ckpt_path} is a folder (give the checkpoint file, e.g. "
                         f"ckpt_path={last_checkpoint(ckpt_path)}, or continue that run in "
                         f"place: hydra.run.dir={ckpt_path} resume=true)")
    if not Path(ckpt_path).is_file():
        raise missing_file("checkpoint", ckpt_path)
    return Path(ckpt_path)


def recorded_run(checkpoint: Path) -> Path | None:
    """The run folder whose Hydra record (.hydra/) a checkpoint belongs to, if it has one."""
    run = checkpoint.resolve().parent.parent
    return run if (run / HYDRA / "config.yaml").is_file() else None


def recorded_settings(checkpoint: Path) -> dict[str, Any]:
    """The settings the run of `checkpoint` trained with, as dotted keys: its folder's Hydra
    record, else (a file moved away from its run, or a run started in-process) the copy the
    checkpoint holds; {} for a checkpoint that holds none."""
    run = recorded_run(checkpoint)
    if run is not None:
        return recorded_config(run)
    from tinygpt.weights.checkpoint import (  # torch: only for such a file
        RUN_SETTINGS,
        read_checkpoint,
    )

    record = read_checkpoint(checkpoint).get(RUN_SETTINGS, {})
    values_only(record, f"{checkpoint}: ")
    return record


def values_only(tree: Any, where: str, prefix: str = "") -> None:
    """A UsageError naming the key (after `where`, e.g. "run/.hydra/config.yaml: ") for a
    `_target_` anywhere in `tree` (dotted keys, nested dicts and lists): a run's settings are
    values, never a Python object to build."""
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(
        tree, list) else ()
    for k, v in items:
        key = f"{prefix}{k}"
        if str(k).rsplit(".", 1)[-1] == TARGET and (key, v) != RECORDED_TRAINER:
            raise UsageError(f"{where}{key}={v} names a Python object to build; settings hold "
                             "values only (remove it; a strategy or profiler goes by Lightning's "
                             "name, e.g. trainer.profiler=simple, and objects come from Python)")
        values_only(v, where, f"{key}.")


def read_record(path: Path, resolve: bool = False) -> Any:
    """A YAML file of a run's record, plain (`resolve`: its interpolations resolved); a
    UsageError for one that cannot be read."""
    register_configs()  # the resolvers a config's interpolations name
    try:
        return OmegaConf.to_container(OmegaConf.load(path), resolve=resolve)
    except (OSError, yaml.YAMLError, OmegaConfBaseException) as e:
        reason = " ".join(str(e).split())[:200]
        raise UsageError(f"cannot read {path}: {reason} (restore the run's record, or start a "
                         "new run)") from None


def recorded_overrides(run: Path) -> list[str]:
    """The overrides a run was started (and last resumed) with: values for the run's own keys,
    never Hydra's settings or an object to build."""
    path = run / HYDRA / "overrides.yaml"
    if not path.is_file():
        return []
    lines = read_record(path)
    if not isinstance(lines, list) or not all(isinstance(o, str) for o in lines):
        raise UsageError(f"{path} is not a list of overrides (restore the run's record, or "
                         "start a new run)")
    try:
        parsed = OverridesParser.create().parse_overrides(lines)
    except OverrideParseException as e:
        raise UsageError(f"{path}: {str(e).splitlines()[0]} (restore the run's record, or start "
                         "a new run)") from None
    for o in parsed:
        if o.key_or_group.lstrip("+~").startswith("hydra"):
            raise UsageError(f"{path}: {o.input_line} sets Hydra's own config, which a run's "
                             "record never holds (remove the line)")
        values_only({o.key_or_group: o.value()}, f"{path}: ")
    return lines


def recorded_config(run: Path) -> dict[str, Any]:
    """A run's config as its record holds it, interpolations resolved, as dotted keys."""
    path = run / HYDRA / "config.yaml"
    tree = read_record(path, resolve=True)  # a sweep job's, as Hydra writes it, has them
    if not isinstance(tree, dict):
        raise UsageError(f"{path} is not a run's config (restore the run's record, or start a "
                         "new run)")
    values_only(tree, f"{path}: ")
    return flatten(tree)


def resumable(key: str) -> bool:
    return any(key == r or (r.endswith(".") and key.startswith(r)) for r in RESUMABLE)


def refuse_changes(record: dict[str, Any], current: dict[str, Any], source: Path) -> None:
    """A UsageError naming every setting a resume of `source` would change beyond RESUMABLE."""
    missing = object()
    changed = [f"{k}={yaml_value(record.get(k))} -> {yaml_value(current.get(k))}"
               for k in sorted(set(record) | set(current))
               if not resumable(k) and record.get(k, missing) is not missing
               and current.get(k, missing) is not missing
               and yaml_value(record[k]) != yaml_value(current[k])]
    if changed:
        raise UsageError(f"resuming {source} would change the run's own settings: "
                         f"{', '.join(changed)} (a resume keeps them: drop these overrides, or "
                         "start a new run; it may change how long it trains and how often it "
                         "validates, logs and saves)")


def merged_overrides(recorded: list[str], given: list[str]) -> list[str]:
    """The run's recorded overrides, then the given ones; a key given now replaces its record."""
    def key(o: str) -> str:
        return o.split("=", 1)[0].lstrip("+~")

    now = {key(o) for o in given}
    kept = [o for o in recorded if key(o) not in now and key(o) not in ("resume", "ckpt_path")]
    return kept + given
