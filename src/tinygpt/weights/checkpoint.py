"""Checkpoints: written whole or not at all, read without running pickled code, and turned back
into the model and tokenizer they hold; a Hugging Face GPT-2 directory is read and written as one
more kind of checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from tinygpt.atomic import atomic_write
from tinygpt.data.tokenizer import Tokenizer, tokenizer_from_state
from tinygpt.errors import UsageError, missing_file
from tinygpt.model.gpt import GPT, GPTConfig
from tinygpt.run_dir import LAST, last_checkpoint
from tinygpt.weights.hf import load_hf_model, save_hf_gpt2

_PASS_OURS = "pass a .ckpt that tinygpt-train wrote"
RUN_SETTINGS = "tinygpt_settings"  # the run's config, dotted keys, in each training checkpoint


def write_checkpoint(ckpt: dict[str, Any], path: str | Path) -> None:
    """torch.save through `atomic_write`: a kill mid-write leaves the previous file loadable."""
    with atomic_write(path) as f:
        torch.save(ckpt, f)


def read_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """torch.load with weights_only=True; a UsageError that says why for anything unreadable."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise missing_file("checkpoint", path) from None
    except IsADirectoryError:
        raise UsageError(f"checkpoint {path} is a directory (pass a .ckpt file in it)") from None
    except Exception as e:  # truncated, not a checkpoint, or a pickle that wants to run code
        text = str(e).strip()
        first = text.splitlines()[0] if text else type(e).__name__
        raise UsageError(f"cannot read checkpoint {path}: {first} ({_PASS_OURS})") from None


def checkpoint_model_config(ckpt: dict[str, Any], path: str | Path) -> GPTConfig:
    """The GPTConfig a checkpoint was trained with."""
    try:
        return GPTConfig(**ckpt["hyper_parameters"]["model"])
    except (KeyError, TypeError) as e:
        raise not_ours(path, f"no model settings: {e}") from None


def not_ours(path: str | Path, reason: str) -> UsageError:
    """The error for a readable file that is not a tinygpt training checkpoint."""
    return UsageError(f"checkpoint {path} does not hold a tinygpt model: {reason} ({_PASS_OURS})")


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> tuple[GPT, Tokenizer]:
    """Rebuild the model and tokenizer from a training checkpoint, without running pickled code."""
    ckpt = read_checkpoint(path, map_location)
    model = GPT(checkpoint_model_config(ckpt, path))
    state = {k.removeprefix("model."): v for k, v in ckpt.get("state_dict", {}).items()
             if k.startswith("model.")}
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise not_ours(path, str(e).splitlines()[0]) from None
    state = ckpt["hyper_parameters"].get("tokenizer")
    if not isinstance(state, dict) or "name" not in state:
        raise not_ours(path, "no tokenizer")
    return model.to(map_location).eval(), tokenizer_from_state(state)


def load_model(path: str | Path, map_location: Any = "cpu") -> tuple[GPT, Tokenizer]:
    """A model and its tokenizer from a training checkpoint, a run folder (its last.ckpt) or a
    Hugging Face GPT-2 directory (with the tokenizer beside it, else GPT-2's)."""
    p = Path(path)
    if p.is_dir() and (p / "config.json").is_file():
        model, tok = load_hf_model(p)
        return model.to(map_location).eval(), tok
    if p.is_dir() and last_checkpoint(p).is_file():
        p = last_checkpoint(p)
    elif p.is_dir():
        raise UsageError(f"{p} holds neither checkpoints/{LAST} nor a Hugging Face config.json "
                         "(pass a run folder, a .ckpt file or a GPT-2 directory)")
    return load_checkpoint(p, map_location)


def export_hf(ckpt: str | Path, out: str | Path, overwrite: bool = False) -> Path:
    """A training checkpoint written as a Hugging Face GPT-2 directory with its tokenizer;
    UsageError for what GPT-2 cannot hold (attention it cannot express) or a full `out`."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"out={out} is a file (give a folder to write the model into)")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise UsageError(f"{out} is not empty (choose another out=, or set overwrite=true)")
    model, tok = load_model(ckpt)
    save_hf_gpt2(model, out, tok)
    return out
