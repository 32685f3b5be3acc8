"""Loss-weight schedules: a warm-up before a term switches on, and ramp-ups (Mean Teacher's sigmoid).

Lengths are in optimiser steps; a float in (0, 1) is a fraction of the run's total steps, so one
config serves runs of any length.
"""

from __future__ import annotations

import math
from typing import Literal

__all__ = ["WeightSchedule"]


def _steps(value: float, total: int) -> float:
    return value * total if 0 < value < 1 else value


class WeightSchedule:
    """Multiplier of a loss term at a step: 0 before ``start``, then a ramp to 1 over ``rampup``.

    Args:
        start: steps before the term switches on (FixMatch-style ``unsup_warmup_steps``; LTG's
            ``warmup_epoch``). Counted in whole steps: ``int(start * total)`` for a fraction.
        rampup: length of the ramp after ``start`` (0: a step to 1).
        shape: ``"sigmoid"``: ``exp(-5 (1 - t)^2)`` (Laine & Aila 2017; Mean Teacher);
            ``"linear"``: ``t``.
    """

    def __init__(self, start: float = 0, rampup: float = 0, shape: Literal["sigmoid", "linear"] = "sigmoid"):
        if start < 0 or rampup < 0:
            raise ValueError(f"start and rampup must be >= 0, got {start}, {rampup}")
        if shape not in ("sigmoid", "linear"):
            raise ValueError(f"shape must be 'sigmoid' or 'linear', got {shape!r}")
        self.start, self.rampup, self.shape = start, rampup, shape

    def start_step(self, total: int) -> int:
        """The first step at which the term is on."""
        return int(_steps(self.start, total))

    def __call__(self, step: int, total: int) -> float:
        """The weight at optimiser step ``step`` of a run of ``total`` steps."""
        begin = self.start_step(total)
        if step < begin:
            return 0.0
        length = _steps(self.rampup, total)
        if length <= 0:
            return 1.0
        t = min(1.0, (step - begin) / length)
        return math.exp(-5.0 * (1.0 - t) ** 2) if self.shape == "sigmoid" else t

    def __repr__(self) -> str:
        return f"WeightSchedule(start={self.start}, rampup={self.rampup}, shape={self.shape!r})"
