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


def check_attention_options(
    d_out: int, num_heads: int, mask_impl: str, backend: str
) -> tuple[MaskImpl, Backend]:
    """The options as enums; a UsageError, saying what to change, for ones no attention runs."""
    if num_heads < 1 or d_out % num_heads:
        raise UsageError(
            f"emb_dim/d_out={d_out} is not divisible by n_heads={num_heads} "
            "(pick n_heads that divides it)"
        )
    mask_impl = parse_choice(MaskImpl, mask_impl, "mask_impl")
    backend = parse_choice(Backend, backend, "backend")
    if mask_impl == MaskImpl.renorm and backend != Backend.manual:
        raise UsageError(
            "mask_impl='renorm' needs the manual backend: sdpa cannot renormalise after softmax "
            "(set backend=manual, or mask_impl=neg_inf)"
        )
    return mask_impl, backend


def check_length(n: int, context_length: int) -> None:
    """A sequence longer than the context has no positions (or mask rows) to use."""
    if n > context_length:
        raise UsageError(f"sequence of {n} tokens is longer than context_length={context_length} "
                         "(crop the input or raise context_length)")


class MultiHeadAttention(nn.Module):
    """Multi-head attention with one fused Q/K/V projection and switches for each design choice.

    scale: divide scores by sqrt(d_head). causal: position t sees positions <= t only.
    mask_impl: "neg_inf" (masked scores -> -inf before softmax) or "renorm" (softmax over all,
    zero the future, renormalise rows; the seed's method). backend: "sdpa" (PyTorch's fused
    kernel) or "manual" (explicit matmul/softmax; can return the weights).
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
    ):
        super().__init__()
        mask_impl, backend = check_attention_options(d_out, num_heads, mask_impl, backend)
        self.num_heads, self.head_dim = num_heads, d_out // num_heads
        self.context_length = context_length
        self.dropout = dropout
        self.scale, self.causal, self.mask_impl, self.backend = scale, causal, mask_impl, backend
        self.qkv = nn.Linear(d_in, 3 * d_out, bias=qkv_bias)
        self.out_proj = nn.Linear(d_out, d_out)
        self.register_buffer(
            "mask", torch.ones(context_length, context_length, dtype=torch.bool).tril(),
            persistent=False,
        )

    def forward(
        self, x: Tensor, cache: KVCache | None = None, return_weights: bool = False
    ) -> Tensor | tuple[Tensor, Tensor]:
        """x: (B, T, d_in) -> (B, T, d_out); with return_weights also (B, heads, T, T_keys)."""
        B, T, _ = x.shape
        past = cache.length if cache is not None else 0
        check_length(past + T, self.context_length)
        if return_weights and self.backend != "manual":
            raise ValueError("only backend='manual' can return attention weights (set it)")

        q, k, v = self.project(x)
        if cache is not None:
            k, v = cache.append(k, v)
        # Query i sits at absolute position past+i and may see keys 0..past+i.
        mask = self.mask[past : past + T, : past + T] if self.causal else None

        if self.backend == "sdpa":
            out = self._sdpa(q, k, v, mask, past)
            weights = None
        else:
            out, weights = self._manual(q, k, v, mask)
        out = self.out_proj(out.transpose(1, 2).reshape(B, T, -1))
        return (out, weights) if return_weights else out

    def project(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x (B, T, d_in) -> q, k, v, each (B, heads, T, d_head)."""
        B, T, _ = x.shape
        # One matmul for all three, then heads by reshaping: no copies per head.
        qkv = self.qkv(x).view(B, T, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return qkv.unbind(0)

    def scores(self, q: Tensor, k: Tensor) -> Tensor:
        """Pre-softmax scores (B, heads, T_q, T_k): q.k, divided by sqrt(d_head) if `scale`."""
        scores = q @ k.transpose(-2, -1)
        return scores / math.sqrt(self.head_dim) if self.scale else scores

    def _sdpa(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, past: int) -> Tensor:
        # is_causal assumes queries and keys start together; with a cache they don't, so pass the
        # slice of the mask instead (a single new token needs none: it may see everything).
        is_causal = self.causal and past == 0
        attn_mask = mask if (self.causal and past > 0 and q.shape[2] > 1) else None
        return F.scaled_dot_product_attention(
            q, k, v,
            attn_mask=attn_mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=is_causal,
            scale=None if self.scale else 1.0,
        )

    def _manual(
        self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        scores = self.scores(q, k)
        if mask is not None and self.mask_impl == "neg_inf":
            scores = scores.masked_fill(~mask, -torch.inf)
        weights = torch.softmax(scores, dim=-1)
        if mask is not None and self.mask_impl == "renorm":
            # The future still took part in the softmax, but its weights are zeroed and each row
            # rescaled: exp(s_j)/sum_{j<=t} exp(s_j), the same numbers neg_inf gives, no leak.
            weights = weights * mask
            weights = weights / weights.sum(dim=-1, keepdim=True)
        # Weights are returned before dropout: they are what the model computed, not the noise.
        return F.dropout(weights, self.dropout, self.training) @ v, weights
