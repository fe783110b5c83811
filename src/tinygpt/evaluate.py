"""Score a trained model on any text: nats per token and bits per byte over windows of its
context, each token scored once (as validation does)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from tinygpt.data import TokenWindows, bits_per_byte
from tinygpt.model import GPT, evaluating
from tinygpt.tokenizer import Tokenizer


@dataclass(frozen=True)
class Score:
    nats_per_token: float
    bpb: float
    tokens: int
    bytes: int


@torch.no_grad()
def score_text(model: GPT, tokenizer: Tokenizer, text: str, batch: int = 16) -> Score:
    """The model's loss on `text` in side-by-side windows of context_length (+1) tokens."""
    ids = np.asarray(tokenizer.encode(text), dtype=np.int64)
    windows = TokenWindows(ids, model.cfg.context_length, model.cfg.context_length)
    if len(windows) == 0:
        raise ValueError(f"the text has {len(ids)} tokens, fewer than one window")
    token_bytes = torch.tensor(tokenizer.token_bytes())
    nats, tokens, nbytes = 0.0, 0, 0
    with evaluating(model):
        for start in range(0, len(windows), batch):
            x, y = (torch.stack(t) for t in zip(*(windows[i] for i in range(
                start, min(start + batch, len(windows)))), strict=True))
            nats += model.loss(x, y).item() * y.numel()
            tokens += y.numel()
            nbytes += int(token_bytes[y].sum())
    return Score(nats / tokens, bits_per_byte(nats, nbytes), tokens, nbytes)


