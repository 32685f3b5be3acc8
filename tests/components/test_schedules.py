"""WeightSchedule: the warm-up gate and the ramp-ups, against closed forms."""

from __future__ import annotations

import math

import pytest

from ssvar.components.schedules import WeightSchedule


def test_step_warmup_in_steps_and_fractions():
    s = WeightSchedule(start=10)
    assert [s(k, 100) for k in (0, 9, 10, 99)] == [0.0, 0.0, 1.0, 1.0]
    frac = WeightSchedule(start=0.25)  # a fraction of the total: int(0.25 * 90) = 22
    assert frac.start_step(90) == 22
    assert frac(21, 90) == 0.0 and frac(22, 90) == 1.0
    assert WeightSchedule()(0, 1) == 1.0  # no warm-up: on from the first step


def test_sigmoid_rampup_is_mean_teachers():
    s = WeightSchedule(rampup=0.3, shape="sigmoid")
    total = 200
    for step in (0, 1, 30, 59, 60, 61, 199):
        t = min(1.0, step / (0.3 * total))
        assert s(step, total) == pytest.approx(math.exp(-5.0 * (1.0 - t) ** 2), abs=0)
    assert s(0, total) == pytest.approx(math.exp(-5.0))
    assert WeightSchedule(rampup=0)(0, 10) == 1.0


def test_linear_ramp_after_a_warmup():
    s = WeightSchedule(start=4, rampup=8, shape="linear")
    assert [s(k, 100) for k in (3, 4, 8, 12, 50)] == [0.0, 0.0, 0.5, 1.0, 1.0]


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="start and rampup"):
        WeightSchedule(start=-1)
    with pytest.raises(ValueError, match="shape"):
        WeightSchedule(shape="cosine")
