"""Token shards: a split's tokens in files of at most `SHARD_TOKENS` each, every one written under a
temporary name and renamed only once whole, listed (with its tokens and the UTF-8 bytes of text
they stand for) in an index written last, with how often each token occurs (counted as the
shards are written, a piece at a time); read back as one sequence by memmap, each file's size
checked against the index first."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SHARD_TOKENS = 2**26  # 64 Mi tokens: 128 MiB of uint16 per shard


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 where every id fits, else uint32."""
    return np.dtype(np.uint16 if vocab_size <= 2**16 else np.uint32)


@dataclass(frozen=True)
class Shard:
    """One shard file: its name in the corpus folder, its tokens and their bytes of text."""

    name: str
    tokens: int
    bytes: int


class ShardWriter:
    """Appends tokens to `<prefix>-00000.<dtype>`, `-00001`, ..., at most `shard_tokens` each;
    a shard takes its name only once it is whole (a crash leaves a `.tmp`, never a short shard
    under a real name). `token_bytes[id]`: the UTF-8 bytes each token stands for; `counts[id]`:
    how often it was written."""

    def __init__(self, folder: Path, prefix: str, dtype: np.dtype, token_bytes: np.ndarray,
                 shard_tokens: int = SHARD_TOKENS):
        self.folder, self.prefix, self.dtype = folder, prefix, dtype
        self.token_bytes, self.shard_tokens = token_bytes, shard_tokens
        self.counts = np.zeros(len(token_bytes), dtype=np.int64)
        self.shards: list[Shard] = []
        self._file = None
        self._tokens = self._bytes = 0

    def add(self, ids: np.ndarray) -> None:
        ids = ids.astype(self.dtype, copy=False)
        while len(ids):
            if self._file is None:
                self._file = open(self._path(temporary=True), "wb")  # noqa: SIM115 (closed in _close)
            room = self.shard_tokens - self._tokens
            part, ids = ids[:room], ids[room:]
            part.tofile(self._file)
            self.counts += np.bincount(part, minlength=len(self.counts))
            self._tokens += len(part)
            self._bytes += int(self.token_bytes[part].sum())
            if self._tokens == self.shard_tokens:
                self._close()

    def finish(self) -> list[Shard]:
        """Close the last shard (an empty split gets one empty shard) and list them all."""
        if self._file is not None or not self.shards:
            if self._file is None:
                self._file = open(self._path(temporary=True), "wb")  # noqa: SIM115
            self._close()
        return self.shards

    def _path(self, temporary: bool = False) -> Path:
        name = f"{self.prefix}-{len(self.shards):05d}.{self.dtype.name}"
        return self.folder / (name + ".tmp" if temporary else name)

    def _close(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None
        os.replace(self._path(temporary=True), self._path())
        self.shards.append(Shard(self._path().name, self._tokens, self._bytes))
        self._tokens = self._bytes = 0


def damaged_shard(folder: Path, shards: list[Shard], dtype: np.dtype) -> str | None:
    """Why these shards cannot be mapped as the index lists them (a file missing, or not the
    size its tokens make); None when every one is whole."""
    for s in shards:
        path, want = folder / s.name, s.tokens * np.dtype(dtype).itemsize
        if not path.is_file():
            return f"{s.name} is missing"
        if path.stat().st_size != want:
            return f"{s.name} is {path.stat().st_size:,} bytes, not {want:,}"
    return None


class ShardedTokens:
    """The shards of one split as one sequence of token ids: `len`, slices (a window may span
    two shards). Check them first (`damaged_shard`)."""

    def __init__(self, folder: Path, shards: list[Shard], dtype: np.dtype):
        self.shards, self.dtype = shards, np.dtype(dtype)
        self._maps = [np.memmap(folder / s.name, dtype=self.dtype, mode="r") if s.tokens
                      else np.zeros(0, dtype=self.dtype) for s in shards]
        self._starts = np.cumsum([0] + [s.tokens for s in shards])

    def __len__(self) -> int:
        return int(self._starts[-1])

    @property
    def bytes(self) -> int:
        """UTF-8 bytes of the text these tokens stand for."""
        return sum(s.bytes for s in self.shards)

    def __getitem__(self, key: slice | int) -> np.ndarray | np.integer:
        if isinstance(key, int | np.integer):
            i = int(key) + len(self) if key < 0 else int(key)
            if not 0 <= i < len(self):
                raise IndexError(key)
            k = int(np.searchsorted(self._starts, i, side="right")) - 1
            return self._maps[k][i - self._starts[k]]
        start, stop, step = key.indices(len(self))
        if step != 1:
            raise ValueError("token shards slice with step 1 only")
        first = int(np.searchsorted(self._starts, start, side="right")) - 1
        parts = []
        for k in range(max(first, 0), len(self._maps)):
            a, b = self._starts[k], self._starts[k + 1]
            if a >= stop:
                break
            parts.append(self._maps[k][max(start, a) - a : min(stop, b) - a])
        if not parts:
            return np.zeros(0, dtype=self.dtype)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)
