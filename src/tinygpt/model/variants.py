"""What attention may use besides the plain softmax (`MultiHeadAttention` wires them in): a
sigmoid gate on each head's output, sigmoid attention's bias, softpick, and differential
attention's lambda with the norm its output goes through. (A sink is one more column of the
mask: `MultiHeadAttention.mask`.)"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Differential attention's lambda_init. Ye et al. make it depend on the layer's depth; they report
# a constant 0.8 trains as well (their ablation), and it keeps a block ignorant of its position.
DIFF_LAMBDA_INIT = 0.8
# Softpick's eps: it only matters where every score is exactly 0 (0 / 0)
SOFTPICK_EPS = 1e-6


def sigmoid_bias(context_length: int) -> float:
    """Ramapuram et al.'s -log(n): sigmoid(score - log n) keeps a row's total weight near what
    softmax gives it at the start of training, instead of about n/2."""
    return -math.log(context_length)


def softpick(scores: Tensor) -> Tensor:
    """Zuhri et al.'s rectified softmax along the last axis: relu(e^s - 1) / (sum |e^s - 1| + eps).
    A key scored at or below 0 gets nothing, so a row can give no key anything and needs no sink;
    -inf (a hidden key) takes no part. Computed as e^(s - m) - e^(-m) with m = max(row max, 0):
    the same ratio, and no exponent above 0."""
    m = scores.amax(dim=-1, keepdim=True).clamp_min(0.0)
    one = torch.exp(-m)  # what 1 becomes once everything is scaled by e^(-m)
    shifted = torch.exp(scores - m) - one
    mass = torch.where(scores.isneginf(), 0.0, shifted.abs()).sum(dim=-1, keepdim=True)
    return F.relu(shifted) / (mass + SOFTPICK_EPS * one)


class OutputGate(nn.Module):
    """Qiu et al.'s gate: each head's output times sigmoid(W x + b), computed from the attention's
    input x; one scalar per head (`head`) or one per channel (`elementwise`)."""

    def __init__(self, d_in: int, num_heads: int, head_dim: int, elementwise: bool):
        super().__init__()
        self.head_dim, self.elementwise = head_dim, elementwise
        self.proj = nn.Linear(d_in, num_heads * head_dim if elementwise else num_heads)

    def forward(self, x: Tensor, out: Tensor) -> Tensor:
        """x (B, T, d_in), out (B, T, heads * head_dim) -> out gated."""
        gate = torch.sigmoid(self.proj(x))
        if not self.elementwise:
            gate = gate.repeat_interleave(self.head_dim, dim=-1)
        return out * gate.to(out.dtype)


class DiffLambda(nn.Module):
    """Differential attention's lambda = exp(lq1 . lk1) - exp(lq2 . lk2) + lambda_init, learnt
    per layer: head pair i is map 2i minus lambda times map 2i+1 (`pairs`, of the maps or, as
    the fused kernel has them, of their outputs), its output normalised per head
    (`normalise`: RMSNorm times 1 - lambda_init)."""

    def __init__(self, head_dim: int, value_dim: int, lambda_init: float = DIFF_LAMBDA_INIT):
        super().__init__()
        self.lambda_init = lambda_init
        self.q1, self.k1, self.q2, self.k2 = (nn.Parameter(0.1 * torch.randn(head_dim))
                                              for _ in range(4))
        self.norm = nn.RMSNorm(value_dim, eps=1e-5)

    def value(self) -> Tensor:
        return (torch.exp(self.q1 @ self.k1) - torch.exp(self.q2 @ self.k2) + self.lambda_init)

    def pairs(self, t: Tensor) -> Tensor:
        """(B, heads, ...) -> (B, heads / 2, ...): head 2i minus lambda times head 2i+1."""
        return t[:, 0::2] - self.value().to(t.dtype) * t[:, 1::2]

    def normalise(self, out: Tensor) -> Tensor:
        """A head pair's output (B, pairs, T, value_dim), normalised as the paper does."""
        return self.norm(out) * (1 - self.lambda_init)


def pair_values(v: Tensor) -> Tensor:
    """Values (B, heads, T, D) -> (B, heads / 2, T, 2D): heads 2i and 2i+1 side by side, the
    value of differential head i."""
    B, H, T, D = v.shape
    return v.view(B, H // 2, 2, T, D).transpose(2, 3).reshape(B, H // 2, T, 2 * D)
