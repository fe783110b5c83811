"""The data's settings: which text, how it is tokenised, windowed and batched, and the synthetic
windows the lab trains on. Plain dataclasses with their defaults and their own checks, no torch,
so a config is checked before any model code loads."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from tinygpt.data.corpus import Corpus, check_cache, text_files
from tinygpt.data.tokenizer import TokenizerName
from tinygpt.errors import UsageError, parse_choice


class SyntheticKind(str, Enum):
    """What replaces a share of the training windows: text where copying can be learnt."""

    none = "none"
    # a random token segment repeated to fill the window; each segment half to all of `length`
    # tokens long, so no fixed offset finds the copy (where sinks and induction heads form)
    repeats = "repeats"
    # `prefix` random tokens, then chunks of `shortest` to `longest` tokens each copied from a
    # random earlier place: every token of a chunk after its first follows an earlier occurrence
    # of the token before it, which an induction head predicts and no fixed offset does
    copies = "copies"


@dataclass
class Synthetic:
    """Synthetic training windows (`kind`), a `share` of them; the rest stay text."""

    kind: SyntheticKind = SyntheticKind.none
    share: float = 1.0  # of the training windows (1: all of them, no text)
    length: int | None = None  # repeats: the longest segment (null: an eighth of the context)
    prefix: int = 16  # copies: random tokens before the first chunk
    shortest: int = 4  # copies: a chunk's fewest tokens
    longest: int = 12  # copies: a chunk's most tokens

    def __post_init__(self) -> None:
        self.kind = parse_choice(SyntheticKind, self.kind, "data.synthetic.kind")

    def validate(self) -> None:
        """A UsageError for values no window can have."""
        if not 0.0 <= self.share <= 1.0:
            raise UsageError(f"data.synthetic.share={self.share} must be between 0 and 1 "
                             "(e.g. 0.5: half the windows)")
        if self.kind == SyntheticKind.copies and not 1 <= self.shortest <= self.longest \
                <= self.prefix:
            raise UsageError(f"data.synthetic: prefix={self.prefix}, shortest={self.shortest}, "
                             f"longest={self.longest} must satisfy 1 <= shortest <= longest <= "
                             "prefix (a chunk is copied from earlier tokens; e.g. prefix=16 "
                             "shortest=4 longest=12)")


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
    synthetic: Synthetic = field(default_factory=Synthetic)
    # Downloads, token caches and trained tokenizers. null: $TINYGPT_CACHE, else the user's
    # cache folder (~/.cache/tinygpt): the same wherever a run is started from.
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        # Strings (a library call) become enums, once, here.
        self.name = parse_choice(Corpus, self.name, "data.name")
        self.tokenizer = parse_choice(TokenizerName, self.tokenizer, "data.tokenizer")
        if isinstance(self.synthetic, dict):  # a library call's or a checkpoint's plain values
            self.synthetic = Synthetic(**self.synthetic)

    def validate(self) -> None:
        """A UsageError for the first value no corpus can satisfy (before any text is read or
        anything is written)."""
        if not 0.0 < self.val_fraction < 1.0:
            raise UsageError(f"data.val_fraction={self.val_fraction} must be between 0 and 1 "
                             "(e.g. 0.1)")
        if self.stride is not None and self.stride < 1:
            raise UsageError(f"data.stride={self.stride} must be at least 1 token (or null: "
                             "windows side by side)")
        for key, low, hint in (("batch_size", 1, "sequences per step, e.g. 16"),
                               ("num_workers", 0, "0 loads in the training process")):
            if getattr(self, key) < low:
                raise UsageError(f"data.{key}={getattr(self, key)} must be at least {low} "
                                 f"({hint})")
        if self.tokenizer == TokenizerName.bpe and self.vocab_size < 257:
            raise UsageError(f"data.vocab_size={self.vocab_size} must be at least 257 (256 bytes "
                             "and an end-of-text token; e.g. 2048)")
        if self.name == Corpus.text and not self.path:
            raise UsageError("data.name=text needs a file (set data.path=/path/to/file.txt)")
        if self.name == Corpus.text and not text_files(self.path):
            raise UsageError(f"no text file at data.path={self.path} (give a file, a folder of "
                             ".txt files, or a glob)")
        check_cache(self.cache_dir)
        if self.bos and self.tokenizer == TokenizerName.char:
            raise UsageError("data.bos=true starts windows with the end-of-text token; "
                             "tokenizer=char has none (set data.tokenizer=bpe or gpt2, or "
                             "data.bos=false)")
        self.synthetic.validate()


def repeat_length(cfg: DataConfig, context_length: int) -> int:
    """The longest repeated segment (data.synthetic.length; null: an eighth of the context),
    which is also the length the induction probe repeats: induction learnt at these distances
    need not reach further (docs/attention_lab.md). `cfg`: a DataConfig."""
    return cfg.synthetic.length or context_length // 8
