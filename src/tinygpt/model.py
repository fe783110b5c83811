"""A minimal GPT (the GPT-2 architecture) in plain PyTorch."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from tinygpt.attention import (
    Backend,
    KVCache,
    MaskImpl,
    MultiHeadAttention,
    Positions,
    QKNorm,
    ScaleType,
    check_attention_options,
    check_length,
)
from tinygpt.errors import UsageError, parse_choice
from tinygpt.loss import linear_cross_entropy


@dataclass
class AttentionConfig:
    """What the attention does; see `MultiHeadAttention` for each switch."""

    scale: bool = True
    causal: bool = True
    mask_impl: MaskImpl = MaskImpl.neg_inf
    backend: Backend = Backend.sdpa
    scale_type: ScaleType = ScaleType.inv_sqrt_d  # with scale=true: which factor
    scale_value: float | None = None  # for scale_type=fixed: the factor
    qk_norm: QKNorm = QKNorm.none
    n_kv_heads: int | None = None  # key/value heads (null: n_heads; 1: multi-query)
    window: int | None = None  # sliding window: each query sees its last `window` keys
    softcap: float | None = None  # scores -> softcap * tanh(scores / softcap) (manual backend)

    def __post_init__(self) -> None:
        # Strings (a checkpoint's hparams, a library call) become the enums the schema uses.
        for name, kind in (("mask_impl", MaskImpl), ("backend", Backend),
                           ("scale_type", ScaleType), ("qk_norm", QKNorm)):
            setattr(self, name, parse_choice(kind, getattr(self, name), f"model.attention.{name}"))


@dataclass
class GPTConfig:
    """The single source of the model's shape."""

    vocab_size: int = 50257  # GPT-2's; a training run takes it from its tokenizer
    context_length: int = 1024
    emb_dim: int = 768
    n_heads: int = 12
    n_layers: int = 12
    drop_rate: float = 0.0
    qkv_bias: bool = False
    tie_weights: bool = True
    # Round the embedding/head rows up to a multiple of this (64 suits matmul kernels); the
    # extra rows are never scored, trained or sampled.
    pad_vocab_multiple: int = 64
    # learned (GPT-2's table, context_length caps the input), rope, alibi or none (NoPE)
    positions: Positions = Positions.learned
    rope_base: float = 10000.0
    attention: AttentionConfig = field(default_factory=AttentionConfig)

    @property
    def padded_vocab_size(self) -> int:
        m = max(1, self.pad_vocab_multiple)
        return -(-self.vocab_size // m) * m

    def __post_init__(self) -> None:
        if isinstance(self.attention, dict):  # e.g. rebuilt from a checkpoint's hparams
            self.attention = AttentionConfig(**self.attention)
        self.positions = parse_choice(Positions, self.positions, "model.positions")

    def validate(self) -> None:
        """Raise UsageError, saying what to change, for a shape the model cannot be built with."""
        for name in ("vocab_size", "context_length", "emb_dim", "n_heads", "n_layers"):
            if getattr(self, name) < 1:
                value = getattr(self, name)
                raise UsageError(f"model.{name} must be a positive integer (got {value})")
        if not 0.0 <= self.drop_rate < 1.0:
            raise UsageError(f"model.drop_rate must be in [0, 1) (got {self.drop_rate})")
        check_attention_options(self.emb_dim, self.n_heads, **self.attention_kwargs())

    def attention_kwargs(self) -> dict[str, Any]:
        """MultiHeadAttention's switches, from `attention` and `positions`."""
        return asdict(self.attention) | {"positions": self.positions}

    def kv_cache_bytes_per_token(self, element_bytes: int = 4) -> int:
        """What generation keeps per token: keys and values of every layer's kv heads."""
        kv_heads = self.attention.n_kv_heads or self.n_heads
        return 2 * self.n_layers * kv_heads * (self.emb_dim // self.n_heads) * element_bytes

    def to_dict(self) -> dict[str, Any]:
        """Plain Python values (choices as strings): what a checkpoint stores, and loads safely."""
        def plain(v: Any) -> Any:
            return {k: plain(x) for k, x in v.items()} if isinstance(v, dict) else getattr(
                v, "value", v)

        return plain(asdict(self))


class MLP(nn.Module):
    """Position-wise feed-forward: widen 4x, GELU, project back."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.fc = nn.Linear(cfg.emb_dim, 4 * cfg.emb_dim)
        self.act = nn.GELU(approximate="tanh")  # GPT-2's GELU
        self.proj = nn.Linear(4 * cfg.emb_dim, cfg.emb_dim)
        self.drop = nn.Dropout(cfg.drop_rate)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.proj(self.act(self.fc(x))))


class Block(nn.Module):
    """Pre-LayerNorm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.emb_dim)
        self.attn = MultiHeadAttention(
            cfg.emb_dim, cfg.emb_dim, cfg.context_length, cfg.n_heads,
            dropout=cfg.drop_rate, qkv_bias=cfg.qkv_bias, rope_base=cfg.rope_base,
            **cfg.attention_kwargs(),
        )
        self.ln2 = nn.LayerNorm(cfg.emb_dim)
        self.mlp = MLP(cfg)
        self.drop = nn.Dropout(cfg.drop_rate)

    def forward(
        self, x: Tensor, cache: KVCache | None = None, return_weights: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        out = self.attn(self.ln1(x), cache, return_weights)
        out, weights = out if return_weights else (out, None)
        x = x + self.drop(out)
        return x + self.mlp(self.ln2(x)), weights


class GPT(nn.Module):
    """Token + position embeddings, `n_layers` blocks, final LayerNorm, LM head."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.padded_vocab_size, cfg.emb_dim)
        # Only GPT-2's learned positions are a table; rope and alibi act inside attention.
        learned = cfg.positions == Positions.learned
        self.pos_emb = nn.Embedding(cfg.context_length, cfg.emb_dim) if learned else None
        self.drop = nn.Dropout(cfg.drop_rate)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(cfg.emb_dim)
        self.head = nn.Linear(cfg.emb_dim, cfg.padded_vocab_size, bias=False)
        if cfg.tie_weights:
            self.head.weight = self.tok_emb.weight
        self.apply(self._init_weights)
        # Each block adds two outputs to the residual stream; GPT-2 shrinks their init by
        # 1/sqrt(2 * n_layers) so the stream's variance does not grow with depth.
        for name, p in self.named_parameters():
            if name.endswith(("attn.out_proj.weight", "mlp.proj.weight")):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layers))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def num_params(self) -> int:
        """Parameters counted once each (a tied head is not counted twice)."""
        return sum(p.numel() for p in self.parameters())

    def new_cache(self) -> list[KVCache]:
        """An empty KV cache, one entry per block."""
        return [KVCache() for _ in self.blocks]

    def forward(
        self,
        idx: Tensor,
        cache: list[KVCache] | None = None,
        return_weights: bool = False,
    ) -> Tensor | tuple[Tensor, list[Tensor]]:
        """Token ids (B, T) -> logits (B, T, vocab); return_weights adds each block's weights."""
        x, weights = self.hidden(idx, cache, return_weights)
        logits = self.head(x)[..., : self.cfg.vocab_size]  # padding rows are not tokens
        return (logits, weights) if return_weights else logits

    def next_logits(self, idx: Tensor, cache: list[KVCache] | None = None) -> Tensor:
        """Logits (B, vocab) for the token after idx: the head runs on the last position only."""
        x, _ = self.hidden(idx, cache)
        return self.head(x[:, -1])[..., : self.cfg.vocab_size]

    def loss(self, idx: Tensor, targets: Tensor) -> Tensor:
        """Mean next-token cross-entropy; never builds the full logits tensor (see tinygpt.loss)."""
        x, _ = self.hidden(idx)
        return linear_cross_entropy(
            x.flatten(0, 1), self.head.weight, targets.flatten(), self.cfg.vocab_size
        )

    @property
    def reaches_beyond_context(self) -> bool:
        """Whether it can read more than context_length tokens: no learned table caps it."""
        return self.pos_emb is None

    def hidden(
        self, idx: Tensor, cache: list[KVCache] | None = None, return_weights: bool = False
    ) -> tuple[Tensor, list[Tensor | None]]:
        """The final LayerNorm's output (B, T, emb_dim), the head's input."""
        T = idx.shape[1]
        past = cache[0].length if cache is not None else 0
        x = self.tok_emb(idx)
        if self.pos_emb is not None:
            check_length(past + T, self.cfg.context_length)  # the table has no rows beyond it
            x = x + self.pos_emb(torch.arange(past, past + T, device=idx.device))
        x = self.drop(x)
        weights = []
        for i, block in enumerate(self.blocks):
            x, w = block(x, cache[i] if cache is not None else None, return_weights)
            weights.append(w)
        return self.ln_f(x), weights


@contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode (no dropout) inside the block, then whichever mode the model was in."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


@contextmanager
def attention_overrides(model: nn.Module, **switches: object) -> Iterator[nn.Module]:
    """Temporarily set attributes (backend, causal, ...) on every attention module, e.g.
    `attention_overrides(model, causal=True)` scores a model trained without the mask with it."""
    modules = [m for m in model.modules() if isinstance(m, MultiHeadAttention)]
    saved = [{k: getattr(m, k) for k in switches} for m in modules]  # unknown names raise
    for m in modules:
        for k, v in switches.items():
            setattr(m, k, v)
    try:
        yield model
    finally:
        for m, values in zip(modules, saved, strict=True):
            for k, v in values.items():
                setattr(m, k, v)

