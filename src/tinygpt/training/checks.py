"""A composed training config checked value by value, before anything is built or written: one
UsageError per mistake, saying what to change. No torch, no Lightning: an answer in well under
two seconds."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from tinygpt.config import DataConfig, check_sampling
from tinygpt.corpus import Corpus, text_files
from tinygpt.errors import UsageError
from tinygpt.tokenizer import TokenizerName
from tinygpt.training.lightning_adapter import PRECISIONS
from tinygpt.training.schema import TrainConfig


def check_train_config(cfg: DictConfig) -> TrainConfig:
    """The typed config, once every value in it makes sense; a UsageError at the first that
    does not."""
    s: TrainConfig = OmegaConf.to_object(cfg)
    s.model.gpt_config(vocab_size=1).validate()
    check_data(s.data)
    check_optim(s)
    check_trainer(cfg.trainer, s.data.batch_size)
    check_sampling(s.sample.temperature, s.sample.top_k, None)
    for key in ("save_every_n_steps", "grad_norm_every", "diagnostics_every"):
        at_least(key, getattr(s, key), 0, "0 turns it off")
    at_least("attention_map_tokens", s.attention_map_tokens, 1, "e.g. 32")
    if s.threads is not None:
        at_least("threads", s.threads, 1, "or null: one per core")
    if s.thread_spin is not None:
        at_least("thread_spin", s.thread_spin, 0, "0: sleep at once; null: OpenMP's own")
    at_least("sample.max_new_tokens", s.sample.max_new_tokens, 0, "e.g. 64")
    init = s.model.init_from
    if init and not (Path(init) / "config.json").is_file():
        raise UsageError(f"model.init_from={init} holds no config.json (point it at a Hugging "
                         "Face GPT-2 directory)")
    return s


def at_least(key: str, value: float, low: float, hint: str) -> None:
    if value < low:
        raise UsageError(f"{key}={value} must be at least {low} ({hint})")


def check_data(d: DataConfig) -> None:
    d.validate()
    at_least("data.batch_size", d.batch_size, 1, "sequences per step, e.g. 16")
    at_least("data.num_workers", d.num_workers, 0, "0 loads in the training process")
    if d.tokenizer == TokenizerName.bpe:
        at_least("data.vocab_size", d.vocab_size, 257, "256 bytes and an end-of-text token; "
                 "e.g. 2048")
    if d.name == Corpus.text and not d.path:
        raise UsageError("data.name=text needs a file (set data.path=/path/to/file.txt)")
    if d.name == Corpus.text and not text_files(d.path):
        raise UsageError(f"no text file at data.path={d.path} (give a file, a folder of .txt "
                         "files, or a glob)")


def check_optim(s: TrainConfig) -> None:
    o = s.optim
    if not o.lr > 0:
        raise UsageError(f"optim.lr={o.lr} must be positive (e.g. 1e-3)")
    at_least("optim.weight_decay", o.weight_decay, 0, "0 turns it off")
    at_least("optim.warmup_steps", o.warmup_steps, 0, "0: no warmup")
    if len(o.betas) != 2 or not all(0 <= b < 1 for b in o.betas):
        raise UsageError(f"optim.betas={list(o.betas)} must be two numbers in [0, 1) "
                         "(e.g. [0.9, 0.95])")
    if not 0 <= o.min_lr_ratio <= 1:
        raise UsageError(f"optim.min_lr_ratio={o.min_lr_ratio} must be in [0, 1] (e.g. 0.1)")
    if not 0.0 < o.decay_fraction <= 1.0:
        raise UsageError(f"optim.decay_fraction={o.decay_fraction} must be in (0, 1] (e.g. 0.3)")
    if not o.muon_lr > 0:
        raise UsageError(f"optim.muon_lr={o.muon_lr} must be positive (e.g. 0.02)")
    if not 0.0 <= o.muon_momentum < 1.0:
        raise UsageError(f"optim.muon_momentum={o.muon_momentum} must be in [0, 1) (e.g. 0.95)")


def check_trainer(t: DictConfig, batch_size: int) -> None:
    if t.max_steps != -1 and t.max_steps < 1:
        raise UsageError(f"trainer.max_steps={t.max_steps} must be a positive number of steps "
                         "(or -1: no step limit, with trainer.max_time or max_epochs)")
    if t.precision not in (*PRECISIONS, "auto"):
        valid = ", ".join(str(p) for p in ("auto", *PRECISIONS) if isinstance(p, str))
        raise UsageError(f"trainer.precision={t.precision!r} is unknown (use one of {valid})")
    for key, low in (("accumulate_grad_batches", 1), ("log_every_n_steps", 1),
                     ("num_nodes", 1)):
        if t.get(key) is not None:
            at_least(f"trainer.{key}", t[key], low, "a whole number")
    if t.gradient_clip_val is not None:
        at_least("trainer.gradient_clip_val", t.gradient_clip_val, 0, "0 or null: no clipping")
    vci = t.val_check_interval
    if isinstance(vci, int | float) and not isinstance(vci, bool) and vci <= 0:
        raise UsageError(f"trainer.val_check_interval={vci} must be positive (steps, or a "
                         "fraction of an epoch)")
    devices = t.devices if isinstance(t.devices, int) and t.devices > 0 else 1
    if batch_size % (devices * t.accumulate_grad_batches):
        raise UsageError(f"data.batch_size={batch_size} (sequences per step, all devices) is "
                         f"not a multiple of devices x accumulate_grad_batches = "
                         f"{devices * t.accumulate_grad_batches} (change one of them)")
