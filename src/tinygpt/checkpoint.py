"""Checkpoints: written atomically, read without running pickled code, found for resuming."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from tinygpt.model import GPT, GPTConfig
from tinygpt.tokenizer import Tokenizer, tokenizer_from_state


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint beside its target, syncs it, then renames it into place.

    A kill mid-write leaves a stray temporary file, never a truncated checkpoint, so the
    previous `last.ckpt` stays loadable.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        try:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)


def read_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """torch.load with weights_only=True; a ValueError that says why for anything unreadable."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise ValueError(f"checkpoint {path} does not exist (check the path)") from None
    except IsADirectoryError:
        raise ValueError(f"checkpoint {path} is a directory (pass a .ckpt file in it)") from None
    except Exception as e:  # truncated, not a checkpoint, or a pickle that wants to run code
        text = str(e).strip()
        first = text.splitlines()[0] if text else type(e).__name__
        raise ValueError(
            f"cannot read checkpoint {path}: {first} (pass a .ckpt that scripts/train.py wrote)"
        ) from None


def checkpoint_model_config(ckpt: dict[str, Any], path: str | Path) -> GPTConfig:
    """The GPTConfig a checkpoint was trained with."""
    try:
        return GPTConfig(**ckpt["hyper_parameters"]["model"])
    except (KeyError, TypeError) as e:
        raise ValueError(f"checkpoint {path} does not hold a tinygpt model ({e}; pass a .ckpt "
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
        raise ValueError(f"checkpoint {path} does not hold a tinygpt model: {first} "
                         "(pass a .ckpt that scripts/train.py wrote)") from None
    tokenizer = tokenizer_from_state(ckpt["hyper_parameters"]["tokenizer"])
    return model.to(map_location).eval(), tokenizer


def find_last_checkpoint(*roots: str | Path) -> Path | None:
    """The newest `last.ckpt` under the given directories (a run directory or outputs/)."""
    found = [p for r in roots if Path(r).is_dir() for p in Path(r).rglob("last.ckpt")]
    return max(found, key=lambda p: p.stat().st_mtime, default=None)
