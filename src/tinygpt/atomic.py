"""Files that are whole or absent: written beside their target, synced, then renamed over it; and
a lock file that one process at a time holds while it makes one."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


@contextmanager
def atomic_write(path: str | Path) -> Iterator[BinaryIO]:
    """Open a temporary file beside `path` for writing; on success it replaces `path` in one step.

    A crash, a kill or an exception inside the block leaves the old file (or none), never half a
    file: checkpoints, downloads and token caches stay loadable. The rename is made durable by
    syncing the folder too. Each process writes its own temporary (named for this machine and
    its pid), so two processes building the same file at once both end with a whole one; the
    temporary of a process that died mid-write (a SIGKILL leaves it) goes at the next write.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_beside(path)
    try:
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        sync_folder(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


HOST = socket.gethostname().replace("-", "_")  # a temporary's writer: this machine, its pid


def temporary_beside(path: Path) -> Path:
    """This process's temporary name for `path` (a file or a folder), in its folder; the
    temporaries of `path` that processes of this machine left when they died are removed (those
    of other machines sharing the folder are theirs)."""
    prefix = f".{path.name}.tmp{HOST}-"
    for tmp in path.parent.glob(glob.escape(prefix) + "*"):
        pid = tmp.name.removeprefix(prefix)
        if pid.isdigit() and not running(int(pid)):
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)
    return path.with_name(f"{prefix}{os.getpid()}")


def running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def sync_folder(folder: Path) -> None:
    """fsync a folder: a rename inside it survives a power cut (where the OS allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # a platform that cannot open folders (Windows)
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


STALE_LOCK_S = 120  # a lock not touched for this long belongs to a process that is gone


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
