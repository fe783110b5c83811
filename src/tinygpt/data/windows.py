"""From a prepared corpus (`tinygpt.data.prepare`: its tokenizer and token shards) to training
windows: windows of tokens (and the lab's synthetic ones), and the resumable order they are
drawn in."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from tinygpt.data.config import DataConfig, Synthetic, SyntheticKind, repeat_length
from tinygpt.data.prepare import prepare
from tinygpt.data.shards import ShardedTokens
from tinygpt.data.tokenizer import Tokenizer
from tinygpt.metrics import bits_per_byte


class TokenWindows(Dataset):
    """Windows of context_length + 1 tokens each `stride`: (inputs, targets = inputs + 1). With
    `bos`, each window is that token and the next context_length tokens, as a document starts."""

    def __init__(self, ids: np.ndarray, context_length: int, stride: int, bos: int | None = None):
        self.ids, self.T, self.stride, self.bos = ids, context_length, stride, bos
        span = context_length + (bos is None)  # tokens each window reads from ids
        self.n = max(0, (len(ids) - span) // stride + 1)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        s = i * self.stride
        chunk = torch.from_numpy(self.ids[s : s + self.T + (self.bos is None)].astype(np.int64))
        if self.bos is not None:
            chunk = torch.cat([torch.tensor([self.bos]), chunk])
        return chunk[:-1], chunk[1:]


class WithSynthetic(Dataset):
    """Training windows of which a `share` are replaced by synthetic ones (`synthetic_window`),
    chosen and drawn from (seed, index) alone, so the stream resumes exactly."""

    def __init__(self, windows: TokenWindows, cfg: Synthetic, vocab_size: int, seed: int = 0):
        self.windows, self.cfg, self.vocab_size, self.seed = windows, cfg, vocab_size, seed

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + i)
        if torch.rand((), generator=g).item() >= self.cfg.share:
            return self.windows[i]
        chunk, _ = synthetic_window(g, self.cfg, self.vocab_size, self.windows.T + 1)
        return chunk[:-1], chunk[1:]


def synthetic_window(g: torch.Generator, cfg: Synthetic, vocab_size: int, n_tokens: int
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """n_tokens token ids of cfg's kind, and which of them a model can predict by copying."""
    if cfg.kind == SyntheticKind.repeats:
        return repeated_segment(g, vocab_size, n_tokens, cfg.length)
    return copied_chunks(g, vocab_size, n_tokens, cfg)


def repeated_segment(g: torch.Generator, vocab_size: int, n_tokens: int, length: int
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """A random segment of `length / 2` to `length` tokens repeated to fill n_tokens: a fixed
    length would teach a positional shortcut (docs/attention_lab.md)."""
    n = int(torch.randint(max(1, length // 2), length + 1, (), generator=g))
    segment = torch.randint(0, vocab_size, (n,), generator=g)
    return segment.repeat(-(-n_tokens // n))[:n_tokens], torch.arange(n_tokens) >= n


def copied_chunks(g: torch.Generator, vocab_size: int, n_tokens: int, cfg: Synthetic
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """`cfg.prefix` uniform random tokens, then chunks copied from earlier ones (each chunk's
    source lies wholly before it) up to n_tokens; and which tokens follow their source's."""
    x = torch.empty(n_tokens, dtype=torch.long)
    copied = torch.zeros(n_tokens, dtype=torch.bool)
    x[: cfg.prefix] = torch.randint(0, vocab_size, (cfg.prefix,), generator=g)
    i = cfg.prefix
    while i < n_tokens:
        n = min(int(torch.randint(cfg.shortest, cfg.longest + 1, (), generator=g)),
                n_tokens - i)
        start = int(torch.randint(0, i - n + 1, (), generator=g))
        x[i : i + n] = x[start : start + n]
        copied[i + 1 : i + n] = True  # the chunk's first token is a jump; the rest follow it
        i += n
    return x, copied


class ResumableSampler(Sampler[int]):
    """A shuffled stream of window indices that is a pure function of (seed, epoch, position).

    Each epoch is a fresh permutation seeded by (seed, epoch), split across ranks, and trimmed to
    whole batches, so sample number g of the stream is the same whether or not the run was
    interrupted: resuming at optimizer step k starts at g = k * batches-per-step * batch_size.
    """

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1):
        self.n, self.seed, self.rank, self.world_size = n, seed, rank, world_size
        per_rank = n // world_size
        self.epoch_len = max(1, per_rank // batch_size) * batch_size if per_rank else 0
        self.start = 0  # position in the stream where the next __iter__ begins

    def __len__(self) -> int:
        return self.epoch_len

    def __iter__(self) -> Iterator[int]:
        if self.epoch_len == 0:
            return iter(())
        epoch, pos = divmod(self.start, self.epoch_len)
        self.start = (epoch + 1) * self.epoch_len  # the next epoch begins at its start
        g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        # int32: the same permutation as int64 in half the memory (4 bytes a window: 16 MB for a
        # 1 GB text at the default stride), read out a chunk at a time: as one list of Python
        # ints it took 36 bytes a window (140 MB of a 1 GB text's run)
        dtype = torch.int32 if self.n < 2**31 else torch.int64
        perm = torch.randperm(self.n, generator=g, dtype=dtype)[self.rank :: self.world_size]
        return ints(perm[pos : self.epoch_len])


def ints(t: torch.Tensor, chunk: int = 1 << 16) -> Iterator[int]:
    """A 1-d tensor's values as Python ints, `chunk` of them converted at a time."""
    for i in range(0, len(t), chunk):
        yield from t[i : i + chunk].tolist()


def unigram_baseline(train_counts: np.ndarray, val_counts: np.ndarray) -> float:
    """Validation cross-entropy (nats per token) of an add-one unigram model fit on the training
    tokens, from how often each token occurs in each split."""
    counts = train_counts + 1.0
    logp = np.log(counts / counts.sum())
    return float(-(val_counts * logp).sum()) / max(1, int(val_counts.sum()))


@dataclass
class TokenSplit:
    """A corpus as token ids, split into training and validation, and its windows."""

    name: str
    tokenizer: Tokenizer
    train_ids: ShardedTokens
    val_ids: ShardedTokens
    train_set: TokenWindows | WithSynthetic
    val_set: TokenWindows  # side by side: each validation token is scored once
    counts: dict[str, np.ndarray]  # how often each token occurs in each split

    def unigram_baseline(self) -> float:
        """Validation loss (nats per token) of an add-one unigram model of the training tokens."""
        return unigram_baseline(self.counts["train"], self.counts["val"])

    def train_bytes_per_token(self) -> float:
        """UTF-8 bytes of training text per training token (turns tokens into text)."""
        return self.train_ids.bytes / max(1, len(self.train_ids))

    def unigram_bpb(self) -> float:
        """The same baseline in bits per byte of the validation text."""
        return bits_per_byte(self.unigram_baseline() * len(self.val_ids), self.val_ids.bytes)


def load_split(cfg: DataConfig, context_length: int, tokenizer: Tokenizer | None = None
               ) -> TokenSplit:
    """Read, tokenise (or hit the cache) and split the corpus cfg names (its values checked
    already: `tinygpt.training.settings`); UsageError for a corpus that cannot be read or is too
    short for one window of each split (refused before anything is cached)."""
    # The text is split before it is tokenised: a trained BPE learns from the training part
    # alone, and the validation part's bytes are known exactly (for bits per byte).
    span = context_length + (not cfg.bos)  # tokens a window reads (a bos is added, not read)
    prepared = prepare(cfg, shortest=span, tokenizer=tokenizer)
    tok, train_ids, val_ids = prepared.tokenizer, prepared.train, prepared.val
    stride = cfg.stride or context_length  # default: windows side by side, no overlap
    bos = tok.eot_token if cfg.bos else None
    train_set = TokenWindows(train_ids, context_length, stride, bos)
    if cfg.synthetic.kind != SyntheticKind.none:
        synthetic = replace(cfg.synthetic, length=repeat_length(cfg, context_length))
        train_set = WithSynthetic(train_set, synthetic, tok.vocab_size)
    return TokenSplit(prepared.name, tok, train_ids, val_ids, train_set,
                      TokenWindows(val_ids, context_length, context_length, bos), prepared.counts)
