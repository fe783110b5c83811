"""Multi-head causal self-attention, the module the GPT uses. The default path is GPT-2's (and
nanoGPT's): project to q, k, v, split into heads, one fused kernel, merge the heads, project
back. Each switch of the lab is a small named step on that path: a module built for it (a
QK-norm, an output gate, differential attention's lambda), or one entry of the mask both kernels
add to the scores (the causal mask, a window, ALiBi, a sink).

How it came to be, form by form (the seed's chapter 3): `tinygpt.model.forms`. The switches,
what each does and which combinations make sense: `tinygpt.model.config.AttentionConfig`. The
softmax's alternatives, the sink, the gate and differential attention: `tinygpt.model.variants`.
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
from tinygpt.model.variants import DiffLambda, OutputGate, pair_values, sigmoid_bias, softpick

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


class HookPoint(nn.Identity):
    """A named place in the forward pass: a forward hook on it reads (or replaces) what passes
    through, as TransformerLens's hook points do. `hook_scores` sees the scores as the softmax
    gets them (the mask added: -inf where a key is hidden, a last column for a sink's logit),
    `hook_pattern` the weights each query gives each key; both on the manual kernel only, which
    computes them (`tinygpt.probes.attention.recorded`)."""


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
        norm = {QKNorm.rms: nn.RMSNorm, QKNorm.layer: nn.LayerNorm, QKNorm.none: nn.Identity}
        self.q_norm, self.k_norm = (norm[s.qk_norm](self.head_dim) for _ in range(2))
        self.learned_scale = learned_scale(s.scale_type, num_heads, self.head_dim)
        self.register_buffer("alibi_slopes", alibi_slopes(num_heads) if self.positions ==
                             Positions.alibi else None, persistent=False)
        self.sink_logit = learned_sink(s.sink, num_heads)
        self.gate = None if s.gate == Gate.none else OutputGate(
            d_in, num_heads, self.head_dim, elementwise=s.gate == Gate.elementwise)
        self.diff = DiffLambda(self.head_dim, 2 * self.head_dim) if s.kind == Kind.differential \
            else None
        self.hook_scores, self.hook_pattern = HookPoint(), HookPoint()

    @classmethod
    def from_config(cls, cfg: GPTConfig) -> MultiHeadAttention:
        """The attention of a model with this config: its width, heads, dropout and switches."""
        return cls(cfg.emb_dim, cfg.emb_dim, cfg.context_length, cfg.n_heads, cfg.drop_rate,
                   cfg.qkv_bias, positions=cfg.positions, rope_base=cfg.rope_base,
                   out_bias=cfg.bias, **asdict(cfg.attention))

    def forward(self, x: Tensor, cache: KVCache | None = None) -> Tensor:
        """x: (B, T, d_in) -> (B, T, d_out)."""
        B, T, _ = x.shape
        past = 0 if cache is None else cache.length  # tokens before these ones
        q, k, v = self.project(x, past)
        if cache is not None:  # keys as they were rotated and normalised: reused as they are
            k, v = cache.append(k, v)
        if self.diff is not None:  # head pair i reads the values of heads 2i and 2i+1
            v = pair_values(v)
        kernel = self.fused if self.switches.backend == Backend.sdpa else self.manual
        out = kernel(q, k, v, past)
        if self.diff is not None:
            out = self.diff.normalise(out)
        out = out.transpose(1, 2).reshape(B, T, -1)  # merge the heads
        if self.gate is not None:
            out = self.gate(x, out)
        return self.out_proj(out)

    def project(self, x: Tensor, past: int = 0) -> tuple[Tensor, Tensor, Tensor]:
        """x (B, T, d_in) -> q (B, heads, T, d_head), k and v (B, kv heads, T, d_head), with
        QK-norm and rotary positions applied (the tokens sit at positions past, past+1, ...)."""
        B, T, _ = x.shape
        D, kv = self.head_dim, self.n_kv_heads * self.head_dim
        # One matmul for all three, then heads by reshaping: no copies per head.
        q, k, v = self.qkv(x).split([self.num_heads * D, kv, kv], dim=-1)
        q = self.q_norm(q.view(B, T, self.num_heads, D).transpose(1, 2))
        k = self.k_norm(k.view(B, T, self.n_kv_heads, D).transpose(1, 2))
        v = v.view(B, T, self.n_kv_heads, D).transpose(1, 2)
        if self.positions == Positions.rope:
            cos, sin = rope_angles(D, torch.arange(past, past + T, device=x.device),
                                   self.rope_base)
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        return q, k, v

    def fused(self, q: Tensor, k: Tensor, v: Tensor, past: int) -> Tensor:
        """PyTorch's fused scaled_dot_product_attention over every head: each query's mix of
        values (B, heads, T_q, D); differential head pairs combine their two outputs."""
        s = self.switches
        factor = score_scale(s, self.head_dim, self.learned_scale)
        if isinstance(factor, Tensor):  # learned: into q, so the kernel's own factor is 1
            q, factor = q * factor.to(q.dtype), 1.0
        # The kernel's own causal flag assumes queries and keys start together: it serves plain
        # causal attention from the first token, with no mask to build (the default path).
        plain_causal = (s.causal and s.window is None and s.sink == Sink.none and past == 0
                        and self.positions != Positions.alibi)
        mask = None if plain_causal else self.mask(past, q.shape[2], k.shape[2], q.dtype)
        if s.sink != Sink.none:  # a key and a value of zeros: the mask's last column is its score
            k, v = F.pad(k, (0, 0, 0, 1)), F.pad(v, (0, 0, 0, 1))
        if self.diff is not None:  # both heads of a pair mix the pair's values
            v = v.repeat_interleave(2, dim=1)
        out = sdpa(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0,
                   is_causal=plain_causal,
                   scale=factor, enable_gqa=self.n_kv_heads != self.num_heads)
        return out if self.diff is None else self.diff.pairs(out)

    def manual(self, q: Tensor, k: Tensor, v: Tensor, past: int) -> Tensor:
        """Attention step by step, as the book writes it: scores, the mask, softmax (or sigmoid,
        or softpick), weights times values."""
        s = self.switches
        scores, mask = self.scores(q, k), self.mask(past, q.shape[2], k.shape[2], q.dtype)
        if s.sink != Sink.none:  # one more key, always visible, its score the mask's column
            scores = F.pad(scores, (0, 1))
        renorm = s.mask_impl == MaskImpl.renorm and mask is not None
        if renorm:  # the seed's way: the future takes part in the softmax, then is zeroed
            seen, mask = mask > -torch.inf, mask.nan_to_num(neginf=0.0)
        scores = self.hook_scores(scores if mask is None else scores + mask)
        weights = weigh(scores, s.kind, self.context_length)
        if renorm:
            # Each row rescaled over the keys it may see: exp(s_j)/sum_{j<=t} exp(s_j), the same
            # numbers neg_inf gives, no leak.
            weights = weights * seen
            weights = weights / weights.sum(dim=-1, keepdim=True)
        weights = weights[..., : k.shape[2]]  # a sink took its share and is no key
        if self.diff is not None:  # map 2i minus lambda times map 2i+1 (Ye et al.)
            weights = self.diff.pairs(weights)
        # What the model computed, observed before dropout: the weights, not the noise.
        weights = self.hook_pattern(weights)
        return F.dropout(weights, self.dropout, self.training) @ self.expand_kv(v)

    def scores(self, q: Tensor, k: Tensor) -> Tensor:
        """Pre-softmax scores (B, heads, T_q, T_k): the scaled q.k, soft-capped (the mask and
        ALiBi's penalty are added after)."""
        scores = (q @ self.expand_kv(k).transpose(-2, -1)) * score_scale(
            self.switches, self.head_dim, self.learned_scale)
        return soft_cap(scores, self.switches.softcap)

    def expand_kv(self, t: Tensor) -> Tensor:
        """Keys or values (B, kv heads, T, D) repeated for the query heads of each group."""
        return t.repeat_interleave(self.num_heads // self.n_kv_heads, dim=1)

    def mask(self, past: int, T_q: int, T_k: int, dtype: torch.dtype = torch.float32
             ) -> Tensor | None:
        """What both kernels add to the scores (`attention_mask`) for queries at positions
        past.. and keys at 0..T_k-1."""
        s, device = self.switches, self.qkv.weight.device
        sink = sink_scores(s.sink, self.sink_logit, self.num_heads, device)
        return attention_mask(visible(s, past, T_q, T_k, device), past, T_q, T_k,
                              self.alibi_slopes, sink, dtype, device)


def learned_scale(kind: ScaleType, num_heads: int, head_dim: int) -> nn.Parameter | None:
    """A learned score factor, one per layer or per head, starting where 1/sqrt(d_head) is."""
    if kind not in (ScaleType.learned_layer, ScaleType.learned_head):
        return None
    shape = (num_heads,) if kind == ScaleType.learned_head else ()
    return nn.Parameter(torch.full(shape, 1 / math.sqrt(head_dim)))


def learned_sink(sink: Sink, num_heads: int) -> nn.Parameter | None:
    """A learned sink logit per head (gpt-oss), starting where the zero sink is."""
    return nn.Parameter(torch.zeros(num_heads)) if sink == Sink.learned else None


def sink_scores(sink: Sink, learned: Tensor | None, num_heads: int,
                device: torch.device | None = None) -> Tensor | None:
    """The sink key's score per head (heads,): its learned logit, or 0 (softmax + 1); None
    without a sink."""
    if sink == Sink.none:
        return None
    return learned if learned is not None else torch.zeros(num_heads, device=device)


def score_scale(s: AttentionConfig, head_dim: int, learned: Tensor | None) -> float | Tensor:
    """What q.k is multiplied by: 1/sqrt(d_head), a fixed number, a learned factor (per head:
    shaped to broadcast over (B, heads, T_q, T_k)), or 1 with scale=false."""
    if learned is not None:
        return learned.view(-1, 1, 1)
    if not s.scale:
        return 1.0
    return s.scale_value if s.scale_type == ScaleType.fixed else 1 / math.sqrt(head_dim)


def soft_cap(scores: Tensor, cap: float | None) -> Tensor:
    """scores -> cap * tanh(scores / cap): near-linear below the cap, never beyond it."""
    return scores if cap is None else cap * torch.tanh(scores / cap)


def weigh(scores: Tensor, kind: Kind, context_length: int) -> Tensor:
    """Scores to weights: the softmax, sigmoid(score - log n) or softpick."""
    if kind == Kind.sigmoid:  # each weight on its own: no row sums to 1
        return torch.sigmoid(scores + sigmoid_bias(context_length))
    if kind == Kind.softpick:
        return softpick(scores)
    return scores.softmax(dim=-1)


def visible(s: AttentionConfig, past: int, T_q: int, T_k: int,
            device: torch.device | None = None) -> Tensor | None:
    """Which keys each query (at positions past..) may see, (T_q, T_k) booleans; None when every
    query sees every key (no mask, or one new token of a causal cache)."""
    if s.window is None and (not s.causal or T_k <= past + 1):
        return None
    q_pos = torch.arange(past, past + T_q, device=device)[:, None]
    k_pos = torch.arange(T_k, device=device)[None, :]
    seen = k_pos <= q_pos if s.causal else torch.ones(T_q, T_k, dtype=torch.bool, device=device)
    if s.window is not None:  # the last `window` keys: distance 0 .. window-1
        seen = seen & ((q_pos - k_pos).abs() < s.window)
    return seen


def attention_mask(seen: Tensor | None, past: int, T_q: int, T_k: int,
                   slopes: Tensor | None, sink: Tensor | None, dtype: torch.dtype,
                   device: torch.device | None = None) -> Tensor | None:
    """What both kernels add to the scores, (heads or 1, T_q, T_k [+ 1]): -inf where a query
    may not see a key (`seen`), ALiBi's distance penalty (`slopes`), and a last column holding
    a sink's score (`sink`); None where it adds nothing to any score."""
    if seen is None and slopes is None and sink is None:
        return None
    added = torch.zeros(T_q, T_k, device=device)
    if seen is not None:
        added = added.masked_fill(~seen, -torch.inf)
    if slopes is not None:
        added = added + alibi_bias(slopes, torch.arange(past, past + T_q, device=device),
                                   torch.arange(T_k, device=device))
    if sink is not None:
        column = sink.view(-1, 1, 1).expand(-1, T_q, 1).to(added.dtype)
        added = torch.cat([added.expand(len(sink), T_q, T_k), column], dim=-1)
    return added.to(dtype)
