"""Text encoded a chunk at a time, on every core, to exactly the tokens the whole text would give;
and the progress line a long encoding prints."""

from __future__ import annotations

import multiprocessing
import os
import re
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor

import numpy as np
import tiktoken

from tinygpt.data.tokenizer import TiktokenTokenizer, Tokenizer

ENCODE_CHARS = 1 << 20  # characters per encoding call (1 Mi)
PROCESS_BYTES = 64 << 20  # a text larger than this is encoded in worker processes
# Where encoding may cut the text: before a newline that follows a letter or a digit. No
# pre-token of GPT-2's or of the trained BPE's pattern spans such a place, and a piece never
# ends in whitespace (which both patterns read differently at the end of a text), so the pieces
# encode to exactly the tokens of the whole (tests/test_prepare.py).
CUT = re.compile(r"[^\W_]\n")  # matched from the letter or digit; the cut is at the newline


def encode(tok: Tokenizer, pieces: Iterator[str], progress: Progress) -> Iterator[np.ndarray]:
    """The text's token ids, a chunk at a time: cut where the tokens of the pieces are those
    of the whole (CUT); a large text's chunks encoded by one worker process per core."""
    workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    if not (isinstance(tok, TiktokenTokenizer) and workers > 1
            and progress.total > PROCESS_BYTES):
        for chunk in chunks(pieces):
            ids = ids_of(tok, chunk)
            progress.advance(len(chunk.encode()))
            yield ids
        return
    # Processes, not threads: on the AMX Xeon's 2 cores two processes encode 2.0x as fast as
    # one call, two of tiktoken's threads 1.3-1.5x. Chunks go in as they are cut and come out in
    # order, a few in flight, so neither worker waits for the reading and writing between them.
    spawn = multiprocessing.get_context("spawn")  # no fork of a process that holds torch
    with ProcessPoolExecutor(workers, mp_context=spawn, initializer=start_worker,
                             initargs=(tok.encoding,)) as pool:
        in_flight: deque[tuple[int, Future[np.ndarray]]] = deque()
        for chunk in chunks(pieces):
            in_flight.append((len(chunk.encode()), pool.submit(worker_ids, chunk)))
            if len(in_flight) > 2 * workers:
                yield done(in_flight.popleft(), progress)
        while in_flight:
            yield done(in_flight.popleft(), progress)


def ids_of(tok: Tokenizer, chunk: str) -> np.ndarray:
    """One chunk's token ids, in this process."""
    if isinstance(tok, TiktokenTokenizer):
        return tiktoken_ids(tok.encoding, chunk)
    return np.asarray(tok.encode(chunk), dtype=np.int64)  # characters


def tiktoken_ids(encoding: tiktoken.Encoding, chunk: str) -> np.ndarray:
    # Straight into an array, not a list of Python ints. No special tokens: "<|endoftext|>" in
    # a corpus is text, as encode_ordinary reads it.
    return encoding.encode_to_numpy(chunk, allowed_special=set(), disallowed_special=())


_worker_encoding: tiktoken.Encoding | None = None  # a worker process's copy of the tokenizer


def start_worker(encoding: tiktoken.Encoding) -> None:
    global _worker_encoding
    _worker_encoding = encoding


def worker_ids(chunk: str) -> np.ndarray:
    assert _worker_encoding is not None
    return tiktoken_ids(_worker_encoding, chunk)


def done(item: tuple[int, Future[np.ndarray]], progress: Progress) -> np.ndarray:
    nbytes, future = item
    ids = future.result()
    progress.advance(nbytes)
    return ids


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
