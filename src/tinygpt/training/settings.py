"""A run's settings, checked once. `settle` turns a composed config into one typed `Settings`:
every value checked (`checks`), the checkpoint a resume continues found, and a resume that would
change the run's own settings refused, all before anything is written. Everything after takes
the `Settings` and trusts it. No torch, no Lightning: a mistake is answered in well under two
seconds."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from tinygpt.training.checks import check_values
from tinygpt.training.resume import (
    flatten,
    recorded_settings,
    refuse_changes,
    resume_source,
    values_only,
)
from tinygpt.training.schema import TrainConfig, compose_train


@dataclass(frozen=True)
class Settings:
    """What a run trains with, checked.

    config: the typed values. record: the same as dotted keys and plain values, what each
    checkpoint keeps and a resume compares against. overrides: what the command line (or the
    caller) set, the run's columns in TensorBoard's HPARAMS tab. resume_from: the checkpoint
    the run continues, None for a new run."""

    config: TrainConfig
    record: dict[str, Any]
    overrides: tuple[str, ...] = ()
    resume_from: Path | None = None


def settle(cfg: DictConfig, run_dir: str | Path, overrides: Sequence[str] = (),
           resume_from: Path | None = None) -> Settings:
    """The run's Settings; a UsageError, saying what to change, for the first thing wrong.
    `resume_from`: the checkpoint, where the caller has found it already (the command line
    does, to take the run's own overrides); else it is found here from ckpt_path and resume."""
    record = flatten(OmegaConf.to_container(cfg, resolve=True, enum_to_str=True))
    values_only(record, "")  # before anything is built from it
    config: TrainConfig = OmegaConf.to_object(cfg)  # Hydra checked keys, types and choices
    check_values(config)
    if resume_from is None:
        resume_from = resume_source(config.ckpt_path, config.resume, Path(run_dir))
    if resume_from is not None:
        refuse_changes(recorded_settings(resume_from), record, resume_from)
    return Settings(config, record, tuple(overrides), resume_from)


def configure(*overrides: str, run_dir: str | Path) -> Settings:
    """configs/train.yaml with these overrides, settled for a run in run_dir: how tests and
    notebooks start a run in-process (`train(configure(...), run_dir)`)."""
    return settle(compose_train(*overrides), run_dir, overrides)
