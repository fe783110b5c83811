"""A corpus prepared for training in bounded memory: its text read as a stream (`corpus.read`),
split into training and validation text, a tokenizer chosen or learnt (a BPE from an even sample
of the training text), the text encoded on every core into token shards (`shards`) with an index
written last. Everything goes into a folder of the cache named after the text's sha256 and the
tokenizer settings, renamed into place whole; a second run reads it back. One process prepares
a corpus; others that want it wait for it.

    prepare(cfg) -> Prepared(tokenizer, train, val)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinygpt.atomic import atomic_write
from tinygpt.config import DataConfig
from tinygpt.corpus import SEPARATOR, Source, cache_path, read, sources
from tinygpt.errors import UsageError
from tinygpt.shards import Shard, ShardedTokens, ShardWriter, token_dtype
from tinygpt.tokenizer import (
    CharTokenizer,
    TiktokenTokenizer,
    Tokenizer,
    TokenizerName,
    get_tokenizer,
    tokenizer_from_state,
    tokenizer_state,
)

FORMAT = 1  # of the prepared folder: a change here prepares every corpus again
ENCODE_CHARS = 1 << 22  # characters per encoding call (4 Mi); a batch holds one per thread
# A BPE learns from at most this many characters of the training text (32 Mi), in SAMPLE_PIECES
# pieces spread evenly over it: its time and memory stay bounded for any corpus. A smaller text
# is learnt from whole, as one piece.
BPE_SAMPLE_CHARS = 1 << 25
SAMPLE_PIECES = 64
STALE_LOCK_S = 120  # a lock not touched for this long belongs to a process that is gone
# Where encoding may cut the text: before a newline that follows a letter or a digit. No
# pre-token of GPT-2's or of the trained BPE's pattern spans such a place, and a piece never
# ends in whitespace (which both patterns read differently at the end of a text), so the pieces
# encode to exactly the tokens of the whole (tests/test_prepare.py).
CUT = re.compile(r"(?<=[^\W_])\n")


@dataclass
class Prepared:
    """A prepared corpus: its tokenizer and its training and validation tokens."""

    name: str
    tokenizer: Tokenizer
    train: ShardedTokens
    val: ShardedTokens
    folder: Path


def prepare(cfg: DataConfig, say: Callable[[str], None] = print) -> Prepared:
    """The prepared corpus cfg names: read back from the cache, or prepared into it now."""
    parts = sources(cfg.name, cfg.path, cfg.cache_dir, cfg.url)
    cache = cache_path(cfg.cache_dir)
    folder = cache / f"corpus-{cfg.tokenizer.value}-{identity(parts, cfg)[:20]}"
    if not (folder / "index.json").exists():
        with exclusive(folder.with_suffix(".lock"), lambda: (folder / "index.json").exists()) \
                as mine:
            if mine:
                build(parts, cfg, folder, say)
    return load(folder, cfg.name.value)


def identity(parts: dict[str, list[Source]], cfg: DataConfig) -> str:
    """sha256 of the corpus' bytes and of every setting its tokens depend on; a download must
    hash to its pinned (or first-recorded) sha256."""
    digest = hashlib.sha256(json.dumps({
        "format": FORMAT, "tokenizer": cfg.tokenizer.value, "parts": sorted(parts),
        "vocab_size": cfg.vocab_size if cfg.tokenizer == TokenizerName.bpe else None,
        "sample": BPE_SAMPLE_CHARS if cfg.tokenizer == TokenizerName.bpe else None,
        "val_fraction": cfg.val_fraction if "text" in parts else None}).encode())
    for part in sorted(parts):
        for source in parts[part]:
            own = hashlib.sha256()
            for block in source.blocks():
                own.update(block)
            if source.sha256 is not None and own.hexdigest() != source.sha256:
                raise UsageError(f"{source.path} has changed since it was downloaded: sha256 "
                                 f"{own.hexdigest()[:12]}... is not {source.sha256[:12]}... "
                                 f"(delete it to download it again)")
            digest.update(own.digest())
    return digest.hexdigest()


class exclusive:  # noqa: N801 (used as a context manager)
    """`with exclusive(lock, done) as mine:` mine is True in the one process that holds the lock
    (a file it touches every few seconds while it holds it); the others wait until `done()`
    (then mine is False), or take over a lock nobody has touched for STALE_LOCK_S (its holder
    was killed). A file, not a pid: ranks on other machines share the cache folder too."""

    def __init__(self, lock: Path, done: Callable[[], bool]):
        self.lock, self.done = lock, done
        self.held = threading.Event()

    def __enter__(self) -> bool:
        self.lock.parent.mkdir(parents=True, exist_ok=True)
        while True:
            try:
                os.close(os.open(self.lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                if self.done():
                    return False
                with contextlib.suppress(FileNotFoundError):
                    if time.time() - self.lock.stat().st_mtime > STALE_LOCK_S:
                        self.lock.unlink()
                time.sleep(0.2)
                continue
            self.held.set()
            threading.Thread(target=self._heartbeat, daemon=True).start()
            return not self.done()  # it may have finished just before the lock was free

    def _heartbeat(self) -> None:
        while self.held.is_set():
            with contextlib.suppress(FileNotFoundError):
                os.utime(self.lock)  # never creates it again once released
            time.sleep(5)

    def __exit__(self, *exc: object) -> None:
        if self.held.is_set():
            self.held.clear()
            self.lock.unlink(missing_ok=True)


def build(parts: dict[str, list[Source]], cfg: DataConfig, folder: Path,
          say: Callable[[str], None]) -> None:
    """Prepare the corpus into a temporary folder, then rename it to `folder` whole."""
    work = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(work, ignore_errors=True)  # an interrupted earlier preparation
    work.mkdir(parents=True)
    start = time.perf_counter()
    try:
        texts = split(parts, cfg.val_fraction)
        tok, sample = learn_tokenizer(parts, cfg, texts)
        progress = Progress(sum(s.size for p in parts.values() for s in p), say)
        token_bytes = np.asarray(tok.token_bytes())
        index = {"format": FORMAT, "name": cfg.name.value, "tokenizer": tokenizer_state(tok),
                 "dtype": token_dtype(tok.vocab_size).name, "bpe_sample": sample}
        for split_name in ("train", "val"):
            writer = ShardWriter(work, split_name, token_dtype(tok.vocab_size), token_bytes)
            for ids in encode(tok, texts[split_name](), progress):
                writer.add(ids)
            index[split_name] = [vars(s) for s in writer.finish()]
        progress.finish()
        with atomic_write(work / "index.json") as f:
            f.write(json.dumps(index, indent=1).encode())
        os.replace(work, folder)
    except OSError as e:
        shutil.rmtree(work, ignore_errors=True)
        raise UsageError(f"cannot write the prepared corpus in {folder.parent}: {e.strerror} "
                         "(free some space, or set data.cache_dir to a disk with room)") from None
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    done = load(folder, cfg.name.value)
    seconds = time.perf_counter() - start
    tokens = len(done.train) + len(done.val)
    nbytes = done.train.bytes + done.val.bytes
    say(f"prepared {cfg.name.value}: {nbytes / 1e6:,.1f} MB of text in {seconds:.1f} s "
        f"({nbytes / 1e6 / max(seconds, 1e-9):,.1f} MB/s): {len(done.train):,} train + "
        f"{len(done.val):,} val tokens, {nbytes / max(tokens, 1):.2f} bytes per token, "
        f"{len(done.train.shards) + len(done.val.shards)} shards, in {folder}")


def load(folder: Path, name: str) -> Prepared:
    index = json.loads((folder / "index.json").read_text())
    tokens = {s: ShardedTokens(folder, [Shard(**x) for x in index[s]], index["dtype"])
              for s in ("train", "val")}
    return Prepared(name, tokenizer_from_state(index["tokenizer"]), tokens["train"],
                    tokens["val"], folder)


def split(parts: dict[str, list[Source]], val_fraction: float
          ) -> dict[str, Callable[[], Iterator[str]]]:
    """Each split's text as a fresh stream of pieces: a corpus' own parts, or its text cut at
    the character that leaves `val_fraction` of it for validation (counted in a first pass, as
    the whole text was cut when it was read at once)."""
    if "text" not in parts:
        return {s: (lambda s=s: read(parts[s])) for s in ("train", "val")}
    total = sum(len(piece) for piece in read(parts["text"]))
    cut = total - int(total * val_fraction)

    def side(keep_before: bool) -> Iterator[str]:
        seen = 0
        for piece in read(parts["text"]):
            lo, hi = seen, seen + len(piece)
            seen = hi
            if keep_before and lo < cut:
                yield piece[: cut - lo]
            elif not keep_before and hi > cut:
                yield piece[max(0, cut - lo):]

    return {"train": lambda: side(True), "val": lambda: side(False)}


def learn_tokenizer(parts: dict[str, list[Source]], cfg: DataConfig,
                    texts: dict[str, Callable[[], Iterator[str]]]) -> tuple[Tokenizer, dict]:
    """The tokenizer and, for a BPE, what it learnt from: characters of the whole text (every
    one must be encodable), GPT-2's, or a BPE of the training text (a sample of a large one)."""
    if cfg.tokenizer == TokenizerName.char:
        alphabet: set[str] = set()
        for parts_of in parts.values():
            for piece in read(parts_of):
                alphabet.update(piece)
        return CharTokenizer("".join(alphabet)), {}
    if cfg.tokenizer == TokenizerName.gpt2:
        return get_tokenizer("gpt2"), {}
    total = sum(len(p) for p in texts["train"]())
    if total <= BPE_SAMPLE_CHARS:
        text, sample = "".join(texts["train"]()), {"characters": total, "pieces": 1}
    else:
        text, sample = even_sample(texts["train"](), total), {
            "characters": BPE_SAMPLE_CHARS, "pieces": SAMPLE_PIECES, "of": total}
    tok = get_tokenizer("bpe", text=text, vocab_size=cfg.vocab_size,
                        cache_dir=cache_path(cfg.cache_dir))
    return tok, sample


def even_sample(pieces: Iterator[str], total: int) -> str:
    """SAMPLE_PIECES stretches of the text, BPE_SAMPLE_CHARS in all, starting at evenly spaced
    characters, each from the start of a line; joined by SEPARATOR."""
    size = BPE_SAMPLE_CHARS // SAMPLE_PIECES
    starts = [k * total // SAMPLE_PIECES for k in range(SAMPLE_PIECES)]
    out, buffer, at = [], "", 0  # `buffer` holds the text from character `at` on
    for piece in pieces:
        buffer += piece
        while starts and at + len(buffer) >= starts[0] + 2 * size:
            i = starts.pop(0) - at
            line = buffer.find("\n", i)
            begin = i if at + i == 0 or line < 0 or line >= i + size else line + 1
            out.append(buffer[begin : begin + size])
        keep = (starts[0] - at) if starts else len(buffer)
        buffer, at = buffer[keep:], at + keep
    if starts:
        out.append(buffer[: size])  # the last stretch, where the text ends early
    return SEPARATOR.join(out)


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
    """The pieces regrouped into chunks of about ENCODE_CHARS, cut only at CUT places (a text
    with none for a long stretch is cut where one is found)."""
    buffer = ""
    for piece in pieces:
        buffer += piece
        while len(buffer) >= ENCODE_CHARS:
            last = None
            for last in CUT.finditer(buffer, ENCODE_CHARS // 2):
                if last.start() >= ENCODE_CHARS:
                    break
            if last is None:
                break  # no place to cut yet: read on
            yield buffer[: last.start()]
            buffer = buffer[last.start() :]
    if buffer:
        yield buffer


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
