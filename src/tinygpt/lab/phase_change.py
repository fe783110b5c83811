"""When a curve falls: lab IV's formation step, read from a run's copy loss."""

from __future__ import annotations

from collections.abc import Sequence


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
