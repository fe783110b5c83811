"""A minimal GPT (the GPT-2 architecture) in plain PyTorch."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import torch
from torch import Tensor, nn

from tinygpt.errors import UsageError
from tinygpt.model.attention import MultiHeadAttention

# The model's settings live in model_config (no torch there); the contract names them here too.
from tinygpt.model.config import Activation, AttentionConfig, GPTConfig, Positions
from tinygpt.model.kv_cache import KVCache
from tinygpt.model.loss import linear_cross_entropy

__all__ = ["GPT", "AttentionConfig", "Block", "GPTConfig", "attention_overrides", "evaluating"]


def check_length(n: int, context_length: int) -> None:
    """A sequence longer than the learned position table has no positions to use."""
    if n > context_length:
        raise UsageError(f"sequence of {n} tokens is longer than context_length={context_length} "
                         "(crop the input or raise context_length)")


class ReLU2(nn.Module):
    """relu(x)²."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(x).square()


class MLP(nn.Module):
    """Position-wise feed-forward: widen 4x, GELU (or ReLU²), project back."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.fc = nn.Linear(cfg.emb_dim, 4 * cfg.emb_dim, bias=cfg.bias)
        self.act = {Activation.gelu: lambda: nn.GELU(approximate="tanh"),
                    Activation.gelu_exact: nn.GELU, Activation.relu2: ReLU2}[cfg.activation]()
        self.proj = nn.Linear(4 * cfg.emb_dim, cfg.emb_dim, bias=cfg.bias)
        self.drop = nn.Dropout(cfg.drop_rate)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.proj(self.act(self.fc(x))))


class Block(nn.Module):
    """Pre-LayerNorm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.emb_dim, bias=cfg.bias)
        self.attn = MultiHeadAttention.from_config(cfg)
        self.ln2 = nn.LayerNorm(cfg.emb_dim, bias=cfg.bias)
        self.mlp = MLP(cfg)
        self.drop = nn.Dropout(cfg.drop_rate)

    def forward(self, x: Tensor, cache: KVCache | None = None) -> Tensor:
        x = x + self.drop(self.attn(self.ln1(x), cache))
        return x + self.mlp(self.ln2(x))


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
        self.ln_f = nn.LayerNorm(cfg.emb_dim, bias=cfg.bias)
        self.head = nn.Linear(cfg.emb_dim, cfg.padded_vocab_size, bias=False)
        if cfg.tie_weights:
            self.head.weight = self.tok_emb.weight
        self.apply(self._init_weights)
        # Each block adds two outputs to the residual stream; GPT-2 shrinks their init by
        # 1/sqrt(2 * n_layers) so the stream's variance does not grow with depth.
        for name, p in self.named_parameters():
            if name.endswith(("attn.out_proj.weight", "mlp.proj.weight")):
                if cfg.zero_init:
                    nn.init.zeros_(p)
                else:
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

    def forward(self, idx: Tensor, cache: list[KVCache] | None = None) -> Tensor:
        """Token ids (B, T) -> logits (B, T, vocab). Each block's attention weights: its
        `attn.hook_pattern` (`tinygpt.probes.attention.recorded`)."""
        x = self.hidden(idx, cache)
        return self.capped(self.head(x)[..., : self.cfg.vocab_size])  # padding: not tokens

    def next_logits(self, idx: Tensor, cache: list[KVCache] | None = None) -> Tensor:
        """Logits (B, vocab) for the token after idx: the head runs on the last position only."""
        x = self.hidden(idx, cache)
        return self.capped(self.head(x[:, -1])[..., : self.cfg.vocab_size])

    def capped(self, logits: Tensor) -> Tensor:
        """The logits soft-capped by model.logit_softcap (unchanged when it is off)."""
        cap = self.cfg.logit_softcap
        return logits if cap is None else cap * torch.tanh(logits / cap)

    def loss(self, idx: Tensor, targets: Tensor) -> Tensor:
        """Mean next-token cross-entropy; never builds the full logits tensor (`model.loss`)."""
        return self.head_loss(self.hidden(idx), targets)

    def head_loss(self, x: Tensor, targets: Tensor) -> Tensor:
        """The same loss from the head's input x (B, T, emb_dim), `hidden`'s output."""
        return linear_cross_entropy(
            x.flatten(0, 1), self.head.weight, targets.flatten(), self.cfg.vocab_size,
            softcap=self.cfg.logit_softcap,
        )

    @property
    def reaches_beyond_context(self) -> bool:
        """Whether it can read more than context_length tokens: no learned table caps it."""
        return self.pos_emb is None

    def hidden(self, idx: Tensor, cache: list[KVCache] | None = None) -> Tensor:
        """The final LayerNorm's output (B, T, emb_dim), the head's input."""
        T = idx.shape[1]
        past = cache[0].length if cache is not None else 0
        x = self.tok_emb(idx)
        if self.pos_emb is not None:
            check_length(past + T, self.cfg.context_length)  # the table has no rows beyond it
            x = x + self.pos_emb(torch.arange(past, past + T, device=idx.device))
        x = self.drop(x)
        for i, block in enumerate(self.blocks):
            x = block(x, cache[i] if cache is not None else None)
        return self.ln_f(x)


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
    """Temporarily change switches (backend, causal, ...) of every attention module, e.g.
    `attention_overrides(model, causal=True)` scores a model trained without the mask with it."""
    modules = [m for m in model.modules() if isinstance(m, MultiHeadAttention)]
    saved = [m.switches for m in modules]
    for m in modules:
        m.switches = replace(m.switches, **switches)  # unknown names raise
    try:
        yield model
    finally:
        for m, kept in zip(modules, saved, strict=True):
            m.switches = kept

