"""What a run directory is called and holds: its name from its start time and overrides, its
checkpoints, its TensorBoard events, and Hydra's record of its config."""

from __future__ import annotations

import re
from pathlib import Path

EVENTS_GLOB = "events.out.tfevents.*"  # TensorBoard's event files, one per writer
CHECKPOINTS = "checkpoints"
LAST = "last.ckpt"  # the checkpoint a run keeps up to date, in checkpoints/
HYDRA = ".hydra"  # config.yaml and overrides.yaml of the run, written by Hydra


def folder_name(text: str) -> str:
    """A sweep job's folder name from its overrides: a path in a value (data.path=../a/b.txt)
    would otherwise make nested folders, one run spread over several levels."""
    return re.sub(r"[/\\]+", "_", text)


def run_name(time: str, overrides: str = "") -> str:
    """A run's folder: its start time, then what it changed (`14-03-59_model.n_heads=16`), so
    TensorBoard's run list says what each run is."""
    return f"{time}_{folder_name(overrides)}" if overrides else time


def last_checkpoint(run_dir: str | Path) -> Path:
    """Where a run keeps its latest checkpoint."""
    return Path(run_dir) / CHECKPOINTS / LAST


def holds_run(path: Path) -> bool:
    """Whether a directory already holds a training run's checkpoints or TensorBoard events."""
    return (path / CHECKPOINTS).is_dir() or any(path.glob(EVENTS_GLOB))
