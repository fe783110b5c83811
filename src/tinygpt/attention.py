"""Attention, from the seed's step-by-step forms to the multi-head module the GPT uses.

Read top to bottom: each form adds one idea to the one before it (Raschka, *Build a Large
Language Model (From Scratch)*, chapter 3). `MultiHeadAttention` at the end is the one the model
uses; it has switches for every choice the earlier forms make (scaling, causal mask, how the mask
is applied, which kernel computes it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tinygpt.errors import UsageError, parse_choice
from tinygpt.positions import alibi_bias, alibi_slopes, apply_rope, rope_angles


class MaskImpl(str, Enum):
    """How the causal mask is applied."""

    neg_inf = "neg_inf"  # masked scores become -inf before the softmax
    renorm = "renorm"  # softmax over all, zero the future, renormalise each row (the seed's way)


class Backend(str, Enum):
    """Which kernel computes attention."""

    sdpa = "sdpa"  # PyTorch's fused scaled_dot_product_attention
    manual = "manual"  # explicit matmul + softmax; can return the weights


# --- 1. Simplified self-attention: no trainable weights -------------------------------------


def simple_self_attention(x: Tensor) -> Tensor:
    """Context vectors for inputs (T, d): every token is a softmax(x x^T)-weighted mix of all."""
    scores = x @ x.T
    weights = torch.softmax(scores, dim=-1)
    return weights @ x


# --- 2. Trainable query/key/value projections ------------------------------------------------


class SelfAttentionParams(nn.Module):
    """Self-attention with W_q, W_k, W_v as raw parameters, scores scaled by 1/sqrt(d_k)."""

    def __init__(self, d_in: int, d_out: int):
        super().__init__()
        self.W_query = nn.Parameter(torch.rand(d_in, d_out))
        self.W_key = nn.Parameter(torch.rand(d_in, d_out))
        self.W_value = nn.Parameter(torch.rand(d_in, d_out))

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = x @ self.W_query, x @ self.W_key, x @ self.W_value
        weights = torch.softmax(q @ k.T / k.shape[-1] ** 0.5, dim=-1)
        return weights @ v


class SelfAttentionLinear(nn.Module):
    """The same with nn.Linear, which brings a better initialisation and optional biases."""

    def __init__(self, d_in: int, d_out: int, qkv_bias: bool = False):
        super().__init__()
        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = self.W_query(x), self.W_key(x), self.W_value(x)
        weights = torch.softmax(q @ k.T / k.shape[-1] ** 0.5, dim=-1)
        return weights @ v


# --- 3. Causal attention: a token may not look at the tokens after it ------------------------


class CausalAttention(nn.Module):
    """Single-head causal attention over batches (B, T, d_in), with dropout on the weights."""

    def __init__(
        self, d_in: int, d_out: int, context_length: int, dropout: float = 0.0, qkv_bias=False
    ):
        super().__init__()
        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.dropout = nn.Dropout(dropout)
        # A buffer moves with the module to the right device and is not trained.
        self.register_buffer("mask", torch.triu(torch.ones(context_length, context_length), 1))

    def forward(self, x: Tensor) -> Tensor:
        T = x.shape[1]
        q, k, v = self.W_query(x), self.W_key(x), self.W_value(x)
        scores = q @ k.transpose(1, 2)
        scores = scores.masked_fill(self.mask.bool()[:T, :T], -torch.inf)
        weights = torch.softmax(scores / k.shape[-1] ** 0.5, dim=-1)
        return self.dropout(weights) @ v


# --- 4. Several heads: stack single heads side by side ---------------------------------------


class MultiHeadAttentionWrapper(nn.Module):
    """`num_heads` independent CausalAttention heads, outputs concatenated: (B, T, d_out)."""

    def __init__(
        self,
        d_in: int,
        d_out: int,
        context_length: int,
        num_heads: int,
        dropout: float = 0.0,
        qkv_bias: bool = False,
    ):
        super().__init__()
        if d_out % num_heads:
            raise ValueError(f"d_out={d_out} is not divisible by num_heads={num_heads}")
        self.heads = nn.ModuleList(
            CausalAttention(d_in, d_out // num_heads, context_length, dropout, qkv_bias)
            for _ in range(num_heads)
        )

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([head(x) for head in self.heads], dim=-1)


# --- 5. The module the model uses ------------------------------------------------------------


@dataclass
class KVCache:
    """Keys and values of the tokens seen so far, (B, heads, T_past, d_head), for generation."""

    k: Tensor | None = None
    v: Tensor | None = None

    @property
    def length(self) -> int:
        return 0 if self.k is None else self.k.shape[2]

    def append(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        self.k = k if self.k is None else torch.cat([self.k, k], dim=2)
        self.v = v if self.v is None else torch.cat([self.v, v], dim=2)
        return self.k, self.v


class ScaleType(str, Enum):
    """What the scores are multiplied by (when `scale` is on)."""

    inv_sqrt_d = "inv_sqrt_d"  # 1/sqrt(d_head): keeps the scores' spread at 1 for any d_head
    fixed = "fixed"  # scale_value, e.g. 0.12 with QK-norm (modded-nanogpt)
    learned_layer = "learned_layer"  # one learned factor per layer (starts at 1/sqrt(d_head))
    learned_head = "learned_head"  # one learned factor per head


class QKNorm(str, Enum):
    """A normalisation of each head's queries and keys before their dot product."""

    none = "none"
    rms = "rms"  # RMSNorm with a learned gain (Wortsman et al.: it stops attention-logit growth)
    layer = "layer"  # LayerNorm


class Positions(str, Enum):
    """How a token's position reaches attention."""

    learned = "learned"  # GPT-2's learned table, added to the embeddings (context_length is a cap)
    rope = "rope"  # q and k rotated by their positions (tinygpt.positions)
    alibi = "alibi"  # scores biased by -slope_h x distance (tinygpt.positions)
    none = "none"  # NoPE: the causal mask alone tells tokens apart


def check_attention_options(
    d_out: int, num_heads: int, mask_impl: str = "neg_inf", backend: str = "sdpa", *,
    causal: bool = True, scale: bool = True, scale_type: str = "inv_sqrt_d",
    scale_value: float | None = None,
    qk_norm: str = "none", n_kv_heads: int | None = None, window: int | None = None,
    softcap: float | None = None, positions: str = "learned",
) -> dict:
    """The options as enums (a dict of them); a UsageError, saying what to change, for any
    combination no attention can run. (Every causal setting runs.)"""
    if num_heads < 1 or d_out % num_heads:
        raise UsageError(
            f"emb_dim/d_out={d_out} is not divisible by n_heads={num_heads} "
            "(pick n_heads that divides it)"
        )
    o = {"mask_impl": parse_choice(MaskImpl, mask_impl, "mask_impl"),
         "backend": parse_choice(Backend, backend, "backend"),
         "scale_type": parse_choice(ScaleType, scale_type, "scale_type"),
         "qk_norm": parse_choice(QKNorm, qk_norm, "qk_norm"),
         "positions": parse_choice(Positions, positions, "positions")}
    head_dim = d_out // num_heads
    divisors = [n for n in range(1, num_heads + 1) if num_heads % n == 0]
    problems = [
        (o["mask_impl"] == MaskImpl.renorm and o["backend"] != Backend.manual,
         "mask_impl='renorm' needs the manual backend: sdpa cannot renormalise after softmax "
         "(set backend=manual, or mask_impl=neg_inf)"),
        (n_kv_heads is not None and n_kv_heads not in divisors,
         f"n_kv_heads={n_kv_heads} must divide n_heads={num_heads} (use one of "
         f"{', '.join(map(str, divisors))}; 1 is multi-query)"),
        (window is not None and window < 1,
         f"window={window} must be at least 1 key (or null: full attention)"),
        (o["positions"] == Positions.rope and head_dim % 2,
         f"positions=rope rotates pairs of dimensions: d_head={head_dim} is odd (pick emb_dim "
         "and n_heads so emb_dim / n_heads is even)"),
        (softcap is not None and softcap <= 0,
         f"softcap={softcap} must be positive (or null: off)"),
        (softcap is not None and o["backend"] != Backend.manual,
         "softcap needs the manual backend: sdpa cannot cap its scores (set backend=manual)"),
        (not scale and o["scale_type"] != ScaleType.inv_sqrt_d,
         f"scale_type={o['scale_type'].value} needs scale=true: scale=false means no factor at "
         "all (set scale=true, or scale_type=inv_sqrt_d)"),
        (o["scale_type"] == ScaleType.fixed and scale_value is None,
         "scale_type=fixed needs scale_value (e.g. scale_value=0.12)"),
    ]
    for bad, message in problems:
        if bad:
            raise UsageError(message)
    return o


def check_length(n: int, context_length: int) -> None:
    """A sequence longer than the learned position table has no positions to use."""
    if n > context_length:
        raise UsageError(f"sequence of {n} tokens is longer than context_length={context_length} "
                         "(crop the input or raise context_length)")


class MultiHeadAttention(nn.Module):
    """Multi-head attention with one fused Q/K/V projection and switches for each design choice.

    scale: multiply scores by a factor, `scale_type` which (1/sqrt(d_head), a fixed
    `scale_value`, or learned per layer or per head); off, the raw dot products. causal:
    position t sees positions <= t only; `window` narrows that to the last `window` keys.
    mask_impl: "neg_inf" (masked scores -> -inf before softmax) or "renorm" (softmax over all,
    zero the future, renormalise rows; the seed's method). backend: "sdpa" (PyTorch's fused
    kernel) or "manual" (explicit matmul/softmax; can return the weights). qk_norm: normalise
    each head's q and k. n_kv_heads: fewer key/value heads, shared by groups of query heads
    (grouped-query; 1 = multi-query). softcap: scores -> softcap * tanh(scores / softcap).
    positions: "rope" and "alibi" act here; "learned" and "none" leave attention as it is.
    """

    def __init__(
        self,
        d_in: int,
        d_out: int,
        context_length: int,
        num_heads: int,
        dropout: float = 0.0,
        qkv_bias: bool = False,
        scale: bool = True,
        causal: bool = True,
        mask_impl: MaskImpl | str = "neg_inf",
        backend: Backend | str = "sdpa",
        *,
        scale_type: ScaleType | str = "inv_sqrt_d",
        scale_value: float | None = None,
        qk_norm: QKNorm | str = "none",
        n_kv_heads: int | None = None,
        window: int | None = None,
        softcap: float | None = None,
        positions: Positions | str = "learned",
        rope_base: float = 10000.0,
    ):
        super().__init__()
        o = check_attention_options(
            d_out, num_heads, mask_impl, backend, scale=scale, scale_type=scale_type,
            scale_value=scale_value, qk_norm=qk_norm, n_kv_heads=n_kv_heads, window=window,
            softcap=softcap, positions=positions)
        self.num_heads, self.head_dim = num_heads, d_out // num_heads
        self.n_kv_heads = n_kv_heads or num_heads
        self.context_length, self.dropout = context_length, dropout
        self.scale, self.causal, self.window, self.softcap = scale, causal, window, softcap
        self.mask_impl, self.backend = o["mask_impl"], o["backend"]
        self.scale_type, self.positions, self.rope_base = o["scale_type"], o["positions"], rope_base
        kv = self.n_kv_heads * self.head_dim
        self.qkv = nn.Linear(d_in, d_out + 2 * kv, bias=qkv_bias)
        self.out_proj = nn.Linear(d_out, d_out)
        norm = {QKNorm.rms: nn.RMSNorm, QKNorm.layer: nn.LayerNorm}.get(o["qk_norm"])
        self.q_norm = norm(self.head_dim) if norm else None
        self.k_norm = norm(self.head_dim) if norm else None
        inv_sqrt_d = 1 / math.sqrt(self.head_dim)
        self.scale_value = scale_value if self.scale_type == ScaleType.fixed else inv_sqrt_d
        if self.scale_type in (ScaleType.learned_layer, ScaleType.learned_head):
            # learnt from where 1/sqrt(d_head) would have it
            shape = (num_heads,) if self.scale_type == ScaleType.learned_head else ()
            self.learned_scale = nn.Parameter(torch.full(shape, inv_sqrt_d))
        if self.positions == Positions.alibi:
            self.register_buffer("alibi_slopes", alibi_slopes(num_heads), persistent=False)

    def forward(
        self, x: Tensor, cache: KVCache | None = None, return_weights: bool = False
    ) -> Tensor | tuple[Tensor, Tensor]:
        """x: (B, T, d_in) -> (B, T, d_out); with return_weights also (B, heads, T, T_keys)."""
        B, T, _ = x.shape
        past = cache.length if cache is not None else 0
        if return_weights and self.backend != "manual":
            raise ValueError("only backend='manual' can return attention weights (set it)")

        q, k, v = self.project(x, past)
        if cache is not None:  # keys as they were rotated and normalised: reused as they are
            k, v = cache.append(k, v)
        if self.backend == "sdpa":
            out, weights = self._sdpa(q, k, v, past), None
        else:
            out, weights = self._manual(q, k, v, past)
        out = self.out_proj(out.transpose(1, 2).reshape(B, T, -1))
        return (out, weights) if return_weights else out

    def project(self, x: Tensor, past: int = 0) -> tuple[Tensor, Tensor, Tensor]:
        """x (B, T, d_in) -> q (B, heads, T, d_head), k and v (B, kv heads, T, d_head), with
        QK-norm and rotary positions applied (the tokens sit at positions past, past+1, ...)."""
        B, T, _ = x.shape
        D, kv = self.head_dim, self.n_kv_heads * self.head_dim
        # One matmul for all three, then heads by reshaping: no copies per head.
        q, k, v = self.qkv(x).split([self.num_heads * D, kv, kv], dim=-1)
        q = q.view(B, T, self.num_heads, D).transpose(1, 2)
        k = k.view(B, T, self.n_kv_heads, D).transpose(1, 2)
        v = v.view(B, T, self.n_kv_heads, D).transpose(1, 2)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        if self.positions == Positions.rope:
            cos, sin = rope_angles(D, torch.arange(past, past + T, device=x.device),
                                   self.rope_base)
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        return q, k, v

    def score_scale(self) -> float | Tensor:
        """The factor scores are multiplied by: a number, or a learned tensor (per head: shaped
        to broadcast over (B, heads, T_q, T_k))."""
        if not self.scale:
            return 1.0
        if self.scale_type == ScaleType.learned_head:
            return self.learned_scale.view(1, -1, 1, 1)
        if self.scale_type == ScaleType.learned_layer:
            return self.learned_scale
        return self.scale_value  # inv_sqrt_d's 1/sqrt(d_head), or the fixed value

    def expand_kv(self, t: Tensor) -> Tensor:
        """Keys or values (B, kv heads, T, D) repeated for the query heads of each group."""
        groups = self.num_heads // self.n_kv_heads
        return t if groups == 1 else t.repeat_interleave(groups, dim=1)

    def visible(self, past: int, T_q: int, T_k: int, device=None) -> Tensor | None:
        """Which keys each query may see, (T_q, T_k) booleans; None when it sees all of them."""
        if not self.causal and self.window is None:
            return None
        q_pos = torch.arange(past, past + T_q, device=device)[:, None]
        k_pos = torch.arange(T_k, device=device)[None, :]
        seen = k_pos <= q_pos if self.causal else torch.ones(T_q, T_k, dtype=torch.bool,
                                                              device=device)
        if self.window is not None:  # the last `window` keys: distance 0 .. window-1
            seen = seen & ((q_pos - k_pos).abs() < self.window)
        return seen

    def bias(self, past: int, T_q: int, T_k: int, device=None) -> Tensor | None:
        """ALiBi's additive score bias (heads, T_q, T_k), or None."""
        if self.positions != Positions.alibi:
            return None
        return alibi_bias(self.alibi_slopes, torch.arange(past, past + T_q, device=device),
                          torch.arange(T_k, device=device))

    def scores(self, q: Tensor, k: Tensor, past: int = 0) -> Tensor:
        """Pre-softmax scores (B, heads, T_q, T_k): the scaled q.k, soft-capped, plus ALiBi's
        bias (the mask is applied after)."""
        scores = (q @ self.expand_kv(k).transpose(-2, -1)) * self.score_scale()
        if self.softcap is not None:
            scores = self.softcap * torch.tanh(scores / self.softcap)
        bias = self.bias(past, q.shape[2], k.shape[2], q.device)
        return scores if bias is None else scores + bias.to(scores.dtype)

    def _sdpa(self, q: Tensor, k: Tensor, v: Tensor, past: int) -> Tensor:
        T_q, T_k = q.shape[2], k.shape[2]
        factor = self.score_scale()
        if isinstance(factor, Tensor):  # learned: into q, so the kernel's own factor is 1
            q, factor = q * factor.to(q.dtype), 1.0
        bias, seen = self.bias(past, T_q, T_k, q.device), None
        # The kernel's own causal flag assumes queries and keys start together and no window:
        # anything else gets an explicit mask (a single new token with no window needs none).
        plain_causal = self.causal and self.window is None and bias is None
        is_causal = plain_causal and past == 0
        if not is_causal and not (plain_causal and T_q == 1):
            seen = self.visible(past, T_q, T_k, q.device)
        attn_mask = seen
        if bias is not None:  # ALiBi: a float mask, -inf where a key is hidden
            attn_mask = bias.to(q.dtype) if seen is None else bias.to(q.dtype).masked_fill(
                ~seen, -torch.inf)
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0,
            is_causal=is_causal, scale=factor, enable_gqa=self.n_kv_heads != self.num_heads,
        )

    def _manual(self, q: Tensor, k: Tensor, v: Tensor, past: int) -> tuple[Tensor, Tensor]:
        scores = self.scores(q, k, past)
        mask = self.visible(past, q.shape[2], k.shape[2], q.device)
        if mask is not None and self.mask_impl == "neg_inf":
            scores = scores.masked_fill(~mask, -torch.inf)
        weights = torch.softmax(scores, dim=-1)
        if mask is not None and self.mask_impl == "renorm":
            # The future still took part in the softmax, but its weights are zeroed and each row
            # rescaled: exp(s_j)/sum_{j<=t} exp(s_j), the same numbers neg_inf gives, no leak.
            weights = weights * mask
            weights = weights / weights.sum(dim=-1, keepdim=True)
        # Weights are returned before dropout: they are what the model computed, not the noise.
        out = F.dropout(weights, self.dropout, self.training) @ self.expand_kv(v)
        return out, weights
