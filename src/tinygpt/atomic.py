"""Files that are whole or absent: written beside their target, synced, then renamed over it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


@contextmanager
def atomic_write(path: str | Path) -> Iterator[BinaryIO]:
    """Open a temporary file beside `path` for writing; on success it replaces `path` in one step.

    A crash, a kill or an exception inside the block leaves the old file (or none), never half a
    file: checkpoints, downloads and token caches stay loadable. Each process writes its own
    temporary, so two processes building the same file at once both end with a whole one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
