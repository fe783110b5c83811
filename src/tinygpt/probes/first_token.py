"""Attention sinks (Xiao et al. 2023; Gu et al. 2024): heads that put their mass on the first
token whatever it is, and the activation outliers that come with them (Bondarenko et al. 2023)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from tinygpt.model.gpt import GPT, evaluating
from tinygpt.probes.attention import attention_weights

SINK_THRESHOLD = 0.3  # Gu et al.: a head is a sink head when its mean first-token mass exceeds it


def first_token_mass(model: GPT, idx: Tensor) -> Tensor:
    """Mean attention weight on position 0 from queries 1..T-1 (query 0 can see nothing else),
    per layer and head: (layers, heads)."""
    _, weights = attention_weights(model, idx)
    return torch.stack([w[..., 1:, 0].float().mean(dim=(0, 2)) for w in weights])


def sink_rate(mass: Tensor, threshold: float = SINK_THRESHOLD) -> float:
    """The share of heads whose first-token mass exceeds the threshold."""
    return (mass > threshold).float().mean().item()


@dataclass
class Outliers:
    """The residual stream after one block, over every token and channel of a batch."""

    ratio: float  # largest |activation| over the median |activation|
    kurtosis: float  # E[(x - mean)^4] / var^2: 3 for a Gaussian, far more with outliers


@torch.no_grad()
def activation_outliers(model: GPT, idx: Tensor) -> list[Outliers]:
    """Each block's output (the residual stream) on idx, in eval mode: its outlier statistics."""
    outputs: list[Tensor] = []
    hooks = [b.register_forward_hook(lambda _m, _a, out: outputs.append(out[0].float()))
             for b in model.blocks]
    try:
        with evaluating(model):
            model.hidden(idx)
    finally:
        for h in hooks:
            h.remove()
    stats = []
    for x in outputs:
        a = x.abs()
        centred = x - x.mean()
        kurtosis = (centred**4).mean() / centred.square().mean().square().clamp_min(1e-30)
        stats.append(Outliers(ratio=(a.max() / a.median().clamp_min(1e-12)).item(),
                              kurtosis=kurtosis.item()))
    return stats
