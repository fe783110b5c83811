"""Corpora, the token cache, windows of tokens, and the LightningDataModule that serves them."""

from __future__ import annotations

import glob
import hashlib
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from tinygpt.tokenizer import TOKENIZERS, Tokenizer, get_tokenizer, tokenizer_state

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
CORPORA = ("python_docs", "text", *PRESETS)


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
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(f".part{os.getpid()}")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r, open(tmp, "wb") as f:
            digest = hashlib.sha256()
            while chunk := r.read(1 << 16):
                digest.update(chunk)
                f.write(chunk)
        if digest.hexdigest() != sha256:
            got = digest.hexdigest()
            raise ValueError(
                f"the download of {name} from {url} is corrupt: sha256 {got[:12]}... is not the "
                f"pinned {sha256[:12]}... (try again later, or fetch the file yourself and use "
                "data.name=text data.path=...)"
            )
        os.replace(tmp, dest)  # only a verified file ever carries the final name
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", None) or e
        raise ValueError(
            f"cannot download {name} from {url}: {reason} (offline? save the file yourself and "
            "use data.name=text data.path=/path/to/file.txt)"
        ) from None
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def load_text(
    name: str, path: str | None = None, cache_dir: str | Path = "data/cache", url: str | None = None
) -> str:
    """The corpus as one string; raises ValueError with what to do if it cannot be read."""
    if name == "python_docs":
        return python_docs_text()
    if name in PRESETS:
        return download(name, cache_dir, url).read_text(encoding="utf-8")
    if name != "text":
        raise ValueError(f"unknown corpus data.name={name!r} (use one of {', '.join(CORPORA)})")
    if not path:
        raise ValueError("data.name=text needs a file (set data.path=/path/to/file.txt)")
    files = text_files(path)
    if not files:
        raise ValueError(
            f"no text file at data.path={path} (give a file, a folder of .txt files, or a glob)"
        )
    parts = []
    for f in files:
        try:
            parts.append(f.read_text(encoding="utf-8"))
        except UnicodeDecodeError as e:
            raise ValueError(f"{f} is not UTF-8 text: {e.reason} at byte {e.start} "
                             "(convert it, e.g. iconv -t utf-8)") from None
    text = "\n\n".join(parts)
    if not text.strip():
        raise ValueError(f"the corpus at data.path={path} is empty (point it at a file with text)")
    return text


def encode_cached(text: str, tokenizer: Tokenizer, cache_dir: str | Path) -> np.ndarray:
    """Token ids of `text`, read from (or written once to) a memmap keyed by text and tokenizer."""
    key = hashlib.sha256(repr(tokenizer_state(tokenizer)).encode() + text.encode()).hexdigest()
    dtype = np.uint16 if tokenizer.vocab_size <= 2**16 else np.uint32
    path = Path(cache_dir) / f"tokens-{tokenizer.name}-{key[:20]}.{np.dtype(dtype).name}"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        ids = np.asarray(tokenizer.encode(text), dtype=dtype)
        # Write aside and rename: a crash or a concurrent rank never leaves half a cache.
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        ids.tofile(tmp)
        os.replace(tmp, path)
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


def unigram_baseline(train_ids: np.ndarray, val_ids: np.ndarray, vocab_size: int) -> float:
    """Validation cross-entropy (nats) of an add-one unigram model fit on the training ids."""
    counts = np.bincount(train_ids, minlength=vocab_size).astype(np.float64) + 1.0
    logp = np.log(counts / counts.sum())
    return float(-logp[np.asarray(val_ids, dtype=np.int64)].mean())


class TextDataModule(L.LightningDataModule):
    """Tokenised corpus split by a contiguous fraction into training and validation windows."""

    def __init__(
        self,
        name: str = "python_docs",
        path: str | None = None,
        tokenizer: str = "gpt2",
        context_length: int = 128,
        batch_size: int = 16,
        val_fraction: float = 0.1,
        stride: int | None = None,
        num_workers: int = 0,
        cache_dir: str = "data/cache",
        seed: int = 0,
        url: str | None = None,
    ):
        super().__init__()
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"data.val_fraction={val_fraction} must be between 0 and 1 (e.g. 0.1)")
        if name not in CORPORA:
            raise ValueError(f"unknown corpus data.name={name!r} (use one of {', '.join(CORPORA)})")
        if tokenizer not in TOKENIZERS:
            raise ValueError(
                f"unknown data.tokenizer={tokenizer!r} (use one of {', '.join(TOKENIZERS)})"
            )
        self.name, self.path, self.tokenizer_name = name, path, tokenizer
        self.context_length, self.batch_size = context_length, batch_size
        self.val_fraction, self.num_workers, self.cache_dir = val_fraction, num_workers, cache_dir
        self.stride = stride or context_length  # default: windows side by side, no overlap
        self.seed, self.url = seed, url
        self.tokenizer: Tokenizer | None = None

    def load(self) -> None:
        """Read, tokenise (or hit the cache) and split; safe to call more than once."""
        if self.tokenizer is not None:
            return
        text = load_text(self.name, self.path, self.cache_dir, self.url)
        tok = get_tokenizer(self.tokenizer_name, text=text)
        ids = encode_cached(text, tok, self.cache_dir)
        n_val = int(len(ids) * self.val_fraction)
        self.train_ids, self.val_ids = ids[: len(ids) - n_val], ids[len(ids) - n_val :]
        self.train_set = TokenWindows(self.train_ids, self.context_length, self.stride)
        # Validation windows never overlap, so each token is scored once.
        self.val_set = TokenWindows(self.val_ids, self.context_length, self.context_length)
        need = 2 * (self.context_length + 1)
        if len(self.train_set) == 0 or len(self.val_set) == 0:
            raise ValueError(
                f"the corpus has {len(ids)} tokens: too short for one training and one validation "
                f"window of {self.context_length + 1} tokens with val_fraction={self.val_fraction} "
                f"(use a longer text, or lower model.context_length; need well over {need} tokens)"
            )
        self.tokenizer = tok

    def setup(self, stage: str | None = None) -> None:
        self.load()

    def unigram_baseline(self) -> float:
        self.load()
        return unigram_baseline(self.train_ids, self.val_ids, self.tokenizer.vocab_size)

    def train_dataloader(self) -> DataLoader:
        t = self.trainer
        rank, world = (t.global_rank, t.world_size) if t is not None else (0, 1)
        sampler = ResumableSampler(len(self.train_set), self.batch_size, self.seed, rank, world)
        if t is not None:  # resuming: skip exactly the samples the finished steps consumed
            sampler.start = t.global_step * t.accumulate_grad_batches * self.batch_size
        return self._loader(self.train_set, sampler=sampler)

    def val_dataloader(self) -> DataLoader:
        # Each rank scores every world_size-th window (no padding, no duplicates): the union is
        # the whole validation set, and the token-weighted mean across ranks is exact.
        t = self.trainer
        rank, world = (t.global_rank, t.world_size) if t is not None else (0, 1)
        return self._loader(self.val_set, sampler=range(rank, len(self.val_set), world))

    def _loader(self, dataset: Dataset, sampler: Sampler | None = None) -> DataLoader:
        on_gpu = self.trainer is not None and self.trainer.strategy.root_device.type == "cuda"
        return DataLoader(
            dataset, batch_size=self.batch_size, sampler=sampler,
            num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
            pin_memory=on_gpu,
            # A loader of its own draws its worker seed from this, not from the global RNG,
            # which training's dropout must find in the same state after a resume.
            generator=torch.Generator().manual_seed(self.seed),
        )

