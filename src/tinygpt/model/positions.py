"""Where a token is, told to attention without a table of learned embeddings: rotary positions
(RoPE) and ALiBi's distance bias. Plain functions of positions, so any length works.

RoPE (Su et al., arXiv 2104.09864): each pair of a head's dimensions is rotated by an angle
proportional to the position, so q.k depends on the distance between the two tokens only.
ALiBi (Press et al., arXiv 2108.12409): each head subtracts slope_h x distance from its scores.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def rope_angles(head_dim: int, positions: Tensor, base: float = 10000.0) -> tuple[Tensor, Tensor]:
    """cos and sin, (T, head_dim), of the rotation each position applies; pairs (i, i + D/2)
    turn at frequency base^(-2i/D), as GPT-NeoX and Llama lay them out."""
    freqs = base ** (-torch.arange(0, head_dim, 2, device=positions.device).float() / head_dim)
    angles = positions.float()[:, None] * freqs[None, :]  # (T, D/2)
    angles = torch.cat([angles, angles], dim=-1)  # (T, D): the same angle for both of a pair
    return angles.cos(), angles.sin()


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate x (..., T, D): each pair (x_i, x_{i+D/2}) by its position's angle."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos.to(x.dtype) + rotated * sin.to(x.dtype)


def alibi_slopes(num_heads: int) -> Tensor:
    """The paper's slopes: a geometric sequence 2^(-8/n), 2^(-16/n), ... for n heads (n a power
    of two); otherwise those of the power of two below, then every other one of the next."""
    def power_of_two(n: int) -> list[float]:
        start = 2 ** (-8 / n)
        return [start ** (i + 1) for i in range(n)]

    if math.log2(num_heads).is_integer():
        return torch.tensor(power_of_two(num_heads))
    below = 2 ** math.floor(math.log2(num_heads))
    extra = power_of_two(2 * below)[0::2][: num_heads - below]
    return torch.tensor(power_of_two(below) + extra)


def alibi_bias(slopes: Tensor, q_pos: Tensor, k_pos: Tensor) -> Tensor:
    """(heads, T_q, T_k): -slope_h x |distance| between each query and key position."""
    distance = (q_pos[:, None] - k_pos[None, :]).abs().float()
    return -slopes.to(q_pos.device)[:, None, None] * distance
