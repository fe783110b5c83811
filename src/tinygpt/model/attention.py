"""Multi-head causal self-attention, the module the GPT uses. The default path is GPT-2's (and
nanoGPT's): project to q, k, v, split into heads, one fused kernel, merge the heads, project
back. Each switch of the lab is one small step on that path.

How it came to be, form by form (the seed's chapter 3): `tinygpt.model.forms`. The switches,
what each does and which combinations make sense: `tinygpt.model.config.AttentionConfig`. Lab
III's additions (sink, output gate, sigmoid and differential attention, softpick):
`tinygpt.model.variants`.
"""

from __future__ import annotations

import math
from dataclasses import asdict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tinygpt.errors import parse_choice
from tinygpt.model.config import (
    AttentionConfig,
    Backend,
    Gate,
    GPTConfig,
    Kind,
    MaskImpl,
    Positions,
    QKNorm,
    ScaleType,
    Sink,
)
from tinygpt.model.kv_cache import KVCache
from tinygpt.model.positions import alibi_bias, alibi_slopes, apply_rope, rope_angles
from tinygpt.model.variants import (
    DiffLambda,
    OutputGate,
    pair_values,
    sigmoid_bias,
    softpick,
    with_sink,
)

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
    """Multi-head attention with one fused Q/K/V projection.

    The book's constructor: sizes in the chapter's order, then any of `AttentionConfig`'s
    switches as keywords (`scale=False`, `causal=False`, `mask_impl="renorm"`,
    `backend="manual"`, ...); `positions` ("rope" and "alibi" act here) and `rope_base` come
    from the model. The model builds it with `from_config`. The switches live in `self.switches`.
    """

    def __init__(self, d_in: int, d_out: int, context_length: int, num_heads: int,
                 dropout: float = 0.0, qkv_bias: bool = False, *,
                 positions: Positions | str = "learned", rope_base: float = 10000.0,
                 out_bias: bool = True, **switches: object):
        super().__init__()
        self.switches = s = AttentionConfig(**switches)
        self.positions = parse_choice(Positions, positions, "model.positions")
        s.check(d_out, num_heads, self.positions)
        self.num_heads, self.head_dim = num_heads, d_out // num_heads
        self.n_kv_heads = s.n_kv_heads or num_heads  # fewer: grouped-query (1: multi-query)
        self.context_length, self.dropout, self.rope_base = context_length, dropout, rope_base
        self.qkv = nn.Linear(d_in, (num_heads + 2 * self.n_kv_heads) * self.head_dim,
                             bias=qkv_bias)
        self.out_proj = nn.Linear(d_out, d_out, bias=out_bias)
        norm = {QKNorm.rms: nn.RMSNorm, QKNorm.layer: nn.LayerNorm}.get(s.qk_norm)
        self.q_norm = norm(self.head_dim) if norm else None
        self.k_norm = norm(self.head_dim) if norm else None
        if s.scale_type in (ScaleType.learned_layer, ScaleType.learned_head):
            # learnt from where 1/sqrt(d_head) would have it
            shape = (num_heads,) if s.scale_type == ScaleType.learned_head else ()
            self.learned_scale = nn.Parameter(torch.full(shape, 1 / math.sqrt(self.head_dim)))
        if self.positions == Positions.alibi:
            self.register_buffer("alibi_slopes", alibi_slopes(num_heads), persistent=False)
        if s.sink == Sink.learned:  # starts where the zero sink is
            self.sink_logit = nn.Parameter(torch.zeros(num_heads))
        self.gate = None if s.gate == Gate.none else OutputGate(
            d_in, num_heads, self.head_dim, elementwise=s.gate == Gate.elementwise)
        self.diff = DiffLambda(self.head_dim, 2 * self.head_dim) if s.kind == Kind.differential \
            else None

    @classmethod
    def from_config(cls, cfg: GPTConfig) -> MultiHeadAttention:
        """The attention of a model with this config: its width, heads, dropout and switches."""
        return cls(cfg.emb_dim, cfg.emb_dim, cfg.context_length, cfg.n_heads, cfg.drop_rate,
                   cfg.qkv_bias, positions=cfg.positions, rope_base=cfg.rope_base,
                   out_bias=cfg.bias, **asdict(cfg.attention))

    def forward(self, x: Tensor, cache: KVCache | None = None, return_weights: bool = False
                ) -> Tensor | tuple[Tensor, Tensor]:
        """x: (B, T, d_in) -> (B, T, d_out); with return_weights also (B, heads, T, T_keys)."""
        B, T, _ = x.shape
        past = cache.length if cache is not None else 0  # tokens before these ones
        q, k, v = self.project(x, past)
        if cache is not None:  # keys as they were rotated and normalised: reused as they are
            k, v = cache.append(k, v)
        if self.diff is None:
            out, weights = self.attend(q, k, v, past, return_weights)
        else:
            out, weights = self.attend_pairs(q, k, v, past, return_weights)
        out = out.transpose(1, 2).reshape(B, T, -1)  # merge the heads
        if self.gate is not None:
            out = self.gate(x, out)
        out = self.out_proj(out)
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

    def attend(self, q: Tensor, k: Tensor, v: Tensor, past: int, return_weights: bool = False,
               heads: slice = slice(None)) -> tuple[Tensor, Tensor | None]:
        """Each query's mix of values (B, h, T_q, D), by the chosen kernel; the weights from the
        manual one. `heads`: which heads' own settings (learned scale, slopes, sink logit)."""
        if self.switches.backend == Backend.manual:
            return self.manual(q, k, v, past, heads)
        if return_weights:
            raise ValueError("only backend='manual' can return attention weights (set it)")
        return self.fused(q, k, v, past, heads), None

    def fused(self, q: Tensor, k: Tensor, v: Tensor, past: int, heads: slice) -> Tensor:
        """PyTorch's fused scaled_dot_product_attention, with the mask `fused_mask` chooses."""
        factor = self.score_scale(heads)
        if isinstance(factor, Tensor):  # learned: into q, so the kernel's own factor is 1
            q, factor = q * factor.to(q.dtype), 1.0
        mask, is_causal = self.fused_mask(past, q.shape[2], k.shape[2], q.device, heads)
        if mask is not None and mask.is_floating_point():
            mask = mask.to(q.dtype)
        if self.switches.sink != Sink.none:
            # The sink as a key of zeros with a value of zeros: its score is the mask's entry,
            # the logit, and it adds nothing to the output.
            k = torch.cat([k, k.new_zeros(*k.shape[:2], 1, k.shape[3])], dim=2)
            v = torch.cat([v, v.new_zeros(*v.shape[:2], 1, v.shape[3])], dim=2)
        return sdpa(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0,
                    is_causal=is_causal, scale=factor,
                    enable_gqa=self.n_kv_heads != self.num_heads)

    def fused_mask(self, past: int, T_q: int, T_k: int, device, heads: slice
                   ) -> tuple[Tensor | None, bool]:
        """What the fused kernel is told of the mask: (attn_mask, is_causal). Its own causal flag
        assumes queries and keys start together, so it serves only plain causal attention with
        no cache; one new token of a plain causal cache sees every key (no mask at all);
        anything else (a window, a bias, a sink, a cache) gets an explicit mask: booleans, or
        scores to add (-inf where a key is hidden) when ALiBi or a sink adds its own."""
        bias, sink = self.bias(past, T_q, T_k, device, heads), self.sink_logits(heads)
        plain_causal = self.switches.causal and self.switches.window is None \
            and bias is None and sink is None
        if plain_causal and past == 0:
            return None, True
        if plain_causal and T_q == 1:
            return None, False
        seen = self.visible(past, T_q, T_k, device)
        if bias is None and sink is None:
            return seen, False
        added = bias if bias is not None else torch.zeros(len(sink), T_q, T_k, device=device)
        added = added if seen is None else added.masked_fill(~seen, -torch.inf)
        return (added if sink is None else with_sink(added[None], sink)[0]), False

    def score_scale(self, heads: slice = slice(None)) -> float | Tensor:
        """What q.k is multiplied by: 1/sqrt(d_head), a fixed number, a learned factor (per head:
        shaped to broadcast over (B, heads, T_q, T_k)), or 1 with scale=false."""
        s = self.switches
        if not s.scale:
            return 1.0
        if s.scale_type == ScaleType.learned_head:
            return self.learned_scale[heads].view(1, -1, 1, 1)
        if s.scale_type == ScaleType.learned_layer:
            return self.learned_scale
        return s.scale_value if s.scale_type == ScaleType.fixed else 1 / math.sqrt(self.head_dim)

    def expand_kv(self, t: Tensor) -> Tensor:
        """Keys or values (B, kv heads, T, D) repeated for the query heads of each group."""
        groups = self.num_heads // self.n_kv_heads
        return t if groups == 1 else t.repeat_interleave(groups, dim=1)

    def manual(self, q: Tensor, k: Tensor, v: Tensor, past: int,
               heads: slice = slice(None)) -> tuple[Tensor, Tensor]:
        """Attention step by step, as the book writes it: scores, mask, softmax (or sigmoid, or
        softpick), weights times values; returns the weights too."""
        s = self.switches
        scores = self.scores(q, k, past, heads)
        seen = self.visible(past, q.shape[2], k.shape[2], q.device)
        if s.kind == Kind.sigmoid:  # each weight on its own: no row sums to 1
            scores = scores + sigmoid_bias(self.context_length)
        if seen is not None and s.mask_impl == MaskImpl.neg_inf:
            scores = scores.masked_fill(~seen, -torch.inf)
        sink = self.sink_logits(heads)
        if sink is not None:  # one more column, always visible; dropped after the softmax
            scores = with_sink(scores, sink)
            seen = None if seen is None else F.pad(seen, (0, 1), value=True)
        if s.kind == Kind.sigmoid:
            weights = torch.sigmoid(scores)
        elif s.kind == Kind.softpick:
            weights = softpick(scores)
        else:
            weights = scores.softmax(dim=-1)
        if seen is not None and s.mask_impl == MaskImpl.renorm:
            # The future still took part in the softmax, but its weights are zeroed and each row
            # rescaled: exp(s_j)/sum_{j<=t} exp(s_j), the same numbers neg_inf gives, no leak.
            weights = weights * seen
            weights = weights / weights.sum(dim=-1, keepdim=True)
        if sink is not None:
            weights = weights[..., :-1]
        # Weights are returned before dropout: they are what the model computed, not the noise.
        out = F.dropout(weights, self.dropout, self.training) @ self.expand_kv(v)
        return out, weights

    def scores(self, q: Tensor, k: Tensor, past: int = 0, heads: slice = slice(None)) -> Tensor:
        """Pre-softmax scores (B, heads, T_q, T_k): the scaled q.k, soft-capped, plus ALiBi's
        bias (the mask is applied after)."""
        scores = (q @ self.expand_kv(k).transpose(-2, -1)) * self.score_scale(heads)
        if self.switches.softcap is not None:
            scores = self.switches.softcap * torch.tanh(scores / self.switches.softcap)
        bias = self.bias(past, q.shape[2], k.shape[2], q.device, heads)
        return scores if bias is None else scores + bias.to(scores.dtype)

    def visible(self, past: int, T_q: int, T_k: int, device=None) -> Tensor | None:
        """Which keys each query may see, (T_q, T_k) booleans; None when it sees all of them."""
        s = self.switches
        if not s.causal and s.window is None:
            return None
        q_pos = torch.arange(past, past + T_q, device=device)[:, None]
        k_pos = torch.arange(T_k, device=device)[None, :]
        seen = k_pos <= q_pos if s.causal else torch.ones(T_q, T_k, dtype=torch.bool,
                                                           device=device)
        if s.window is not None:  # the last `window` keys: distance 0 .. window-1
            seen = seen & ((q_pos - k_pos).abs() < s.window)
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
        if self.switches.sink == Sink.learned:
            return self.sink_logit[heads]
        if self.switches.sink == Sink.zero:
            return torch.zeros(self.num_heads, device=self.qkv.weight.device)[heads]
        return None

    def attend_pairs(self, q: Tensor, k: Tensor, v: Tensor, past: int, return_weights: bool
                     ) -> tuple[Tensor, Tensor | None]:
        """Differential attention: head pair i is the map of head 2i minus lambda times the map
        of head 2i+1, over their values side by side."""
        v = pair_values(v)
        (first, w1), (second, w2) = (
            self.attend(q[:, h::2], k[:, h::2], v, past, return_weights, slice(h, None, 2))
            for h in (0, 1))
        weights = None if w1 is None else w1 - self.diff.value() * w2
        return self.diff.combine(first, second), weights
