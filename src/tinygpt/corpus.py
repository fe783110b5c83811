"""Where the text comes from: the embedded corpus, your files, or a download checked against a
pinned sha256; and the cache folder downloads and token caches live in."""

from __future__ import annotations

import glob
import hashlib
import os
import urllib.error
import urllib.request
from enum import Enum
from pathlib import Path

from tinygpt.atomic import atomic_write
from tinygpt.errors import UsageError, parse_choice

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
    """The corpus as one string (for name=text, `path` names at least one file: the run's checks
    say so otherwise); raises UsageError with what to do if it cannot be read."""
    name = parse_choice(Corpus, name, "data.name")
    if name == Corpus.python_docs:
        return python_docs_text()
    if name.value in PRESETS:
        return download(name.value, cache_path(cache_dir), url).read_text(encoding="utf-8")
    parts = []
    for f in text_files(path):
        try:
            parts.append(f.read_text(encoding="utf-8"))
        except UnicodeDecodeError as e:
            raise UsageError(f"{f} is not UTF-8 text: {e.reason} at byte {e.start} "
                             "(convert it, e.g. iconv -t utf-8)") from None
    text = "\n\n".join(parts)
    if not text.strip():
        raise UsageError(f"the corpus at data.path={path} is empty (point it at a file with text)")
    return text
