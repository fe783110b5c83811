"""Attention statistics: how sharp the attention is, how spread its scores are, and how much
gradient reaches W_q and W_k; and the weights and scores read from each attention module's hook
points (`recorded`). Plain PyTorch; `training.callbacks.AttentionStats` logs them."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from tinygpt.model.attention import HookPoint, visible
from tinygpt.model.config import Kind
from tinygpt.model.gpt import GPT, attention_overrides, evaluating


def row_entropy(weights: Tensor) -> Tensor:
    """Entropy in nats of each attention row: (..., T_keys) -> (...); 0 log 0 counts as 0.
    Rows that are not a distribution (a sink took mass; sigmoid or differential weights) are
    read as |w| / sum |w|: for a plain softmax that changes nothing."""
    p = weights.abs()
    p = p / p.sum(-1, keepdim=True).clamp_min(1e-30)
    return -torch.special.xlogy(p, p).sum(-1)


@contextmanager
def recorded(model: nn.Module, hook: str = "hook_pattern") -> Iterator[list[Tensor]]:
    """What each attention module's hook point `hook` (`hook_pattern`: the weights, `hook_scores`:
    the masked scores; `tinygpt.model.attention.HookPoint`) sees while the model runs inside the
    block, in layer order: `with recorded(model) as patterns: model(idx)`. The manual kernel
    computes them; a fused one records nothing."""
    seen: list[Tensor] = []
    points = [m for name, m in model.named_modules()
              if isinstance(m, HookPoint) and name.rsplit(".", 1)[-1] == hook]
    handles = [p.register_forward_hook(lambda _m, _args, out: seen.append(out)) for p in points]
    try:
        yield seen
    finally:
        for h in handles:
            h.remove()


def with_weights(module: nn.Module, *args: Tensor) -> tuple[Tensor, list[Tensor]]:
    """What `module(*args)` returns, and the weights each of its attention modules computed
    (the manual kernel's), in layer order."""
    with recorded(module) as weights:
        out = module(*args)
    return out, weights


def attention_weights(model: GPT, idx: Tensor) -> tuple[Tensor, list[Tensor]]:
    """Logits (B, T, vocab) and each layer's weights (B, heads, T, T) on idx, in eval mode, in
    float32 and without gradients, by the manual backend for this call only.

    Where a mass is read from the weights, every kind must read alike: softmax and softpick rows
    are shares as they are (what a sink took, or softpick withheld, is missing from them); sigmoid
    and differential rows are not, so they come as shares of their total |weight| (a sigmoid head
    that gives 0.9 to every key spreads its mass evenly, it does not copy from each)."""
    with (evaluating(model), torch.no_grad(), attention_overrides(model, backend="manual"),
          torch.autocast(idx.device.type, enabled=False), recorded(model) as weights):
        logits = model(idx)
    if model.cfg.attention.kind in (Kind.sigmoid, Kind.differential):
        weights = [w.abs() / w.abs().sum(-1, keepdim=True).clamp_min(1e-30) for w in weights]
    return logits, weights


def uniform_entropy(T: int, causal: bool = True) -> float:
    """The largest possible mean row entropy: row t of a causal map spreads over t+1 keys."""
    if not causal:
        return math.log(T)
    return sum(math.log(t + 1) for t in range(T)) / T


@dataclass
class LayerStats:
    """One layer's attention on a batch, per head, averaged over sequences and query rows."""

    entropy: Tensor  # (heads,) row entropy, nats
    max_weight: Tensor  # (heads,) each row's largest weight: 1.0 is a saturated softmax
    score_std: Tensor  # (heads,) spread of a row's pre-softmax scores over the keys it sees
    max_score: float  # the largest pre-softmax score the layer gives a key it sees (logit growth)


def attention_stats(model: GPT, idx: Tensor) -> list[LayerStats]:
    """Statistics of each layer's attention on idx (B, T), in eval mode and without gradients.

    Runs the manual backend for this call only (it is the one that computes the weights), so
    the model keeps whatever kernel it trains with."""
    attns = [block.attn for block in model.blocks]
    with (evaluating(model), torch.no_grad(), attention_overrides(model, backend="manual"),
          recorded(model) as weights, recorded(model, "hook_scores") as scores):
        model.hidden(idx)  # the LM head is not needed
    T = idx.shape[1]
    stats = []
    for a, w, s in zip(attns, weights, scores, strict=True):
        w, s = w.float(), s[..., :T].float()  # a sink's column is no key
        seen = visible(a.switches, 0, T, T, s.device)
        if seen is None:
            seen = torch.ones(T, T, dtype=torch.bool, device=s.device)
        s = s.masked_fill(~seen, 0.0)  # the keys a query sees; -inf where the mask hid one
        n = seen.sum(-1)  # keys each query row sees
        mean = (s * seen).sum(-1, keepdim=True) / n[:, None]
        std = ((((s - mean) * seen) ** 2).sum(-1) / n).sqrt()
        stats.append(LayerStats(
            entropy=row_entropy(w).mean(dim=(0, 2)),
            max_weight=w.amax(-1).mean(dim=(0, 2)),
            score_std=std[..., n > 1].mean(dim=(0, 2)),  # a row with one key has no spread
            max_score=s.masked_fill(~seen, -torch.inf).max().item(),
        ))
    return stats


def qk_grad_norms(model: GPT) -> list[tuple[float, float]] | None:
    """(|grad W_q|, |grad W_k|) per layer, 2-norms of the fused qkv weight's query and key rows;
    None before any backward pass."""
    out = []
    for block in model.blocks:
        a = block.attn
        grad = a.qkv.weight.grad
        if grad is None:
            return None
        kv = a.n_kv_heads * a.head_dim
        g_q, g_k, _ = grad.float().split([a.num_heads * a.head_dim, kv, kv], dim=0)
        out.append((g_q.norm().item(), g_k.norm().item()))
    return out
