"""The model, in plain PyTorch: the GPT (`gpt`), its config (`config`), multi-head attention with
the lab's switches (`attention`, `variants`, `positions`, `kv_cache`), the sliced LM-head loss
(`loss`), sampling (`generate`), and chapter 3's forms of attention side by side (`forms`).

`from tinygpt.model import GPT, GPTConfig, AttentionConfig, MultiHeadAttention` works; they load
on first use, so the torch-free config loads alone.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {"GPT": "tinygpt.model.gpt", "GPTConfig": "tinygpt.model.config",
            "AttentionConfig": "tinygpt.model.config",
            "MultiHeadAttention": "tinygpt.model.attention"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'tinygpt.model' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
