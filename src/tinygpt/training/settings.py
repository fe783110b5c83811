"""A run's settings, checked once. `settle` turns a composed config into one typed `Settings`:
every node checks its own values (`validate`), the rules that span nodes are checked here
(`check_values`), the checkpoint a resume continues is found, and a resume that would change the
run's own settings is refused, all before anything is written. Everything after takes the
`Settings` and trusts it. No torch, no Lightning: a mistake is answered in well under two
seconds."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from tinygpt.data.config import DataConfig, SyntheticKind, repeat_length
from tinygpt.errors import UsageError
from tinygpt.training.config import TrainConfig, compose_train, flatten
from tinygpt.training.resume import (
    recorded_settings,
    refuse_changes,
    resume_source,
    values_only,
)
from tinygpt.weights.hf_tokenizer import read_tokenizer


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


def check_values(s: TrainConfig) -> None:
    """A UsageError at the first value that makes no sense: each node's own, then the rules that
    span nodes (the data's windows against the model's context, a GPT-2 start's tokenizer)."""
    for node in (s.model.gpt_config(vocab_size=1), s.data, s.optim, s.trainer, s.sample,
                 s.probes, s.cpu):
        node.validate()
    if s.save_every_n_steps < 0:
        raise UsageError(f"save_every_n_steps={s.save_every_n_steps} must be at least 0 (0: only "
                         "at the end)")
    check_windows(s.data, s.model.context_length)
    check_init_from(s)


def check_windows(d: DataConfig, context_length: int) -> None:
    """The synthetic windows fit the model's context."""
    kind, length = d.synthetic.kind, repeat_length(d, context_length)
    if kind == SyntheticKind.repeats and not 1 <= length <= context_length // 2:
        raise UsageError(f"data.synthetic.length={length} must be 1..{context_length // 2} (half "
                         "the context: a segment and its copy fit one window)")
    if kind == SyntheticKind.copies and not d.synthetic.prefix < context_length:
        raise UsageError(f"data.synthetic.prefix={d.synthetic.prefix} must be shorter than "
                         f"model.context_length={context_length} (the chunks copy from it)")


def check_init_from(s: TrainConfig) -> None:
    """model.init_from: a Hugging Face GPT-2 folder, read with its own tokenizer (GPT-2's where
    it has none), at most as long a context as it was trained on."""
    init = s.model.init_from
    if not init:
        return
    config = Path(init) / "config.json"
    if not config.is_file():
        raise UsageError(f"model.init_from={init} holds no config.json (point it at a Hugging "
                         "Face GPT-2 directory)")
    own = read_tokenizer(Path(init)).name
    if s.data.tokenizer != own:
        raise UsageError(f"model.init_from={init} reads {own} tokens, not data.tokenizer="
                         f"{s.data.tokenizer.value} (set data.tokenizer={own}, or leave it out)")
    trained = json.loads(config.read_text()).get("n_positions", s.model.context_length)
    if s.model.context_length > trained:
        raise UsageError(f"model.context_length={s.model.context_length} is longer than the "
                         f"pretrained model's {trained} (lower model.context_length)")
