"""Score a trained model on any text: nats per token and bits per byte over windows of its
context, each token scored once (as validation does)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from tinygpt.data.windows import TokenWindows
from tinygpt.metrics import bits_per_byte
from tinygpt.model.gpt import GPT, evaluating


@dataclass(frozen=True)
class Score:
    nats_per_token: float
    bpb: float
    tokens: int
    bytes: int


@torch.no_grad()
def score_windows(model: GPT, windows: TokenWindows, token_bytes: torch.Tensor,
                  piece: int | None = None, batch: int = 16) -> Score:
    """The model's loss over every window, each token scored once; with `piece`, each window
    is scored in consecutive pieces of that many tokens (the context restarts at each)."""
    nats, tokens, nbytes = 0.0, 0, 0
    device = next(model.parameters()).device
    with evaluating(model):
        for start in range(0, len(windows), batch):
            x, y = (torch.stack(t).to(device) for t in zip(*(windows[i] for i in range(
                start, min(start + batch, len(windows)))), strict=True))
            if piece is not None:
                x, y = x.reshape(-1, piece), y.reshape(-1, piece)
            nats += model.loss(x, y).item() * y.numel()
            tokens += y.numel()
            nbytes += int(token_bytes[y.cpu()].sum())
    return Score(nats / tokens, bits_per_byte(nats, nbytes), tokens, nbytes)


def longer_context(model: GPT, ids: np.ndarray, token_bytes: torch.Tensor,
                   factor: int = 2) -> tuple[Score, Score] | None:
    """The same tokens scored in windows `factor` times the trained context, and in windows of
    the trained context (the reference): what the longer context changes, on the same text."""
    T = model.cfg.context_length
    windows = TokenWindows(ids, factor * T, factor * T)
    if len(windows) == 0:
        return None
    return (score_windows(model, windows, token_bytes),
            score_windows(model, windows, token_bytes, piece=T))
