"""Corpora, the token cache, windows of tokens, and the LightningDataModule that serves them."""

from __future__ import annotations

import glob
import hashlib
import os
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from tinygpt.tokenizer import Tokenizer, get_tokenizer, tokenizer_state

CORPORA = ("python_docs", "text")


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


def load_text(name: str, path: str | None = None) -> str:
    """The corpus as one string; raises ValueError with what to do if it cannot be read."""
    if name == "python_docs":
        return python_docs_text()
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
    ):
        super().__init__()
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"data.val_fraction={val_fraction} must be between 0 and 1 (e.g. 0.1)")
        self.name, self.path, self.tokenizer_name = name, path, tokenizer
        self.context_length, self.batch_size = context_length, batch_size
        self.val_fraction, self.num_workers, self.cache_dir = val_fraction, num_workers, cache_dir
        self.stride = stride or context_length  # default: windows side by side, no overlap
        self.seed = seed
        self.tokenizer: Tokenizer | None = None

    def load(self) -> None:
        """Read, tokenise (or hit the cache) and split; safe to call more than once."""
        if self.tokenizer is not None:
            return
        text = load_text(self.name, self.path)
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
        return DataLoader(
            self.train_set, batch_size=self.batch_size, shuffle=True,
            drop_last=len(self.train_set) >= self.batch_size,  # equal batches, if there are enough
            generator=torch.Generator().manual_seed(self.seed), **self._loader_kwargs(),
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.batch_size, **self._loader_kwargs())

    def _loader_kwargs(self) -> dict:
        on_gpu = self.trainer is not None and self.trainer.strategy.root_device.type == "cuda"
        return dict(
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=on_gpu,
        )

