"""Multi-head attention, the module the GPT uses, with a switch for each design choice.

How it came to be, form by form (the seed's chapter 3): `tinygpt.attention_forms`. The switches
and their checks: `tinygpt.model_config.AttentionConfig`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tinygpt.attention_variants import (
    DiffLambda,
    OutputGate,
    pair_values,
    sigmoid_bias,
    with_sink,
)
from tinygpt.errors import UsageError, parse_choice
from tinygpt.model_config import AttentionConfig, Gate, Kind, Positions, QKNorm, ScaleType, Sink
from tinygpt.positions import alibi_bias, alibi_slopes, apply_rope, rope_angles


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


def check_length(n: int, context_length: int) -> None:
    """A sequence longer than the learned position table has no positions to use."""
    if n > context_length:
        raise UsageError(f"sequence of {n} tokens is longer than context_length={context_length} "
                         "(crop the input or raise context_length)")


# On a CPU the fused kernel's bf16 backward is slower than its float32 one for short sequences
# (an AMX Xeon, forward + backward, 4 heads of 32: 4.0 against 0.9 ms at 64 keys, 10.7 against
# 3.4 at 128, even around 512-1024; docs/speedrun.md): below this many keys a training step's
# attention runs in float32.
CPU_BF16_SDPA_MIN_KEYS = 512


def sdpa(q: Tensor, k: Tensor, v: Tensor, **kwargs: object) -> Tensor:
    """F.scaled_dot_product_attention, in float32 where its CPU bf16 backward would be slower."""
    if (q.dtype == torch.bfloat16 and q.device.type == "cpu" and torch.is_grad_enabled()
            and k.shape[-2] < CPU_BF16_SDPA_MIN_KEYS):
        mask = kwargs.get("attn_mask")
        if isinstance(mask, Tensor) and mask.is_floating_point():
            kwargs["attn_mask"] = mask.float()
        with torch.autocast("cpu", enabled=False):  # which would cast them back to bf16
            out = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), **kwargs)
        return out.to(q.dtype)
    return F.scaled_dot_product_attention(q, k, v, **kwargs)


class MultiHeadAttention(nn.Module):
    """Multi-head attention with one fused Q/K/V projection and switches for each design choice.

    The switches are `AttentionConfig`'s fields, given as keywords (`scale=False`,
    `backend="manual"`, ...) or as `attention=` a whole config. scale: multiply scores by a
    factor, `scale_type` which (1/sqrt(d_head), a fixed `scale_value`, or learned per layer or
    per head); off, the raw dot products. causal: position t sees positions <= t only; `window`
    narrows that to the last `window` keys. mask_impl: "neg_inf" (masked scores -> -inf before
    softmax) or "renorm" (softmax over all, zero the future, renormalise rows; the seed's
    method). backend: "sdpa" (PyTorch's fused kernel) or "manual" (explicit matmul/softmax; can
    return the weights). qk_norm: normalise each head's q and k. n_kv_heads: fewer key/value
    heads, shared by groups of query heads (grouped-query; 1 = multi-query). softcap: scores ->
    softcap * tanh(scores / softcap). positions: "rope" and "alibi" act here; "learned" and
    "none" leave attention as it is. sink: an extra key that takes mass and gives nothing
    (zero: logit 0, softmax + 1; learned: a logit per head). gate: each head's output times a
    sigmoid of the input (one per head, or per channel). kind: softmax, sigmoid (weights
    sigmoid(score - log n), no normalisation) or differential (pairs of heads: the difference of
    two softmax maps over shared values; tinygpt.attention_variants).
    """

    def __init__(
        self,
        d_in: int,
        d_out: int,
        context_length: int,
        num_heads: int,
        dropout: float = 0.0,
        qkv_bias: bool = False,
        *,
        attention: AttentionConfig | None = None,
        positions: Positions | str = "learned",
        rope_base: float = 10000.0,
        out_bias: bool = True,
        **switches: object,
    ):
        super().__init__()
        a = replace(attention or AttentionConfig(), **switches)
        positions = parse_choice(Positions, positions, "model.positions")
        a.check(d_out, num_heads, positions)
        self.num_heads, self.head_dim = num_heads, d_out // num_heads
        self.n_kv_heads = a.n_kv_heads or num_heads
        self.context_length, self.dropout = context_length, dropout
        self.scale, self.causal, self.window, self.softcap = a.scale, a.causal, a.window, a.softcap
        self.mask_impl, self.backend = a.mask_impl, a.backend
        self.scale_type, self.positions, self.rope_base = a.scale_type, positions, rope_base
        self.kind, self.sink = a.kind, a.sink
        kv = self.n_kv_heads * self.head_dim
        self.qkv = nn.Linear(d_in, d_out + 2 * kv, bias=qkv_bias)
        self.out_proj = nn.Linear(d_out, d_out, bias=out_bias)
        norm = {QKNorm.rms: nn.RMSNorm, QKNorm.layer: nn.LayerNorm}.get(a.qk_norm)
        self.q_norm = norm(self.head_dim) if norm else None
        self.k_norm = norm(self.head_dim) if norm else None
        inv_sqrt_d = 1 / math.sqrt(self.head_dim)
        self.scale_value = a.scale_value if self.scale_type == ScaleType.fixed else inv_sqrt_d
        if self.scale_type in (ScaleType.learned_layer, ScaleType.learned_head):
            # learnt from where 1/sqrt(d_head) would have it
            shape = (num_heads,) if self.scale_type == ScaleType.learned_head else ()
            self.learned_scale = nn.Parameter(torch.full(shape, inv_sqrt_d))
        if self.positions == Positions.alibi:
            self.register_buffer("alibi_slopes", alibi_slopes(num_heads), persistent=False)
        if a.sink == Sink.learned:  # starts where the zero sink is
            self.sink_logit = nn.Parameter(torch.zeros(num_heads))
        self.gate = None if a.gate == Gate.none else OutputGate(
            d_in, num_heads, self.head_dim, elementwise=a.gate == Gate.elementwise)
        self.diff = DiffLambda(self.head_dim, 2 * self.head_dim) if a.kind == Kind.differential \
            else None

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
        if self.diff is None:
            out, weights = self.attend(q, k, v, past)
        else:  # head pair i: maps of heads 2i and 2i+1 over their values side by side
            v = pair_values(v)
            (first, w1), (second, w2) = (self.attend(q[:, h::2], k[:, h::2], v, past,
                                                     slice(h, None, 2)) for h in (0, 1))
            out = self.diff.combine(first, second)
            weights = None if w1 is None else w1 - self.diff.value() * w2
        out = out.transpose(1, 2).reshape(B, T, -1)
        if self.gate is not None:
            out = self.gate(x, out)
        out = self.out_proj(out)
        return (out, weights) if return_weights else out

    def attend(self, q: Tensor, k: Tensor, v: Tensor, past: int,
               heads: slice = slice(None)) -> tuple[Tensor, Tensor | None]:
        """The chosen kernel on q (B, h, T_q, D) and k, v; `heads` picks the per-head settings
        (learned scales, ALiBi slopes, sink logits) of these h heads. The weights: manual only."""
        if self.backend == "sdpa":
            return self._sdpa(q, k, v, past, heads), None
        return self._manual(q, k, v, past, heads)

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

    def score_scale(self, heads: slice = slice(None)) -> float | Tensor:
        """The factor scores are multiplied by: a number, or a learned tensor (per head: shaped
        to broadcast over (B, heads, T_q, T_k))."""
        if not self.scale:
            return 1.0
        if self.scale_type == ScaleType.learned_head:
            return self.learned_scale[heads].view(1, -1, 1, 1)
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

    def bias(self, past: int, T_q: int, T_k: int, device=None,
             heads: slice = slice(None)) -> Tensor | None:
        """ALiBi's additive score bias (heads, T_q, T_k), or None."""
        if self.positions != Positions.alibi:
            return None
        return alibi_bias(self.alibi_slopes[heads], torch.arange(past, past + T_q,
                          device=device), torch.arange(T_k, device=device))

    def sink_logits(self, heads: slice = slice(None)) -> Tensor | None:
        """The sink key's logit per head (h,), or None without a sink."""
        if self.sink == Sink.learned:
            return self.sink_logit[heads]
        if self.sink == Sink.zero:
            return torch.zeros(self.num_heads, device=self.qkv.weight.device)[heads]
        return None

    def scores(self, q: Tensor, k: Tensor, past: int = 0, heads: slice = slice(None)) -> Tensor:
        """Pre-softmax scores (B, heads, T_q, T_k): the scaled q.k, soft-capped, plus ALiBi's
        bias (the mask is applied after)."""
        scores = (q @ self.expand_kv(k).transpose(-2, -1)) * self.score_scale(heads)
        if self.softcap is not None:
            scores = self.softcap * torch.tanh(scores / self.softcap)
        bias = self.bias(past, q.shape[2], k.shape[2], q.device, heads)
        return scores if bias is None else scores + bias.to(scores.dtype)

    def _sdpa(self, q: Tensor, k: Tensor, v: Tensor, past: int, heads: slice) -> Tensor:
        T_q, T_k = q.shape[2], k.shape[2]
        factor = self.score_scale(heads)
        if isinstance(factor, Tensor):  # learned: into q, so the kernel's own factor is 1
            q, factor = q * factor.to(q.dtype), 1.0
        bias, seen, sink = self.bias(past, T_q, T_k, q.device, heads), None, self.sink_logits(
            heads)
        # The kernel's own causal flag assumes queries and keys start together and no window:
        # anything else gets an explicit mask (a single new token with no window needs none).
        plain_causal = self.causal and self.window is None and bias is None and sink is None
        is_causal = plain_causal and past == 0
        if not is_causal and not (plain_causal and T_q == 1):
            seen = self.visible(past, T_q, T_k, q.device)
        attn_mask = seen
        if bias is not None or sink is not None:  # a float mask, -inf where a key is hidden
            attn_mask = torch.zeros(q.shape[1], T_q, T_k, dtype=q.dtype, device=q.device)
            attn_mask = attn_mask if bias is None else attn_mask + bias.to(q.dtype)
            if seen is not None:
                attn_mask = attn_mask.masked_fill(~seen, -torch.inf)
        if sink is not None:
            # The sink as a key of zeros with a value of zeros: its score is the mask's entry,
            # the logit, and it adds nothing to the output.
            k = torch.cat([k, k.new_zeros(*k.shape[:2], 1, k.shape[3])], dim=2)
            v = torch.cat([v, v.new_zeros(*v.shape[:2], 1, v.shape[3])], dim=2)
            attn_mask = with_sink(attn_mask[None], sink)[0]
        return sdpa(
            q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0,
            is_causal=is_causal, scale=factor, enable_gqa=self.n_kv_heads != self.num_heads,
        )

    def _manual(self, q: Tensor, k: Tensor, v: Tensor, past: int,
                heads: slice) -> tuple[Tensor, Tensor]:
        scores = self.scores(q, k, past, heads)
        mask = self.visible(past, q.shape[2], k.shape[2], q.device)
        if self.kind == Kind.sigmoid:  # each weight on its own: no row sums to 1
            scores = scores + sigmoid_bias(self.context_length)
        if mask is not None and self.mask_impl == "neg_inf":
            scores = scores.masked_fill(~mask, -torch.inf)
        sink = self.sink_logits(heads)
        if sink is not None:  # one more column, always visible; dropped after the softmax
            scores = with_sink(scores, sink)
            mask = None if mask is None else F.pad(mask, (0, 1), value=True)
        if self.kind == Kind.sigmoid:
            weights = torch.sigmoid(scores)
        else:
            weights = torch.softmax(scores, dim=-1)
        if mask is not None and self.mask_impl == "renorm":
            # The future still took part in the softmax, but its weights are zeroed and each row
            # rescaled: exp(s_j)/sum_{j<=t} exp(s_j), the same numbers neg_inf gives, no leak.
            weights = weights * mask
            weights = weights / weights.sum(dim=-1, keepdim=True)
        if sink is not None:
            weights = weights[..., :-1]
        # Weights are returned before dropout: they are what the model computed, not the noise.
        out = F.dropout(weights, self.dropout, self.training) @ self.expand_kv(v)
        return out, weights
