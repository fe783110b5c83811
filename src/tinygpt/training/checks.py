"""Every value of a run's config checked, before anything is built or written: one UsageError per
mistake, saying what to change. The one home of each check (`settings.settle` runs them once).
No torch, no Lightning: an answer in well under two seconds."""

from __future__ import annotations

import json
from pathlib import Path

from tinygpt.config import DataConfig, check_sampling, repeat_length
from tinygpt.corpus import Corpus, check_cache, text_files
from tinygpt.errors import UsageError, unknown_choice
from tinygpt.tokenizer import TokenizerName
from tinygpt.training.lightning_adapter import PRECISIONS
from tinygpt.training.schema import TrainConfig
from tinygpt.training.trainer_config import TrainerConfig


def check_values(s: TrainConfig) -> None:
    """A UsageError at the first value that makes no sense."""
    s.model.gpt_config(vocab_size=1).validate()
    check_data(s.data, s.model.context_length)
    check_optim(s)
    check_trainer(s.trainer)
    check_sampling(s.sample.temperature, s.sample.top_k, None)
    for key in ("save_every_n_steps", "grad_norm_every", "diagnostics_every", "int8_windows"):
        at_least(key, getattr(s, key), 0, "0 turns it off")
    at_least("attention_map_tokens", s.attention_map_tokens, 0, "e.g. 32; 0: no maps")
    if s.threads is not None:
        at_least("threads", s.threads, 1, "or null: one per core")
    if s.thread_spin is not None:
        at_least("thread_spin", s.thread_spin, 0, "0: sleep at once; null: OpenMP's own")
    at_least("sample.max_new_tokens", s.sample.max_new_tokens, 0, "e.g. 64")
    check_init_from(s)


def at_least(key: str, value: float, low: float, hint: str) -> None:
    if value < low:
        raise UsageError(f"{key}={value} must be at least {low} ({hint})")


def check_data(d: DataConfig, context_length: int) -> None:
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
    check_cache(d.cache_dir)
    if d.bos and d.tokenizer == TokenizerName.char:
        raise UsageError("data.bos=true starts windows with the end-of-text token; "
                         "tokenizer=char has none (set data.tokenizer=bpe or gpt2, or "
                         "data.bos=false)")
    length = repeat_length(d, context_length)
    if d.repeat_share and not 1 <= length <= context_length // 2:
        raise UsageError(f"data.repeat_length={length} must be 1..{context_length // 2} (half "
                         "the context: a segment and its copy fit one window)")
    c = d.copies
    if c.share and d.repeat_share:
        raise UsageError(f"data.repeat_share={d.repeat_share} and data.copies.share={c.share} "
                         "both replace training windows (set one of them to 0)")
    if c.share and not (1 <= c.prefix < context_length and 1 <= c.shortest <= c.longest
                        <= c.prefix):
        raise UsageError(f"data.copies: prefix={c.prefix}, shortest={c.shortest}, longest="
                         f"{c.longest} must satisfy 1 <= shortest <= longest <= prefix < "
                         f"context_length={context_length} (a chunk is copied from earlier "
                         "tokens; e.g. prefix=16 shortest=4 longest=12)")


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
    at_least("optim.muon_ns_steps", o.muon_ns_steps, 1, "e.g. 5")


def check_trainer(t: TrainerConfig) -> None:
    """What a config can get wrong in the Trainer's arguments before Lightning sees them (what
    Lightning refuses as it builds the Trainer is answered there: `train.build_trainer`)."""
    if t.max_steps != -1 and t.max_steps < 1:
        raise UsageError(f"trainer.max_steps={t.max_steps} must be a positive number of steps "
                         "(or -1: no step limit, with trainer.max_time or max_epochs)")
    if t.precision not in (*PRECISIONS, "auto"):
        valid = [p for p in ("auto", *PRECISIONS) if isinstance(p, str)]
        raise unknown_choice(f"trainer.precision={t.precision!r}", valid)
    for key, low in (("accumulate_grad_batches", 1), ("log_every_n_steps", 1),
                     ("num_nodes", 1)):
        if getattr(t, key) is not None:
            at_least(f"trainer.{key}", getattr(t, key), low, "a whole number")
    if t.gradient_clip_val is not None:
        at_least("trainer.gradient_clip_val", t.gradient_clip_val, 0, "0 or null: no clipping")
    vci = t.val_check_interval
    if isinstance(vci, int | float) and not isinstance(vci, bool) and vci <= 0:
        raise UsageError(f"trainer.val_check_interval={vci} must be positive (steps, or a "
                         "fraction of an epoch)")


def check_init_from(s: TrainConfig) -> None:
    """model.init_from: a Hugging Face GPT-2 folder, read with GPT-2's tokenizer, at most as long
    a context as it was trained on."""
    init = s.model.init_from
    if not init:
        return
    config = Path(init) / "config.json"
    if not config.is_file():
        raise UsageError(f"model.init_from={init} holds no config.json (point it at a Hugging "
                         "Face GPT-2 directory)")
    if s.data.tokenizer != TokenizerName.gpt2:
        raise UsageError(f"model.init_from needs GPT-2's tokenizer, not data.tokenizer="
                         f"{s.data.tokenizer.value} (set data.tokenizer=gpt2)")
    trained = json.loads(config.read_text()).get("n_positions", s.model.context_length)
    if s.model.context_length > trained:
        raise UsageError(f"model.context_length={s.model.context_length} is longer than the "
                         f"pretrained model's {trained} (lower model.context_length)")
