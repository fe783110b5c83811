"""Attention as chapter 3 of Raschka's *Build a Large Language Model (From Scratch)* builds it,
one idea at a time: each form below adds one thing to the one before it. The module the model
uses, with a switch for every choice these forms make, is
`tinygpt.model.attention.MultiHeadAttention` (form 5).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

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

    def __init__(self, d_in: int, d_out: int, context_length: int, num_heads: int,
                 dropout: float = 0.0, qkv_bias: bool = False):
        super().__init__()
        if d_out % num_heads:
            raise ValueError(f"d_out={d_out} is not divisible by num_heads={num_heads}")
        self.heads = nn.ModuleList(
            CausalAttention(d_in, d_out // num_heads, context_length, dropout, qkv_bias)
            for _ in range(num_heads)
        )

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([head(x) for head in self.heads], dim=-1)
