"""A corpus prepared for training in bounded memory: its text read as a stream (`corpus.read`),
split into training and validation text, a tokenizer chosen or learnt (a BPE from an even sample
of the training text), the text encoded on every core into token shards (`shards`) with an index
written last, with each split's token counts. Everything goes into a folder of the cache named
after the text's sha256 and the tokenizer settings, renamed into place whole; a second run reads
it back, a damaged one (a bad index, a shard of the wrong size) is prepared again. One process
prepares a corpus; others that want it wait for it. A corpus too short for the run's windows is
refused before anything is written to the cache.

    prepare(cfg) -> Prepared(tokenizer, train, val)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sized
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinygpt.atomic import atomic_write, exclusive
from tinygpt.data.config import DataConfig
from tinygpt.data.corpus import SEPARATOR, Source, cache_path, read, sources
from tinygpt.data.encoding import Progress, encode
from tinygpt.data.shards import Shard, ShardedTokens, ShardWriter, damaged_shard, token_dtype
from tinygpt.data.tokenizer import (
    CharTokenizer,
    Tokenizer,
    TokenizerName,
    bpe_file,
    get_tokenizer,
    read_bpe,
    tokenizer_from_state,
    tokenizer_state,
    train_bpe,
    write_bpe,
)
from tinygpt.errors import UsageError

FORMAT = 2  # of the prepared folder: a change here prepares every corpus again (2: counts)
# A BPE learns from at most this many characters of the training text (32 Mi), in SAMPLE_PIECES
# pieces spread evenly over it: its time and memory stay bounded for any corpus. A smaller text
# is learnt from whole, as one piece.
BPE_SAMPLE_CHARS = 1 << 25
SAMPLE_PIECES = 64



@dataclass
class Prepared:
    """A prepared corpus: its tokenizer, its training and validation tokens, and how often each
    token occurs in each split (`counts["train"][id]`)."""

    name: str
    tokenizer: Tokenizer
    train: ShardedTokens
    val: ShardedTokens
    folder: Path
    counts: dict[str, np.ndarray]


def prepare(cfg: DataConfig, say: Callable[[str], None] = print, shortest: int = 1,
            tokenizer: Tokenizer | None = None) -> Prepared:
    """The prepared corpus cfg names: read back from the cache, or prepared into it now.
    `shortest`: the fewest tokens each split must hold (a window's), else a UsageError and
    nothing cached. `tokenizer`: one to encode with (a pretrained model's) instead of
    cfg.tokenizer's, of the same kind."""
    parts = sources(cfg.name, cfg.path, cfg.cache_dir, cfg.url)
    key = identity(parts, cfg, tokenizer)[:20]
    folder = cache_path(cfg.cache_dir) / f"corpus-{cfg.tokenizer.value}-{key}"
    if damage(folder) is not None:
        try:
            with exclusive(folder.with_suffix(".lock"), lambda: damage(folder) is None) as mine:
                if mine:
                    if folder.exists():
                        say(f"{folder} is damaged ({damage(folder)}): preparing it again")
                        shutil.rmtree(folder)
                    build(parts, cfg, folder, say, shortest, tokenizer)
        except OSError as e:
            raise UsageError(f"cannot write the prepared corpus in {folder.parent}: "
                             f"{e.strerror or e} (set data.cache_dir to a folder you can "
                             "write)") from None
    prepared = load(folder, cfg.name.value)
    too_short(prepared.train, prepared.val, shortest, cfg)
    return prepared


def damage(folder: Path) -> str | None:
    """What is wrong with a prepared folder ("no index" when there is none); None when it is
    whole: an index of this format whose shards are all there, each of its size."""
    try:
        index = json.loads((folder / "index.json").read_text())
        if index.get("format") != FORMAT:
            return f"format {index.get('format')}, not {FORMAT}"
        return next((why for split in ("train", "val") if (why := damaged_shard(
            folder, [Shard(**x) for x in index[split]], index["dtype"]))), None)
    except FileNotFoundError:
        return "no index"
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"unreadable index: {type(e).__name__}"


def too_short(train: Sized, val: Sized, shortest: int, cfg: DataConfig) -> None:
    """A UsageError for a split with fewer than `shortest` tokens (a window's)."""
    if len(train) >= shortest and len(val) >= shortest:
        return
    raise UsageError(
        f"the corpus has {len(train) + len(val)} tokens: too short for one training and one "
        f"validation window of {shortest} tokens with val_fraction={cfg.val_fraction} (use a "
        f"longer text, or lower model.context_length; need well over {2 * shortest} tokens)")


def identity(parts: dict[str, list[Source]], cfg: DataConfig,
             tokenizer: Tokenizer | None = None) -> str:
    """sha256 of the corpus' bytes and of every setting its tokens depend on (a given
    tokenizer's whole state); a download must hash to its pinned (or first-recorded) sha256."""
    learnt = tokenizer is None and cfg.tokenizer == TokenizerName.bpe
    settings = {
        "format": FORMAT, "tokenizer": cfg.tokenizer.value, "parts": sorted(parts),
        "vocab_size": cfg.vocab_size if learnt else None,
        "sample": BPE_SAMPLE_CHARS if learnt else None,
        "val_fraction": cfg.val_fraction if "text" in parts else None}
    if tokenizer is not None:  # only then: the folders prepared before keep their names
        settings["given"] = hashlib.sha256(json.dumps(tokenizer_state(tokenizer)).encode()
                                           ).hexdigest()
    digest = hashlib.sha256(json.dumps(settings).encode())
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


def build(parts: dict[str, list[Source]], cfg: DataConfig, folder: Path,
          say: Callable[[str], None], shortest: int = 1, given: Tokenizer | None = None
          ) -> None:
    """Prepare the corpus into a temporary folder, then rename it to `folder` whole; a corpus
    whose splits hold fewer than `shortest` tokens is refused before the rename."""
    work = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(work, ignore_errors=True)  # an interrupted earlier preparation
    work.mkdir(parents=True)
    start = time.perf_counter()
    try:
        texts, train_chars = split(parts, cfg.val_fraction)
        tok, sample, keep_tokenizer = (given, {}, lambda: None) if given else learn_tokenizer(
            parts, cfg, texts, train_chars)
        progress = Progress(sum(s.size for p in parts.values() for s in p), say)
        token_bytes = np.asarray(tok.token_bytes())
        index = {"format": FORMAT, "name": cfg.name.value, "tokenizer": tokenizer_state(tok),
                 "dtype": token_dtype(tok.vocab_size).name, "bpe_sample": sample, "counts": {}}
        for split_name in ("train", "val"):
            writer = ShardWriter(work, split_name, token_dtype(tok.vocab_size), token_bytes)
            for ids in encode(tok, texts[split_name](), progress):
                writer.add(ids)
            index[split_name] = [vars(s) for s in writer.finish()]
            index["counts"][split_name] = writer.counts.tolist()
        progress.finish()
        tokens = {k: sum(s["tokens"] for s in index[k]) for k in ("train", "val")}
        too_short(range(tokens["train"]), range(tokens["val"]), shortest, cfg)
        keep_tokenizer()
        with atomic_write(work / "index.json") as f:
            f.write(json.dumps(index, indent=1).encode())
        os.replace(work, folder)
    except OSError as e:
        shutil.rmtree(work, ignore_errors=True)
        raise UsageError(f"cannot write the prepared corpus in {folder.parent}: {e.strerror or e} "
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
    """A whole prepared folder (`damage` found nothing wrong with it) read back."""
    index = json.loads((folder / "index.json").read_text())
    tokens = {s: ShardedTokens(folder, [Shard(**x) for x in index[s]], index["dtype"])
              for s in ("train", "val")}
    counts = {s: np.asarray(c, dtype=np.int64) for s, c in index["counts"].items()}
    return Prepared(name, tokenizer_from_state(index["tokenizer"]), tokens["train"],
                    tokens["val"], folder, counts)


def split(parts: dict[str, list[Source]], val_fraction: float
          ) -> tuple[dict[str, Callable[[], Iterator[str]]], int | None]:
    """Each split's text as a fresh stream of pieces, and the training text's length where it
    is known: a corpus' own parts, or its text cut at the character that leaves `val_fraction`
    of it for validation (counted in a first pass, as the whole text was cut when it was read
    at once)."""
    if "text" not in parts:
        return {s: (lambda s=s: read(parts[s])) for s in ("train", "val")}, None
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

    return {"train": lambda: side(True), "val": lambda: side(False)}, cut


def learn_tokenizer(parts: dict[str, list[Source]], cfg: DataConfig,
                    texts: dict[str, Callable[[], Iterator[str]]], train_chars: int | None
                    ) -> tuple[Tokenizer, dict, Callable[[], None]]:
    """The tokenizer; for a BPE, what it learnt from; and what keeps a newly learnt BPE in the
    cache (called once the corpus is accepted). Characters of the whole text (every one must be
    encodable), GPT-2's, or a BPE of the training text (a sample of a large one)."""
    if cfg.tokenizer == TokenizerName.char:
        alphabet: set[str] = set()
        for parts_of in parts.values():
            for piece in read(parts_of):
                alphabet.update(piece)
        return CharTokenizer("".join(alphabet)), {}, lambda: None
    if cfg.tokenizer == TokenizerName.gpt2:
        return get_tokenizer("gpt2"), {}, lambda: None
    total = train_chars if train_chars is not None else sum(len(p) for p in texts["train"]())
    if total <= BPE_SAMPLE_CHARS:
        text, sample = "".join(texts["train"]()), {"characters": total, "pieces": 1}
    else:
        text, sample = even_sample(texts["train"](), total), {
            "characters": BPE_SAMPLE_CHARS, "pieces": SAMPLE_PIECES, "of": total}
    path = bpe_file(text, cfg.vocab_size, cache_path(cfg.cache_dir))
    tok = read_bpe(path)
    if tok is not None:
        return tok, sample, lambda: None
    tok = train_bpe(text, cfg.vocab_size)
    return tok, sample, lambda: write_bpe(tok, path)


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
