"""Checkpoints: read without running pickled code, checked before resuming, found for resuming.
(They are written atomically by `tinygpt.train.AtomicCheckpointIO`.)"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from tinygpt.errors import UsageError
from tinygpt.model import GPT, GPTConfig
from tinygpt.tokenizer import Tokenizer, tokenizer_from_state


def read_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """torch.load with weights_only=True; a UsageError that says why for anything unreadable."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise UsageError(f"checkpoint {path} does not exist (check the path)") from None
    except IsADirectoryError:
        raise UsageError(f"checkpoint {path} is a directory (pass a .ckpt file in it)") from None
    except Exception as e:  # truncated, not a checkpoint, or a pickle that wants to run code
        text = str(e).strip()
        first = text.splitlines()[0] if text else type(e).__name__
        raise UsageError(
            f"cannot read checkpoint {path}: {first} (pass a .ckpt that scripts/train.py wrote)"
        ) from None


def checkpoint_model_config(ckpt: dict[str, Any], path: str | Path) -> GPTConfig:
    """The GPTConfig a checkpoint was trained with."""
    try:
        return GPTConfig(**ckpt["hyper_parameters"]["model"])
    except (KeyError, TypeError) as e:
        raise UsageError(f"checkpoint {path} does not hold a tinygpt model ({e}; pass a .ckpt "
                         "that scripts/train.py wrote)") from None


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> tuple[GPT, Tokenizer]:
    """Rebuild the model and tokenizer from a training checkpoint, without running pickled code."""
    ckpt = read_checkpoint(path, map_location)
    model = GPT(checkpoint_model_config(ckpt, path))
    state = {k.removeprefix("model."): v for k, v in ckpt.get("state_dict", {}).items()
             if k.startswith("model.")}
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        raise UsageError(f"checkpoint {path} does not hold a tinygpt model: {first} "
                         "(pass a .ckpt that scripts/train.py wrote)") from None
    tokenizer = tokenizer_from_state(ckpt["hyper_parameters"]["tokenizer"])
    return model.to(map_location).eval(), tokenizer


def find_last_checkpoint(*roots: str | Path) -> Path | None:
    """The newest `last.ckpt` under the given directories (a run directory or outputs/)."""
    found = [p for r in roots if Path(r).is_dir() for p in Path(r).rglob("last.ckpt")]
    return max(found, key=lambda p: p.stat().st_mtime, default=None)


def resume_path(ckpt_path: str | None, resume: bool, run_dir: Path) -> str | None:
    """The checkpoint to resume from: ckpt_path as given, or the newest last.ckpt (of the run
    directory, else under outputs/) for resume=true or ckpt_path=last."""
    if not (resume or ckpt_path == "last"):
        return ckpt_path
    found = find_last_checkpoint(run_dir, "outputs")
    if found is None:
        raise UsageError(f"there is no last.ckpt to resume in {run_dir} or outputs/ "
                         "(train first, or give ckpt_path=/path/to/file.ckpt)")
    return str(found)


def check_resumable(path: str, cfg: GPTConfig, tokenizer: dict) -> None:
    """Refuse, before training starts, a checkpoint this run's model could not continue."""
    ckpt = read_checkpoint(path)
    theirs = checkpoint_model_config(ckpt, path)
    if theirs != cfg:
        ours = asdict(cfg)
        diff = ", ".join(f"{k}={v} (this run: {ours[k]})"
                         for k, v in asdict(theirs).items() if v != ours[k])
        raise UsageError(f"checkpoint {path} is for another model: {diff} "
                         "(use the same model.* and data settings, or start a new run)")
    if ckpt["hyper_parameters"].get("tokenizer") != tokenizer:
        raise UsageError(f"checkpoint {path} was trained with another tokenizer or vocabulary "
                         "(use the same data.tokenizer and corpus, or start a new run)")
