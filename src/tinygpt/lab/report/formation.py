"""A sweep report's induction-formation table: per setting, when the induction circuit formed (the
copy loss below half its start, `formation_step`), how low the copy loss ended, and the circuit's
scores, each as mean ± sd over seeds with Welch's p against the setting's baseline."""

from __future__ import annotations

import json
from collections.abc import Sequence

from tinygpt import metrics as m
from tinygpt.lab.report.runs import Run, by_setting
from tinygpt.lab.report.stats import Summary, format_p, welch_p
from tinygpt.lab.report.tables import baseline_names
from tinygpt.run_dir import RESULT


def formation_step(steps: Sequence[float], values: Sequence[float]) -> float | None:
    """The step at which the curve first falls below half its first value: half way from where
    the copy loss starts (about log V, no copying) to zero (perfect copying); linear between the
    two logged steps around the crossing. None where it never does."""
    if not values:
        return None
    half = values[0] / 2
    for i in range(1, len(values)):
        if values[i] <= half:
            s0, s1, v0, v1 = steps[i - 1], steps[i], values[i - 1], values[i]
            return s0 + (s1 - s0) * (v0 - half) / (v0 - v1)
    return None


def formed(run: Run) -> float | None:
    return formation_step(*run.series(m.COPY_LOSS))


def last_layer_score(run: Run, quantity: str, layer: int) -> float | None:
    return run.last(m.probe_tag(m.INDUCTION, quantity, layer))


def train_seconds(run: Run) -> float | None:
    path = run.path / RESULT
    return json.loads(path.read_text()).get("train_seconds") if path.is_file() else None


COLUMNS = (  # (title, digits, value of a run), each compared with the baseline
    ("formed at step", 0, formed),
    ("copy loss, nats", 2, lambda r: r.last(m.COPY_LOSS)),
    ("rest loss, nats", 2, lambda r: r.last(m.REST_LOSS)),
    ("induction score, layer 1", 2, lambda r: last_layer_score(r, m.COPY_SCORE, 1)),
    ("previous-token score, layer 0", 2, lambda r: last_layer_score(r, m.COPY_PREVIOUS, 0)),
    ("training, s", 0, train_seconds),
)


def formation_table(runs: list[Run], compare: dict[str, str | None]) -> str:
    """"" when no run logged the copy loss."""
    if not any(r.last(m.COPY_LOSS) is not None for r in runs):
        return ""
    groups = by_setting(runs)
    baselines = baseline_names(groups, compare)
    rows = ["| setting | " + " | ".join(c[0] for c in COLUMNS) + " |",
            "|" + "---|" * (len(COLUMNS) + 1)]
    for name, group in groups.items():
        cells = [name]
        for i, (_, digits, value) in enumerate(COLUMNS):
            mine = Summary(tuple(v for r in group if (v := value(r)) is not None))
            cell = mine.format(digits) if mine.n else "–"
            if i == 0:
                cell = f"{cell if mine.n else 'never'} ({mine.n}/{len(group)})"
            base = baselines[name]
            if mine.n and base not in (None, name):
                theirs = Summary(tuple(v for r in groups[base] if (v := value(r)) is not None))
                p = welch_p(mine, theirs) if theirs.n else None
                cell += f" (p {format_p(p)})" if p is not None else ""
            cells.append(cell)
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)
