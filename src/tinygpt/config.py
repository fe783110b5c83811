"""The settings of the library's parts besides the model (that is `model_config`): which data and
how it is batched, the optimizer, sampling, export. Plain dataclasses with their defaults, no
torch, so the training schema checks a config before any model code loads."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum

from tinygpt.corpus import Corpus
from tinygpt.errors import UsageError, parse_choice
from tinygpt.tokenizer import TokenizerName


@dataclass
class CopyTask:
    """Attention lab IV's synthetic windows: `prefix` uniform random tokens, then chunks of
    `shortest` to `longest` tokens, each copied from a random earlier place in the window. Every
    token of a chunk after its first follows an earlier occurrence of the token before it: an
    induction head predicts it, and no fixed offset does."""

    share: float = 0.0  # of the training windows (0: none; 1: all, no text)
    prefix: int = 16
    shortest: int = 4
    longest: int = 12


@dataclass
class DataConfig:
    """Which text, how it is tokenised and windowed, and how it is batched."""

    name: Corpus = Corpus.python_docs
    path: str | None = None  # for name=text: a file, a folder of .txt files, or a glob
    # for a download preset: a mirror instead of the default address (of its file; for a
    # preset of several files, tinystories, of the folder holding them under their names)
    url: str | None = None
    # A BPE trained on the training split: chosen by measurement (docs/tokenizers.md) for the
    # best bits per byte within the default run's minutes; GPT-2's is data.tokenizer=gpt2.
    tokenizer: TokenizerName = TokenizerName.bpe
    vocab_size: int = 2048  # for tokenizer=bpe: tokens it learns (256 bytes + merges + 1 special)
    batch_size: int = 16  # sequences per optimizer step over all devices (split across them)
    val_fraction: float = 0.1
    stride: int | None = 64  # tokens between training windows' starts (None: context_length)
    num_workers: int = 0
    # Each window starts with the end-of-text token, as a document does (where sinks form)
    bos: bool = False
    # A share of training windows replaced by a random token segment and its copy (where
    # induction heads form at CPU scale); repeat_length: the longest segment, each is half to all
    # of it (null: an eighth of the context, so a window holds eight to sixteen copies)
    repeat_share: float = 0.0
    repeat_length: int | None = None
    # Attention lab IV's windows: random tokens, then chunks copied from earlier in the window
    copies: CopyTask = field(default_factory=CopyTask)
    # Downloads, token caches and trained tokenizers. null: $TINYGPT_CACHE, else the user's
    # cache folder (~/.cache/tinygpt): the same wherever a run is started from.
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        # Strings (a library call) become enums, once, here.
        self.name = parse_choice(Corpus, self.name, "data.name")
        self.tokenizer = parse_choice(TokenizerName, self.tokenizer, "data.tokenizer")
        if isinstance(self.copies, dict):  # a library call's or a checkpoint's plain values
            self.copies = CopyTask(**self.copies)

    def validate(self) -> None:
        """UsageError for values no corpus can satisfy (before any text is read)."""
        if not 0.0 < self.val_fraction < 1.0:
            raise UsageError(f"data.val_fraction={self.val_fraction} must be between 0 and 1 "
                             "(e.g. 0.1)")
        if not 0.0 <= self.repeat_share <= 1.0:
            raise UsageError(f"data.repeat_share={self.repeat_share} must be between 0 and 1 "
                             "(e.g. 0.25)")
        if not 0.0 <= self.copies.share <= 1.0:
            raise UsageError(f"data.copies.share={self.copies.share} must be between 0 and 1 "
                             "(e.g. 1.0: every window)")
        if self.stride is not None and self.stride < 1:
            raise UsageError(f"data.stride={self.stride} must be at least 1 token (or null: "
                             "windows side by side)")


def repeat_length(cfg: DataConfig, context_length: int) -> int:
    """The longest repeated segment (data.repeat_length; null: an eighth of the context), which
    is also the length the induction probe repeats: induction learnt at these distances need not
    reach further (docs/attention_lab.md). `cfg`: a DataConfig or a run's recorded data node."""
    return cfg.repeat_length or context_length // 8


class Algorithm(str, Enum):
    """The optimizer."""

    adamw = "adamw"  # AdamW for every parameter
    muon = "muon"  # Muon for the blocks' matrices, AdamW for embeddings, head, gains and biases


class Schedule(str, Enum):
    """How the learning rate moves after warmup."""

    cosine = "cosine"  # cosine decay to lr * min_lr_ratio at the last step
    wsd = "wsd"  # warmup-stable-decay: flat at lr, then linear to lr * min_lr_ratio


@dataclass
class OptimConfig:
    """AdamW (or Muon for the hidden matrices) with linear warmup, then cosine decay to
    lr * min_lr_ratio (or warmup-stable-decay: flat, then a linear fall over decay_fraction)."""

    algorithm: Algorithm = Algorithm.adamw
    lr: float = 1e-3
    weight_decay: float = 0.1
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1
    schedule: Schedule = Schedule.cosine
    decay_fraction: float = 0.3  # schedule=wsd: the last share of the steps that decays
    # One kernel for the whole AdamW step (null: where the precision allows it, all but 16-mixed,
    # whose loss scaler would leave the gradients scaled when they are clipped)
    fused: bool | None = None
    muon_lr: float = 0.02  # algorithm=muon: the hidden matrices' peak learning rate
    muon_momentum: float = 0.95
    muon_ns_steps: int = 5  # Newton-Schulz iterations per update (fewer: cheaper, rougher)

    def __post_init__(self) -> None:
        # Strings (a checkpoint's hparams, a library call) become enums, once, here.
        self.algorithm = parse_choice(Algorithm, self.algorithm, "optim.algorithm")
        self.schedule = parse_choice(Schedule, self.schedule, "optim.schedule")

    def to_dict(self) -> dict:
        """Plain Python values (choices as strings): what a checkpoint stores."""
        return {k: getattr(v, "value", v) for k, v in asdict(self).items()}


class NonFinite(str, Enum):
    """What a NaN or inf training loss does."""

    stop = "stop"  # end the run naming the step; the last good checkpoint stays
    skip = "skip"  # drop the batch (counted in train/skipped_batches)


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


@dataclass
class GenerateConfig(SampleConfig):
    """scripts/generate.py's settings: a checkpoint (or a Hugging Face GPT-2 directory) and how
    to sample from it."""

    ckpt: str = "???"  # required
    max_new_tokens: int = 200
    top_p: float | None = None
    seed: int = 0
    use_cache: bool = True
    device: str = "auto"


@dataclass
class ExportConfig:
    """scripts/export_hf.py's settings."""

    ckpt: str = "???"  # required: a training checkpoint
    out: str = "???"  # required: the directory to write
    overwrite: bool = False
