"""A sweep's runs read back from their folders: each run's overrides, config and logged values,
labelled by what tells it apart from the others."""

from __future__ import annotations

import re
from pathlib import Path

from omegaconf import OmegaConf

from tinygpt import metrics
from tinygpt.lab.report.events import read_events
from tinygpt.run_dir import EVENTS_GLOB, HYDRA
from tinygpt.training.resume import read_record, recorded_overrides

TRAIN_TAIL = 5  # train loss in the tables: the mean of the last this-many logged values


class Run:
    """One job of a sweep: its directory, overrides, config and logged values."""

    def __init__(self, path: Path):
        self.path = path
        hydra_dir = path / HYDRA
        overrides = hydra_dir / "overrides.yaml"
        self.overrides = recorded_overrides(path) if overrides.exists() else [path.name]
        config = hydra_dir / "config.yaml"
        self.config = OmegaConf.create(read_record(config)) if config.exists() else None
        events = read_events(path)
        self.scalars, self.sample = events.scalars, events.sample
        self.label = path.name

    def series(self, tag: str) -> tuple[list[int], list[float]]:
        values = self.scalars.get(tag, {})
        steps = sorted(values)
        return steps, [values[s] for s in steps]

    def last(self, tag: str) -> float | None:
        _, values = self.series(tag)
        return values[-1] if values else None

    def layers(self) -> int:
        return sum(1 for t in self.scalars if re.fullmatch(metrics.layer_tag("entropy", r"\d+"), t))

    def layer_mean(self, name: str, tail: float = 0.0) -> float | None:
        """Mean over layers of attention/<name>/layer_i: its last value (tail=0), or its mean
        over the last `tail` fraction of the logged steps (1.0: all of them)."""
        out = []
        for i in range(self.layers()):
            _, values = self.series(metrics.layer_tag(name, i))
            if values:
                kept = values[-max(1, round(tail * len(values))):]
                out.append(sum(kept) / len(kept))
        return sum(out) / len(out) if out else None

    def peak(self, name: str) -> float | None:
        """The largest value of attention/<name>/layer_i over all layers and logged steps."""
        values = [v for i in range(self.layers())
                  for v in self.series(metrics.layer_tag(name, i))[1]]
        return max(values) if values else None

    def stopped_early(self) -> bool:
        """Ended before its max_steps: a NaN stop (divergence) or an interruption."""
        steps, _ = self.series(metrics.TRAIN_LOSS)
        planned = self.config.trainer.max_steps if self.config is not None else None
        return bool(steps and planned and planned > 0 and
                    max(steps) + self.config.trainer.log_every_n_steps < planned)

    def head_dim(self) -> int | None:
        m = self.config.model if self.config is not None else None
        return m.emb_dim // m.n_heads if m is not None else None


def find_runs(sweep: Path) -> list[Run]:
    dirs = sorted({f.parent for f in sweep.rglob(EVENTS_GLOB)})
    runs = [Run(d) for d in dirs]
    label_runs(runs)
    # Natural order, so n_heads=4 comes before n_heads=16 and a pair differing in one switch
    # sits together.
    return sorted(runs, key=lambda r: [int(t) if t.isdigit() else t
                                       for t in re.split(r"(\d+)", r.label)])


def label_runs(runs: list[Run]) -> None:
    """Label each run by its overrides minus those every run shares; keys shortened to their
    last part where that stays unambiguous (model.attention.scale=false -> scale=false). A
    run's `setting` is the same minus its seed: the runs of one setting are its seeds."""
    shared = set.intersection(*(set(r.overrides) for r in runs)) if len(runs) > 1 else set()
    keys = [o.split("=", 1)[0] for r in runs for o in r.overrides if o not in shared]
    short = {k: k.rsplit(".", 1)[-1] for k in keys}
    if len(set(short.values())) < len(set(keys)):
        short = {k: k for k in keys}
    for r in runs:
        # A run without Hydra's overrides.yaml (trained in-process) is named by its folder.
        parts = [o.partition("=")[::2] for o in r.overrides if o not in shared]
        r.label = " ".join(_shown(short[k], v) for k, v in parts) or r.path.name
        r.setting = {k: v for k, v in parts if k != "seed"}
        r.group = " ".join(_shown(short[k], v) for k, v in r.setting.items()) or "all"


def _shown(key: str, value: str) -> str:
    return f"{key}={value.lower()}" if value else key


def by_setting(runs: list[Run]) -> dict[str, list[Run]]:
    """The runs of each setting (its seeds), in the runs' order."""
    groups: dict[str, list[Run]] = {}
    for r in runs:
        groups.setdefault(r.group, []).append(r)
    return groups


def train_tail(run: Run, tag: str = metrics.TRAIN_LOSS) -> float | None:
    _, values = run.series(tag)
    tail = values[-TRAIN_TAIL:]
    return sum(tail) / len(tail) if tail else None
