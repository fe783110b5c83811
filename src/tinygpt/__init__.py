"""tinygpt: a training lab for a tiny GPT whose attention you can take apart.

`from tinygpt import GPT, GPTConfig, AttentionConfig, MultiHeadAttention` works as usual; they
load on first use, so the torch-free parts (the settings, the config check) start in a blink.
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
        raise AttributeError(f"module 'tinygpt' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
