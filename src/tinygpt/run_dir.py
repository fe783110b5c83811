"""What a run directory is called and holds: its name from its start time and overrides, its
checkpoints, its TensorBoard events and the record of its config; and what a run added to it,
taken back when the run is refused."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from pathlib import Path

from tinygpt.atomic import atomic_write

EVENTS_GLOB = "events.out.tfevents.*"  # TensorBoard's event files, one per writer
CHECKPOINTS = "checkpoints"
LAST = "last.ckpt"  # the checkpoint a run keeps up to date, in checkpoints/
HYDRA = ".hydra"  # config.yaml and overrides.yaml of the run, written by Hydra
RESULT = "result.json"  # what the run ended with (tinygpt.training.train.TrainResult)


# What a folder name keeps: letters, digits and the marks Hydra's override parser and a shell both
# take as they are, so a printed `hydra.run.dir=...` or `ckpt=...` pastes back (`=` and `,` would
# be read as an override and a sweep; `/` would nest folders).
_UNSAFE = re.compile(r"[^A-Za-z0-9_.:+@%-]+")
DEFAULT_NAME = "default"  # the folder of runs that change nothing


ITEM_SEP, KEY_SEP = "+", ":"  # how configs/train.yaml joins a run's overrides into its name


def folder_name(text: str, first: frozenset[str] = frozenset()) -> str:
    """A folder name for a run's overrides (`seed:9+model.n_heads:16`), the keys in `first` (what
    a sweep varies) leading; anything a shell or Hydra would not take back becomes `_`."""
    items = text.split(ITEM_SEP) if text else []
    items.sort(key=lambda item: item.split(KEY_SEP, 1)[0] not in first)  # stable: else as given
    return _UNSAFE.sub("_", ITEM_SEP.join(items))


def run_name(time: str, overrides: str = "") -> str:
    """A run's path under outputs/: what it changed first, then when it started
    (`model.n_heads:16/2026-11-29_14-03-59`), so TensorBoard's run names lead with what differs
    and repeats of one setting sit together."""
    return f"{folder_name(overrides) or DEFAULT_NAME}/{time}"


def last_checkpoint(run_dir: str | Path) -> Path:
    """Where a run keeps its latest checkpoint."""
    return Path(run_dir) / CHECKPOINTS / LAST


def holds_run(path: Path) -> bool:
    """Whether a directory already holds a training run's checkpoints or TensorBoard events."""
    return (path / CHECKPOINTS).is_dir() or any(path.glob(EVENTS_GLOB))


class RunFolder:
    """A run's folder as one process changes it, so that a run refused before it trains takes
    back exactly what it added: the folders it made (the run's and any above it), the entries
    that were not in the run folder when it began, and the old bytes of each record file it
    rewrote. Nothing that was there before is removed."""

    def __init__(self, path: str | Path):
        self.path = Path(path).absolute()
        # the folders missing now, deepest first: made by this run if they exist later
        self.missing = [p for p in (self.path, *self.path.parents) if not p.exists()]
        self.before = set(os.listdir(self.path)) if self.path.is_dir() else set()
        self.replaced: dict[Path, bytes] = {}

    def write(self, relative: str, data: bytes) -> None:
        """Write a file of the run's record (`.hydra/config.yaml`), whole or not at all."""
        target = self.path / relative
        if target.is_file() and target not in self.replaced:
            self.replaced[target] = target.read_bytes()
        with atomic_write(target) as f:
            f.write(data)

    def undo(self) -> None:
        """Take back what this run added to its folder since it began."""
        for target, data in self.replaced.items():
            with atomic_write(target) as f:
                f.write(data)
        if self.path.is_dir():
            for name in set(os.listdir(self.path)) - self.before:
                entry = self.path / name
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
        for folder in self.missing:  # deepest first; one another process filled stays
            with contextlib.suppress(OSError):
                folder.rmdir()
