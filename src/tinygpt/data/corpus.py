"""Where the text comes from: the embedded corpus, your files, or a download (its sha256 pinned,
or recorded at the first download and checked after); the cache folder downloads and prepared
corpora live in; and the text read as a stream of checked pieces, never all at once."""

from __future__ import annotations

import codecs
import glob
import hashlib
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from tinygpt.atomic import atomic_write
from tinygpt.errors import UsageError, not_utf8, parse_choice

READ_BLOCK = 1 << 23  # bytes read from a file at a time (8 MiB)
SEPARATOR = "\n\n"  # between two files of a corpus


@dataclass(frozen=True)
class Download:
    """A file of a preset corpus: its address, and the sha256 of the bytes we train on (None: no
    public source states one; the first download records it, and every later use checks it)."""

    url: str
    sha256: str | None


# Downloadable corpora, by the part each file is: "text" (split by data.val_fraction) or
# "train" and "val" (the corpus' own split, by documents).
PRESETS: dict[str, dict[str, Download]] = {
    "tinyshakespeare": {"text": Download(
        "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
        "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed")},
    "the_verdict": {"text": Download(
        "https://raw.githubusercontent.com/rasbt/LLMs-from-scratch/main/ch02/"
        "01_main-chapter-code/the-verdict.txt",
        "b41e41a68f0398a3154ae69e2e4c0e2694e17fe0d66730536837f1b01935b31f")},
    "tinystories": {  # V2 (GPT-4 stories): about 2.2 GB and 22 MB of text
        "train": Download("https://huggingface.co/datasets/roneneldan/TinyStories/resolve/main/"
                          "TinyStoriesV2-GPT4-train.txt", None),
        "val": Download("https://huggingface.co/datasets/roneneldan/TinyStories/resolve/main/"
                        "TinyStoriesV2-GPT4-valid.txt", None)},
}


class Corpus(str, Enum):
    python_docs = "python_docs"  # Python's reference documentation, shipped with CPython
    text = "text"  # your own: data.path names a file, a folder of .txt files or a glob
    tinyshakespeare = "tinyshakespeare"  # downloaded once, sha256-checked
    the_verdict = "the_verdict"  # downloaded once, sha256-checked
    tinystories = "tinystories"  # downloaded once (2.2 GB), its own validation file


def cache_path(configured: str | Path | None = None) -> Path:
    """Where downloads and token caches live: data.cache_dir, else $TINYGPT_CACHE, else
    $XDG_CACHE_HOME/tinygpt (~/.cache/tinygpt); never relative to the working directory."""
    if configured:
        return Path(configured).expanduser().resolve()
    if os.environ.get("TINYGPT_CACHE"):
        return Path(os.environ["TINYGPT_CACHE"]).expanduser().resolve()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser().resolve() / "tinygpt"


def check_cache(configured: str | Path | None = None) -> None:
    """A UsageError, before anything is written, for a cache folder that cannot be made or
    written: one that is (or lies under) a file, or one this user may not write."""
    cache = cache_path(configured)
    setting = "TINYGPT_CACHE" if not configured and os.environ.get("TINYGPT_CACHE") else \
        "data.cache_dir"
    there = next(p for p in (cache, *cache.parents) if p.exists())
    if not there.is_dir():
        raise UsageError(f"the cache folder {cache} cannot be made: {there} is a file (set "
                         f"{setting} to a folder)")
    if not os.access(there, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write the cache folder {cache} (set {setting} to a folder you "
                         "can write)")


def python_docs_text() -> str:
    """The English text of Python's reference documentation, shipped with every CPython."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[k] for k in sorted(topics))


def text_files(path: str | None) -> list[Path]:
    """The files `path` names: one file, every .txt under a directory, or a glob pattern."""
    if not path:
        return []
    p = Path(path).expanduser()
    if p.is_file():
        return [p]
    if p.is_dir():
        return sorted(f for f in p.rglob("*.txt") if f.is_file())
    return sorted(Path(f) for f in glob.glob(str(p), recursive=True) if Path(f).is_file())


@dataclass(frozen=True)
class Source:
    """One piece of a corpus to read: a file, or text held in memory (the embedded corpus)."""

    name: str
    path: Path | None = None
    text: str | None = None
    sha256: str | None = None  # what its bytes must hash to (a download's)

    @property
    def size(self) -> int:
        return len(self.text.encode()) if self.text is not None else self.path.stat().st_size

    def blocks(self) -> Iterator[bytes]:
        if self.text is not None:
            data = self.text.encode()
            yield from (data[i : i + READ_BLOCK] for i in range(0, len(data), READ_BLOCK))
            return
        try:
            with open(self.path, "rb") as f:
                while block := f.read(READ_BLOCK):
                    yield block
        except OSError as e:
            raise UsageError(f"cannot read {self.path}: {e.strerror or e} (check that the file "
                             "is there and readable)") from None


def sources(name: Corpus | str, path: str | None = None, cache_dir: str | Path | None = None,
            url: str | None = None) -> dict[str, list[Source]]:
    """The corpus' sources by part: {"text": [...]} (split by val_fraction) or {"train": [...],
    "val": [...]} (split by documents). Presets are downloaded here, once."""
    name = parse_choice(Corpus, name, "data.name")
    if name == Corpus.python_docs:
        return {"text": [Source(name.value, text=python_docs_text())]}
    if name == Corpus.text:
        return {"text": [Source(str(f), path=f) for f in text_files(path)]}
    files = PRESETS[name.value]
    return {part: [download(name.value, part, d, cache_path(cache_dir), url, len(files) > 1)]
            for part, d in files.items()}


def read(parts: list[Source]) -> Iterator[str]:
    """The text of these sources, in pieces, joined by SEPARATOR; a UsageError for a file that is
    not UTF-8 text, holds NUL bytes, or (all together) holds no text."""
    seen_text = False
    for k, source in enumerate(parts):
        if k:
            yield SEPARATOR
        decoder, offset = codecs.getincrementaldecoder("utf-8")(), 0
        for final, block in _last_flagged(source.blocks()):
            try:
                piece = decoder.decode(block, final=final)
            except UnicodeDecodeError as e:
                raise not_utf8(source.name, e, offset) from None
            if "\x00" in piece:
                raise UsageError(f"{source.name} looks binary: it holds NUL bytes (give text "
                                 "files)")
            offset += len(block)
            seen_text = seen_text or not piece.isspace() and piece != ""
            yield piece
    if not seen_text:
        where = ", ".join(s.name for s in parts) or "(no file)"
        raise UsageError(f"the corpus at {where} is empty (point it at a file with text)")


def _last_flagged(blocks: Iterator[bytes]) -> Iterator[tuple[bool, bytes]]:
    """(is_last, block) for each block; an empty source is one empty last block."""
    previous = None
    for block in blocks:
        if previous is not None:
            yield False, previous
        previous = block
    yield True, previous if previous is not None else b""


def load_text(name: Corpus | str, path: str | None = None, cache_dir: str | Path | None = None,
              url: str | None = None) -> str:
    """A small corpus as one string (its training and validation text, in that order)."""
    return SEPARATOR.join("".join(read(parts)) for parts in sources(name, path, cache_dir,
                                                                     url).values())


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(READ_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def download(name: str, part: str, d: Download, cache_dir: Path, url: str | None = None,
             several: bool = False, timeout: float = 30) -> Source:
    """A preset's file in cache_dir/corpora, downloaded once (written whole or not at all) and
    checked against its sha256: the pinned one, else the one its first download recorded.
    `url`: a mirror (of the file, or for a preset of several files the folder holding them)."""
    address = d.url if url is None else (f"{url.rstrip('/')}/{d.url.rsplit('/', 1)[1]}"
                                         if several else url)
    dest = cache_dir / "corpora" / (f"{name}-{part}.txt" if several else f"{name}.txt")
    recorded = dest.with_name(dest.name + ".sha256")
    if not dest.exists():
        try:
            with urllib.request.urlopen(address, timeout=timeout) as r, atomic_write(dest) as f:
                digest = hashlib.sha256()
                while chunk := r.read(1 << 16):
                    digest.update(chunk)
                    f.write(chunk)
                got = digest.hexdigest()
                if d.sha256 is not None and got != d.sha256:  # raised inside: never renamed
                    raise UsageError(
                        f"the download of {name} from {address} is corrupt: sha256 {got[:12]}... "
                        f"is not the pinned {d.sha256[:12]}... (try again later, or fetch the "
                        "file yourself and use data.name=text data.path=...)")
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", None) or e
            raise UsageError(
                f"cannot download {name} from {address}: {reason} (offline? save the file "
                "yourself and use data.name=text data.path=/path/to/file.txt)") from None
        if d.sha256 is None:
            with atomic_write(recorded) as f:
                f.write(got.encode())
            print(f"{dest.name}: recorded sha256 {got} (no public source pins one; later uses "
                  "check it)", flush=True)
    pinned = d.sha256 or (recorded.read_text().strip() if recorded.exists() else None)
    return Source(f"{name} ({part})", path=dest, sha256=pinned)
