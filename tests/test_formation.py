"""The formation step read from hand-built curves: a plateau, a sudden drop, a floor."""

import math

import pytest

from tinygpt.lab.report.formation import formation_step


def logistic(step: float, centre: float, top: float = 5.0, bottom: float = 0.3) -> float:
    return bottom + (top - bottom) / (1 + math.exp((step - centre) / 15))


def test_a_sudden_drop_from_the_start_to_near_zero_forms_near_its_midpoint():
    steps = list(range(0, 1001, 10))
    values = [logistic(s, 420) for s in steps]
    # half of the start (2.5) is crossed just after the drop's own midpoint (2.65)
    assert formation_step(steps, values) == pytest.approx(420, abs=5)


def test_the_crossing_is_interpolated_between_logged_steps():
    assert formation_step([0, 100, 200, 300], [5.0, 5.0, 1.0, 1.0]) == pytest.approx(162.5)


def test_a_slow_decline_that_stays_above_half_never_forms():
    steps = list(range(0, 1001, 10))
    assert formation_step(steps, [5.8 - 0.0015 * s for s in steps]) is None  # 5.8 -> 4.3
    assert formation_step([], []) is None
