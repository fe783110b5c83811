"""Text encoded a chunk at a time, on every core, to exactly the tokens the whole text would give;
and the progress line a long encoding prints."""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Callable, Iterator

import numpy as np

from tinygpt.tokenizer import TiktokenTokenizer, Tokenizer

ENCODE_CHARS = 1 << 22  # characters per encoding call (4 Mi); a batch holds one per thread
# Where encoding may cut the text: before a newline that follows a letter or a digit. No
# pre-token of GPT-2's or of the trained BPE's pattern spans such a place, and a piece never
# ends in whitespace (which both patterns read differently at the end of a text), so the pieces
# encode to exactly the tokens of the whole (tests/test_prepare.py).
CUT = re.compile(r"[^\W_]\n")  # matched from the letter or digit; the cut is at the newline


def encode(tok: Tokenizer, pieces: Iterator[str], progress: Progress) -> Iterator[np.ndarray]:
    """The text's token ids, a chunk at a time: cut where the tokens of the pieces are those
    of the whole (CUT), encoded a batch of one chunk per core at once (tiktoken's threads)."""
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    batch: list[str] = []
    for chunk in chunks(pieces):
        batch.append(chunk)
        if len(batch) == threads:
            yield from encode_batch(tok, batch, threads, progress)
            batch = []
    if batch:
        yield from encode_batch(tok, batch, threads, progress)


def encode_batch(tok: Tokenizer, batch: list[str], threads: int, progress: Progress
                 ) -> Iterator[np.ndarray]:
    if isinstance(tok, TiktokenTokenizer):
        encoded = tok.encoding.encode_ordinary_batch(batch, num_threads=threads)
    else:  # characters: one lookup per character
        encoded = [tok.encode(chunk) for chunk in batch]
    for chunk, ids in zip(batch, encoded, strict=True):
        progress.advance(len(chunk.encode()))
        yield np.asarray(ids, dtype=np.int64)


def chunks(pieces: Iterator[str]) -> Iterator[str]:
    """The pieces regrouped into chunks of at most about ENCODE_CHARS, each cut at the last CUT
    place before that (a text with none for a long stretch grows a chunk until it has one)."""
    buffer = ""
    for piece in pieces:
        buffer += piece
        while len(buffer) >= ENCODE_CHARS:
            at = cut_before(buffer, ENCODE_CHARS)
            if at is None:
                break  # no place to cut yet: read on
            yield buffer[:at]
            buffer = buffer[at:]
    if buffer:
        yield buffer


def cut_before(text: str, limit: int) -> int | None:
    """The last CUT place in text[:limit] (the index of its newline), else the first after it."""
    at = limit
    while (at := text.rfind("\n", 0, at)) > 0:
        if CUT.match(text, at - 1):
            return at
    found = CUT.search(text, limit)
    return found.start() + 1 if found else None


class Progress:
    """Bytes encoded of `total`: a line that redraws itself on a terminal, a plain line every
    ten seconds in a file or a log; nothing for a preparation shorter than two seconds."""

    def __init__(self, total: int, say: Callable[[str], None]):
        self.total, self.say, self.done, self.drawn = total, say, 0, False
        self.start = self.last = time.perf_counter()

    def advance(self, nbytes: int) -> None:
        self.done += nbytes
        now = time.perf_counter()
        if now - self.start < 2 or now - self.last < (0.5 if sys.stdout.isatty() else 10):
            return
        self.last = now
        rate = self.done / (now - self.start)
        left = max(0, self.total - self.done) / max(rate, 1)
        line = (f"preparing: {self.done / 1e6:,.0f} / {self.total / 1e6:,.0f} MB "
                f"({rate / 1e6:,.1f} MB/s, eta {int(left) // 60}m{int(left) % 60:02d}s)")
        if sys.stdout.isatty():
            print("\r" + line, end="", flush=True)
            self.drawn = True
        else:
            self.say(line)

    def finish(self) -> None:
        if self.drawn:  # the redrawn line ends here
            print(flush=True)
