"""The model's settings, with their defaults and checks: `GPTConfig` (the shape),
`AttentionConfig` (what attention does) and `SampleConfig` (how to sample from it). Plain
dataclasses, no torch, so a config is checked before any model code loads."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any

from tinygpt.errors import UsageError, parse_choice


class MaskImpl(str, Enum):
    """How the causal mask is applied."""

    neg_inf = "neg_inf"  # masked scores become -inf before the softmax
    renorm = "renorm"  # softmax over all, zero the future, renormalise each row (the seed's way)


class Backend(str, Enum):
    """Which kernel computes attention."""

    sdpa = "sdpa"  # PyTorch's fused scaled_dot_product_attention
    manual = "manual"  # explicit matmul + softmax; can return the weights


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
    rope = "rope"  # q and k rotated by their positions (tinygpt.model.positions)
    alibi = "alibi"  # scores biased by -slope_h x distance (tinygpt.model.positions)
    none = "none"  # NoPE: the causal mask alone tells tokens apart


class Sink(str, Enum):
    """An extra key every query sees, with a logit and no value: it can take a row's mass."""

    none = "none"
    zero = "zero"  # its logit is 0: softmax + 1 (Miller 2023)
    learned = "learned"  # one learned logit per head (gpt-oss)


class Gate(str, Enum):
    """A sigmoid gate on each head's output, computed from the attention's input (Qiu et al.)."""

    none = "none"
    head = "head"  # one scalar per head and token
    elementwise = "elementwise"  # one per channel


class Kind(str, Enum):
    """What turns scores into weights."""

    softmax = "softmax"
    sigmoid = "sigmoid"  # sigmoid(score - log n), each weight on its own (Ramapuram et al.)
    differential = "differential"  # softmax1 - lambda softmax2 over head pairs (Ye et al.)
    # relu(e^s - 1) / sum |e^s - 1|: a row may give every key nothing (Zuhri et al. 2025)
    softpick = "softpick"


class Activation(str, Enum):
    """The MLP's nonlinearity."""

    gelu = "gelu"  # GPT-2's (tanh approximation)
    gelu_exact = "gelu_exact"  # the erf form (nanoGPT's nn.GELU()): a third of tanh's time on CPUs
    relu2 = "relu2"  # ReLU squared (Primer; modded-nanogpt): cheaper, and sparse


_CHOICES = {"mask_impl": MaskImpl, "backend": Backend, "scale_type": ScaleType,
            "qk_norm": QKNorm, "sink": Sink, "gate": Gate, "kind": Kind}


@dataclass
class AttentionConfig:
    """What the attention does; `MultiHeadAttention` explains each switch."""

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
    sink: Sink = Sink.none  # an extra key with a logit and no value: none, zero or learned
    gate: Gate = Gate.none  # a sigmoid gate on each head's output: none, head or elementwise
    kind: Kind = Kind.softmax  # softmax, sigmoid, softpick (both manual backend), differential

    def __post_init__(self) -> None:
        # Strings (a checkpoint's hparams, a library call) become enums, once, here.
        for name, kind in _CHOICES.items():
            setattr(self, name, parse_choice(kind, getattr(self, name), f"model.attention.{name}"))

    def check(self, d_out: int, num_heads: int, positions: Positions) -> None:
        """A UsageError, saying what to change, for a combination no attention can run."""
        if num_heads < 1 or d_out % num_heads:
            raise UsageError(f"emb_dim/d_out={d_out} is not divisible by n_heads={num_heads} "
                             "(pick n_heads that divides it)")
        head_dim = d_out // num_heads
        divisors = [n for n in range(1, num_heads + 1) if num_heads % n == 0]
        manual = self.backend == Backend.manual
        unnormalised = self.kind in (Kind.sigmoid, Kind.softpick)  # rows need not sum to 1
        problems = [
            (self.mask_impl == MaskImpl.renorm and not manual,
             "mask_impl='renorm' needs the manual backend: sdpa cannot renormalise after "
             "softmax (set backend=manual, or mask_impl=neg_inf)"),
            (self.n_kv_heads is not None and self.n_kv_heads not in divisors,
             f"n_kv_heads={self.n_kv_heads} must divide n_heads={num_heads} (use one of "
             f"{', '.join(map(str, divisors))}; 1 is multi-query)"),
            (self.window is not None and self.window < 1,
             f"window={self.window} must be at least 1 key (or null: full attention)"),
            (positions == Positions.rope and head_dim % 2,
             f"positions=rope rotates pairs of dimensions: d_head={head_dim} is odd (pick "
             "emb_dim and n_heads so emb_dim / n_heads is even)"),
            (self.softcap is not None and self.softcap <= 0,
             f"softcap={self.softcap} must be positive (or null: off)"),
            (self.softcap is not None and not manual,
             "softcap needs the manual backend: sdpa cannot cap its scores (set backend=manual)"),
            (not self.scale and self.scale_type != ScaleType.inv_sqrt_d,
             f"scale_type={self.scale_type.value} needs scale=true: scale=false means no factor "
             "at all (set scale=true, or scale_type=inv_sqrt_d)"),
            (self.scale_type == ScaleType.fixed and self.scale_value is None,
             "scale_type=fixed needs scale_value (e.g. scale_value=0.12)"),
            (unnormalised and not manual,
             f"kind={self.kind.value} needs the manual backend: sdpa computes a softmax (set "
             "backend=manual)"),
            (unnormalised and self.sink != Sink.none,
             f"sink={self.sink.value} takes a softmax row's mass; {self.kind.value} rows need "
             "not sum to 1, so nothing has to take it (set sink=none, or kind=softmax)"),
            (unnormalised and self.mask_impl == MaskImpl.renorm,
             f"mask_impl=renorm renormalises softmax rows; {self.kind.value} rows are not "
             "normalised (set mask_impl=neg_inf)"),
            (self.kind == Kind.differential and num_heads % 2,
             f"kind=differential pairs heads: n_heads={num_heads} is odd (pick an even "
             "n_heads)"),
            (self.kind == Kind.differential and self.n_kv_heads not in (None, num_heads),
             f"kind=differential pairs heads with their own keys: n_kv_heads="
             f"{self.n_kv_heads} shares them (set n_kv_heads=null)"),
        ]
        for bad, message in problems:
            if bad:
                raise UsageError(message)


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
    # Biases in the other linear layers and the LayerNorms (GPT-2's); false: none (nanoGPT's
    # bias=False), a few percent faster on a CPU. The qkv projection's is qkv_bias.
    bias: bool = True
    tie_weights: bool = True
    # Round the embedding/head rows up to a multiple of this (64 suits matmul kernels); the
    # extra rows are never scored, trained or sampled.
    pad_vocab_multiple: int = 64
    # learned (GPT-2's table, context_length caps the input), rope, alibi or none (NoPE)
    positions: Positions = Positions.learned
    rope_base: float = 10000.0
    attention: AttentionConfig = field(default_factory=AttentionConfig)
    activation: Activation = Activation.gelu
    # Output projections (attention's and the MLP's) start at zero, so each block starts as the
    # identity (modded-nanogpt); false: GPT-2's small normal init
    zero_init: bool = False
    # Logits -> logit_softcap * tanh(logits / logit_softcap) (Gemma 2; modded-nanogpt). null: off
    logit_softcap: float | None = None

    @property
    def padded_vocab_size(self) -> int:
        m = max(1, self.pad_vocab_multiple)
        return -(-self.vocab_size // m) * m

    @property
    def head_dim(self) -> int:
        return self.emb_dim // self.n_heads

    def __post_init__(self) -> None:
        if isinstance(self.attention, dict):  # e.g. rebuilt from a checkpoint's hparams
            self.attention = AttentionConfig(**self.attention)
        self.positions = parse_choice(Positions, self.positions, "model.positions")
        self.activation = parse_choice(Activation, self.activation, "model.activation")

    def validate(self) -> None:
        """Raise UsageError, saying what to change, for a shape the model cannot be built with."""
        for name in ("vocab_size", "context_length", "emb_dim", "n_heads", "n_layers"):
            if getattr(self, name) < 1:
                value = getattr(self, name)
                raise UsageError(f"model.{name} must be a positive integer (got {value})")
        if not 0.0 <= self.drop_rate < 1.0:
            raise UsageError(f"model.drop_rate must be in [0, 1) (got {self.drop_rate})")
        if self.logit_softcap is not None and self.logit_softcap <= 0:
            raise UsageError(f"model.logit_softcap={self.logit_softcap} must be positive "
                             "(e.g. 15, or null: off)")
        self.attention.check(self.emb_dim, self.n_heads, self.positions)

    def kv_cache_bytes_per_token(self, element_bytes: int = 4) -> int:
        """What generation keeps per token: keys and values of every layer's kv heads."""
        kv_heads = self.attention.n_kv_heads or self.n_heads
        return 2 * self.n_layers * kv_heads * self.head_dim * element_bytes

    def to_dict(self) -> dict[str, Any]:
        """Plain Python values (choices as strings): what a checkpoint stores, and loads safely."""
        def plain(v: Any) -> Any:
            return {k: plain(x) for k, x in v.items()} if isinstance(v, dict) else getattr(
                v, "value", v)

        return plain(asdict(self))


def check_sampling(temperature: float, top_k: int | None, top_p: float | None) -> None:
    """Raise UsageError, saying what to change, for sampling settings that make no sense."""
    if temperature < 0:
        raise UsageError(f"temperature={temperature} is negative (use 0 for greedy, or > 0)")
    if top_k is not None and top_k < 1:
        raise UsageError(f"top_k={top_k} must be at least 1 (or unset)")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise UsageError(f"top_p={top_p} must be in (0, 1] (or unset)")


@dataclass
class SampleConfig:
    """A continuation: what the training run samples at each validation (`sample.*`)."""

    prompt: str = "The for statement"
    max_new_tokens: int = 64
    temperature: float = 0.8
    top_k: int | None = 40

    def validate(self) -> None:
        check_sampling(self.temperature, self.top_k, None)
        if self.max_new_tokens < 0:
            raise UsageError(f"sample.max_new_tokens={self.max_new_tokens} must be at least 0 "
                             "(e.g. 64)")
