"""The induction circuit (Elhage et al. 2021; Olsson et al. 2022), measured on windows built like
the copy task's training ones (`tinygpt.data.windows.copied_chunks`: random tokens, then chunks
copied from random earlier places), where most tokens follow an earlier occurrence of the token
before them and no fixed offset finds it. A previous-token head in one layer and an induction
head in the next copy them; one layer alone cannot.

- `copy_windows`: a fixed batch of such windows, and which of their tokens are copies.
- `copy_losses`: the loss on the copies, and on the rest.
- `circuit_scores`: per head, the weight from each query whose next token is a copy to the keys
  just after the earlier occurrences of its own token (induction), and the weight from every query
  to the token before it (previous-token).
- `ablated` and `ablation_check`: the copy loss with one head's output zeroed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from tinygpt.data.config import Synthetic
from tinygpt.data.windows import copied_chunks
from tinygpt.model.gpt import GPT, evaluating
from tinygpt.probes.attention import attention_weights

COPY_PROBE_SEED = 54_321  # the fixed probe batch: drawn apart from any training window's seed


def copy_windows(vocab_size: int, n_tokens: int, task: Synthetic, n: int = 16,
                 seed: int = COPY_PROBE_SEED) -> tuple[Tensor, Tensor]:
    """(n, n_tokens) token ids built like the copy task's training windows, and (n, n_tokens)
    booleans: which tokens are copies."""
    g = torch.Generator().manual_seed(seed)
    rows = [copied_chunks(g, vocab_size, n_tokens, task) for _ in range(n)]
    return torch.stack([x for x, _ in rows]), torch.stack([c for _, c in rows])


@dataclass(frozen=True)
class CopyLosses:
    """Nats per token on the copies and on the rest (random tokens, each chunk's first)."""

    copy: float
    rest: float


@torch.no_grad()
def copy_losses(model: GPT, windows: Tensor, copied: Tensor) -> CopyLosses:
    """The model's loss, in eval mode and float32, on each window's targets: the copies and the
    rest apart."""
    x, y = windows[:, :-1], windows[:, 1:]
    with evaluating(model), torch.autocast(x.device.type, enabled=False):
        logits = model(x)
    losses = F.cross_entropy(logits.flatten(0, 1).float(), y.flatten().to(logits.device),
                             reduction="none").view(y.shape).cpu()
    is_copy = copied[:, 1:]
    return CopyLosses(losses[is_copy].mean().item(), losses[~is_copy].mean().item())


def circuit_scores(weights: list[Tensor], tokens: Tensor, copied: Tensor
                   ) -> tuple[Tensor, Tensor]:
    """Induction and previous-token scores (layers, heads) from each layer's weights
    (B, heads, T, T) on `tokens` (B, T): over the queries t whose next token is a copy, the mean
    weight on the keys j <= t whose previous token is token t (the ones after its earlier
    occurrences); over every query t >= 1, the mean weight on key t - 1."""
    T = weights[0].shape[-1]
    x = tokens[:, :T].cpu()
    t = torch.arange(T)
    after = torch.zeros(x.shape[0], T, T, dtype=torch.bool)  # [b, query t, key j]
    after[:, :, 1:] = x[:, None, :-1] == x[:, :, None]
    after &= t[None, None, :] <= t[None, :, None]
    queries = copied[:, 1 : T + 1].cpu().float()  # query t predicts token t + 1
    stacked = torch.stack([w.float().cpu() for w in weights])  # (layers, B, heads, T, T)
    mass = (stacked * after[None, :, None]).sum(-1)  # (layers, B, heads, T)
    q = queries[None, :, None]
    induction = (mass * q).sum((1, 3)) / q.sum((1, 3)).clamp_min(1)
    previous = stacked[..., t[1:], t[1:] - 1].mean(dim=(1, 3))
    return induction, previous


def circuit(model: GPT, windows: Tensor, copied: Tensor) -> tuple[Tensor, Tensor]:
    """`circuit_scores` of the model on the windows' inputs."""
    _, weights = attention_weights(model, windows[:, :-1])
    return circuit_scores(weights, windows, copied)


@contextmanager
def ablated(model: GPT, layer: int, heads: list[int]) -> Iterator[GPT]:
    """The model with these heads of this layer zeroed: their outputs never reach the
    residual stream (the input of the layer's output projection is zero in their columns)."""
    attn = model.blocks[layer].attn
    d = attn.head_dim

    def zero_heads(_module, args):
        out = args[0].clone()
        for h in heads:
            out[..., h * d:(h + 1) * d] = 0
        return (out,)

    hook = attn.out_proj.register_forward_pre_hook(zero_heads)
    try:
        yield model
    finally:
        hook.remove()


@dataclass(frozen=True)
class Ablation:
    """The copy loss with nothing ablated, with layer 0's previous-token head ablated, and with
    each other head of layer 0 ablated (head -> loss)."""

    previous_head: int
    intact: float
    without_previous: float
    without_other: dict[int, float]


def ablation_check(model: GPT, windows: Tensor, copied: Tensor) -> Ablation:
    """Does the copying go through layer 0's previous-token head? Its copy loss with that head
    ablated, against the same with any other head of layer 0 ablated."""
    _, previous = circuit(model, windows, copied)
    head = int(previous[0].argmax())

    def loss_without(h: int) -> float:
        with ablated(model, 0, [h]):
            return copy_losses(model, windows, copied).copy

    others = {h: loss_without(h) for h in range(previous.shape[1]) if h != head}
    return Ablation(head, copy_losses(model, windows, copied).copy, loss_without(head), others)
