"""Reading a run's TensorBoard event files back: scalars by step, and the last text sample."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tinygpt.metrics import SAMPLES, TRAIN_LOSS
from tinygpt.run_dir import EVENTS_GLOB


@dataclass
class RunEvents:
    """Every scalar of a run directory by tag and step, and its last `samples/` text."""

    scalars: dict[str, dict[int, float]] = field(default_factory=dict)
    sample: str | None = None


def read_events(run_dir: str | Path) -> RunEvents:
    """All event files of run_dir, oldest first, so a resumed run's value for a step replaces
    the first attempt's (EventAccumulator on the folder would purge those steps instead)."""
    out = RunEvents()
    files = sorted(Path(run_dir).glob(EVENTS_GLOB), key=lambda p: p.stat().st_mtime)
    for f in files:
        ea = EventAccumulator(str(f), size_guidance={"scalars": 0, "tensors": 0})
        ea.Reload()
        for tag in ea.Tags()["scalars"]:  # a SIGKILL may have lost a file's buffer: no tags
            out.scalars.setdefault(tag, {}).update({e.step: e.value for e in ea.Scalars(tag)})
        for tag in ea.Tags()["tensors"]:
            if tag.startswith(SAMPLES):  # add_text stores samples/text/text_summary
                text = ea.Tensors(tag)[-1].tensor_proto.string_val[0].decode()
                out.sample = text.replace("\n    ", "\n").removeprefix("    ")
    return out


def scalars_by_step(run_dir: str | Path, tag: str) -> dict[int, float]:
    """One tag's values by step over every event file of a run directory."""
    return read_events(run_dir).scalars.get(tag, {})


def train_loss_times(run_dir: str | Path) -> list[tuple[int, float]]:
    """(step, wall clock in seconds since the epoch) of each train loss a run logged, in order:
    where its start-up ends and its wind-down begins."""
    times = []
    for f in Path(run_dir).glob(EVENTS_GLOB):
        ea = EventAccumulator(str(f), size_guidance={"scalars": 0})
        ea.Reload()
        if TRAIN_LOSS in ea.Tags()["scalars"]:
            times += [(e.step, e.wall_time) for e in ea.Scalars(TRAIN_LOSS)]
    if not times:
        raise ValueError(f"{run_dir} logged no {TRAIN_LOSS}")
    return sorted(times)
