"""Corpora, the token cache, windows of tokens, and the LightningDataModule that serves them."""

from __future__ import annotations

import glob
import hashlib
import math
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import DataLoader, Dataset, Sampler

from tinygpt.errors import UsageError, parse_choice
from tinygpt.files import atomic_write
from tinygpt.tokenizer import Tokenizer, TokenizerName, get_tokenizer, tokenizer_state

# Downloadable corpora: where they live and the sha256 of the exact bytes we train on.
PRESETS = {
    "tinyshakespeare": (
        "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
        "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
    ),
    "the_verdict": (
        "https://raw.githubusercontent.com/rasbt/LLMs-from-scratch/main/ch02/"
        "01_main-chapter-code/the-verdict.txt",
        "b41e41a68f0398a3154ae69e2e4c0e2694e17fe0d66730536837f1b01935b31f",
    ),
}


class Corpus(str, Enum):
    python_docs = "python_docs"  # Python's reference documentation, shipped with CPython
    text = "text"  # your own: data.path names a file, a folder of .txt files or a glob
    tinyshakespeare = "tinyshakespeare"  # downloaded once, sha256-checked
    the_verdict = "the_verdict"  # downloaded once, sha256-checked


@dataclass
class DataConfig:
    """Which text, how it is tokenised and windowed, and how it is batched."""

    name: Corpus = Corpus.python_docs
    path: str | None = None  # for name=text: a file, a folder of .txt files, or a glob
    url: str | None = None  # for a download preset: a mirror instead of the default address
    # A BPE trained on the training split: chosen by measurement (docs/tokenizers.md) for the
    # best bits per byte within the default run's minutes; GPT-2's is data.tokenizer=gpt2.
    tokenizer: TokenizerName = TokenizerName.bpe
    vocab_size: int = 2048  # for tokenizer=bpe: tokens it learns (256 bytes + merges + 1 special)
    batch_size: int = 16  # sequences per optimizer step over all devices (split across them)
    val_fraction: float = 0.1
    stride: int | None = 64  # tokens between training windows' starts (None: context_length)
    num_workers: int = 0
    # Downloads, token caches and trained tokenizers. null: $TINYGPT_CACHE, else the user's
    # cache folder (~/.cache/tinygpt): the same wherever a run is started from.
    cache_dir: str | None = None


def cache_path(configured: str | Path | None = None) -> Path:
    """Where downloads and token caches live: data.cache_dir, else $TINYGPT_CACHE, else
    $XDG_CACHE_HOME/tinygpt (~/.cache/tinygpt); never relative to the working directory."""
    if configured:
        return Path(configured).expanduser().resolve()
    if os.environ.get("TINYGPT_CACHE"):
        return Path(os.environ["TINYGPT_CACHE"]).expanduser().resolve()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser().resolve() / "tinygpt"


def python_docs_text() -> str:
    """The English text of Python's reference documentation, shipped with every CPython."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[k] for k in sorted(topics))


def text_files(path: str) -> list[Path]:
    """The files `path` names: one file, every .txt under a directory, or a glob pattern."""
    p = Path(path).expanduser()
    if p.is_file():
        return [p]
    if p.is_dir():
        return sorted(f for f in p.rglob("*.txt") if f.is_file())
    return sorted(Path(f) for f in glob.glob(str(p), recursive=True) if Path(f).is_file())


def download(name: str, cache_dir: str | Path, url: str | None = None, timeout: float = 30) -> Path:
    """The preset corpus `name` in cache_dir, downloaded once and checked against its sha256."""
    default_url, sha256 = PRESETS[name]
    url = url or default_url
    dest = Path(cache_dir) / "corpora" / f"{name}.txt"
    if dest.exists():
        return dest
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r, atomic_write(dest) as f:
            digest = hashlib.sha256()
            while chunk := r.read(1 << 16):
                digest.update(chunk)
                f.write(chunk)
            if digest.hexdigest() != sha256:  # raised inside: the file never takes its name
                got = digest.hexdigest()
                raise UsageError(
                    f"the download of {name} from {url} is corrupt: sha256 {got[:12]}... is not "
                    f"the pinned {sha256[:12]}... (try again later, or fetch the file yourself "
                    "and use data.name=text data.path=...)"
                )
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", None) or e
        raise UsageError(
            f"cannot download {name} from {url}: {reason} (offline? save the file yourself and "
            "use data.name=text data.path=/path/to/file.txt)"
        ) from None
    return dest


def load_text(
    name: Corpus | str, path: str | None = None, cache_dir: str | Path | None = None,
    url: str | None = None,
) -> str:
    """The corpus as one string; raises UsageError with what to do if it cannot be read."""
    name = parse_choice(Corpus, name, "data.name")
    if name == Corpus.python_docs:
        return python_docs_text()
    if name.value in PRESETS:
        return download(name.value, cache_path(cache_dir), url).read_text(encoding="utf-8")
    if not path:
        raise UsageError("data.name=text needs a file (set data.path=/path/to/file.txt)")
    files = text_files(path)
    if not files:
        raise UsageError(
            f"no text file at data.path={path} (give a file, a folder of .txt files, or a glob)"
        )
    parts = []
    for f in files:
        try:
            parts.append(f.read_text(encoding="utf-8"))
        except UnicodeDecodeError as e:
            raise UsageError(f"{f} is not UTF-8 text: {e.reason} at byte {e.start} "
                             "(convert it, e.g. iconv -t utf-8)") from None
    text = "\n\n".join(parts)
    if not text.strip():
        raise UsageError(f"the corpus at data.path={path} is empty (point it at a file with text)")
    return text


def encode_cached(text: str, tokenizer: Tokenizer, cache_dir: str | Path) -> np.ndarray:
    """Token ids of `text`, read from (or written once to) a memmap keyed by text and tokenizer."""
    key = hashlib.sha256(repr(tokenizer_state(tokenizer)).encode() + text.encode()).hexdigest()
    dtype = np.uint16 if tokenizer.vocab_size <= 2**16 else np.uint32
    path = Path(cache_dir) / f"tokens-{tokenizer.name}-{key[:20]}.{np.dtype(dtype).name}"
    if not path.exists():
        ids = np.asarray(tokenizer.encode(text), dtype=dtype)
        with atomic_write(path) as f:  # a crash or a concurrent rank never leaves half a cache
            ids.tofile(f)
    if path.stat().st_size == 0:
        return np.zeros(0, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r")


class TokenWindows(Dataset):
    """Windows of context_length + 1 tokens each `stride`: (inputs, targets = inputs + 1)."""

    def __init__(self, ids: np.ndarray, context_length: int, stride: int):
        self.ids, self.T, self.stride = ids, context_length, stride
        self.n = max(0, (len(ids) - context_length - 1) // stride + 1)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        s = i * self.stride
        chunk = torch.from_numpy(self.ids[s : s + self.T + 1].astype(np.int64))
        return chunk[:-1], chunk[1:]


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
        perm = torch.randperm(self.n, generator=g)[self.rank :: self.world_size]
        return iter(perm[pos : self.epoch_len].tolist())


def bits_per_byte(nats: float, nbytes: int) -> float:
    """A summed loss in nats over the bytes of the text it predicted: comparable across
    tokenizers, unlike nats per token."""
    return nats / nbytes / math.log(2)


def unigram_baseline(train_ids: np.ndarray, val_ids: np.ndarray, vocab_size: int) -> float:
    """Validation cross-entropy (nats) of an add-one unigram model fit on the training ids."""
    counts = np.bincount(train_ids, minlength=vocab_size).astype(np.float64) + 1.0
    logp = np.log(counts / counts.sum())
    return float(-logp[np.asarray(val_ids, dtype=np.int64)].mean())


class TextDataModule(L.LightningDataModule):
    """Tokenised corpus split by a contiguous fraction into training and validation windows.

    `cfg.batch_size` is the global batch (sequences per optimizer step); `setup()` splits it over
    the devices and accumulation steps the Trainer has, into `per_device_batch`.
    """

    def __init__(self, cfg: DataConfig, context_length: int, seed: int = 0):
        super().__init__()
        if not 0.0 < cfg.val_fraction < 1.0:
            raise UsageError(f"data.val_fraction={cfg.val_fraction} must be between 0 and 1 "
                             "(e.g. 0.1)")
        if cfg.stride is not None and cfg.stride < 1:
            raise UsageError(f"data.stride={cfg.stride} must be at least 1 token (or null: "
                             "windows side by side)")
        self.cfg, self.context_length, self.seed = cfg, context_length, seed
        self.name = parse_choice(Corpus, cfg.name, "data.name").value
        self.tokenizer_name = parse_choice(TokenizerName, cfg.tokenizer, "data.tokenizer")
        self.stride = cfg.stride or context_length  # default: windows side by side, no overlap
        self.per_device_batch = cfg.batch_size  # until setup() learns the world size
        self.tokenizer: Tokenizer | None = None

    def load(self) -> None:
        """Read, tokenise (or hit the cache) and split; safe to call more than once."""
        if self.tokenizer is not None:
            return
        c = self.cfg
        cache = cache_path(c.cache_dir)
        text = load_text(self.name, c.path, cache, c.url)
        # The text is split before it is tokenised: a trained BPE learns from the training part
        # alone, and the validation part's bytes are known exactly (for bits per byte).
        cut = len(text) - int(len(text) * c.val_fraction)
        train_text, val_text = text[:cut], text[cut:]
        # char: the alphabet of the whole text (a character only the validation part has must
        # still be encodable); bpe: merges learnt from the training part only.
        source = text if self.tokenizer_name == TokenizerName.char else train_text
        tok = get_tokenizer(self.tokenizer_name, text=source, vocab_size=c.vocab_size,
                            cache_dir=cache)
        self.train_ids = encode_cached(train_text, tok, cache)
        self.val_ids = encode_cached(val_text, tok, cache)
        ids = len(self.train_ids) + len(self.val_ids)
        self.train_set = TokenWindows(self.train_ids, self.context_length, self.stride)
        # Validation windows never overlap, so each token is scored once.
        self.val_set = TokenWindows(self.val_ids, self.context_length, self.context_length)
        need = 2 * (self.context_length + 1)
        if len(self.train_set) == 0 or len(self.val_set) == 0:
            raise UsageError(
                f"the corpus has {ids} tokens: too short for one training and one validation "
                f"window of {self.context_length + 1} tokens with val_fraction={c.val_fraction} "
                f"(use a longer text, or lower model.context_length; need well over {need} tokens)"
            )
        self.tokenizer = tok

    def setup(self, stage: str | None = None) -> None:
        self.load()
        if self.trainer is not None:
            self.per_device_batch = split_batch(self.cfg.batch_size, self.trainer.world_size,
                                                self.trainer.accumulate_grad_batches)
            if self.trainer.world_size > 1 or self.trainer.accumulate_grad_batches > 1:
                rank_zero_info(f"global batch {self.cfg.batch_size} sequences = "
                               f"{self.trainer.world_size} device(s) x "
                               f"{self.trainer.accumulate_grad_batches} accumulation step(s) x "
                               f"{self.per_device_batch} sequences")

    def unigram_baseline(self) -> float:
        """Validation loss (nats per token) of an add-one unigram model of the training tokens."""
        self.load()
        return unigram_baseline(self.train_ids, self.val_ids, self.tokenizer.vocab_size)

    def unigram_bpb(self) -> float:
        """The same baseline in bits per byte of the validation text."""
        nbytes = np.asarray(self.tokenizer.token_bytes())[np.asarray(self.val_ids)].sum()
        return bits_per_byte(self.unigram_baseline() * len(self.val_ids), nbytes)

    def train_dataloader(self) -> DataLoader:
        t = self.trainer
        rank, world = (t.global_rank, t.world_size) if t is not None else (0, 1)
        b = self.per_device_batch
        sampler = ResumableSampler(len(self.train_set), b, self.seed, rank, world)
        if t is not None:  # resuming: skip exactly the samples the finished steps consumed
            sampler.start = t.global_step * t.accumulate_grad_batches * b
        return self._loader(self.train_set, sampler=sampler)

    def val_dataloader(self) -> DataLoader:
        # Each rank scores every world_size-th window (no padding, no duplicates): the union is
        # the whole validation set, and the token-weighted mean across ranks is exact.
        t = self.trainer
        rank, world = (t.global_rank, t.world_size) if t is not None else (0, 1)
        return self._loader(self.val_set, sampler=range(rank, len(self.val_set), world))

    def _loader(self, dataset: Dataset, sampler: Sampler | None = None) -> DataLoader:
        on_gpu = self.trainer is not None and self.trainer.strategy.root_device.type == "cuda"
        workers = self.cfg.num_workers
        return DataLoader(
            dataset, batch_size=self.per_device_batch, sampler=sampler,
            num_workers=workers, persistent_workers=workers > 0, pin_memory=on_gpu,
            # A loader of its own draws its worker seed from this, not from the global RNG,
            # which training's dropout must find in the same state after a resume.
            generator=torch.Generator().manual_seed(self.seed),
        )


def split_batch(batch_size: int, world_size: int, accumulate: int) -> int:
    """Sequences per device and micro-step for a global batch of batch_size sequences."""
    per_device, rest = divmod(batch_size, world_size * accumulate)
    if rest or per_device == 0:
        raise UsageError(
            f"data.batch_size={batch_size} (sequences per step, all devices) is not a multiple "
            f"of devices x accumulate_grad_batches = {world_size * accumulate} "
            "(change one of them)")
    return per_device
