"""Induction heads (Olsson et al. 2022): on a random token sequence repeated once, a head that
attends from each token of the second copy to the token after its earlier occurrence, and the
in-context loss drop that copying buys."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from tinygpt.model.gpt import GPT
from tinygpt.probes.attention import attention_weights


def repeated_tokens(vocab_size: int, length: int, batch: int = 8, seed: int = 0,
                    bos: int | None = None) -> Tensor:
    """(batch, 2 * length) token ids: `length` uniform random tokens, then the same again; with
    `bos`, that token first (as the model's training windows began)."""
    g = torch.Generator().manual_seed(seed)
    first = torch.randint(0, vocab_size, (batch, length), generator=g)
    start = [] if bos is None else [torch.full((batch, 1), bos)]
    return torch.cat([*start, first, first], dim=1)


def uniform_score(length: int, start: int = 0) -> float:
    """The induction score of uniform causal attention: query t spreads 1/(t+1) over its keys."""
    copy = range(start + length, start + 2 * length)
    return sum(1 / (t + 1) for t in copy) / length


@dataclass
class InductionScores:
    """Per layer and head (layers, heads), and the loss on each copy in nats per token."""

    induction: Tensor  # mean weight from token t of the copy to token t - length + 1
    previous: Tensor  # mean weight from token t to token t - 1
    first_loss: float  # tokens 2..length: nothing to copy from
    second_loss: float  # the copy: every token was seen `length` positions earlier

    @property
    def in_context_drop(self) -> float:
        """Nats per token the copy is cheaper than the first: what in-context copying buys."""
        return self.first_loss - self.second_loss


def head_scores(weights: list[Tensor], length: int, start: int = 0) -> tuple[Tensor, Tensor]:
    """Induction and previous-token scores (layers, heads) from each layer's weights
    (B, heads, T, T) on a sequence of `length` tokens repeated from position `start`."""
    L, p = length, start
    stacked = torch.stack([w.float() for w in weights])  # (layers, B, heads, T, T)
    copy_q = torch.arange(p + L, p + 2 * L)  # queries in the copy, and the key after their first
    prev_q = torch.arange(p + 1, p + 2 * L)
    return (stacked[..., copy_q, copy_q - L + 1].mean(dim=(1, 3)),
            stacked[..., prev_q, prev_q - 1].mean(dim=(1, 3)))


def induction_scores(model: GPT, idx: Tensor) -> InductionScores:
    """Scores on idx (B, 2L) or (B, 1 + 2L), a sequence of L tokens repeated, after a start
    token where its length is odd (`repeated_tokens`)."""
    p = idx.shape[1] % 2
    L = idx.shape[1] // 2
    logits, weights = attention_weights(model, idx)
    losses = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), idx[:, 1:].flatten(),
                             reduction="none").view(idx.shape[0], -1)
    induction, previous = head_scores(weights, L, p)
    # Position t predicts token t+1: the first copy's predictions come from positions p..p+L-2,
    # the copy's from p+L..p+2L-2 (position p+L-1 predicts the copy's first token, which nothing
    # announces).
    return InductionScores(induction, previous, losses[:, p : p + L - 1].mean().item(),
                           losses[:, p + L :].mean().item())
