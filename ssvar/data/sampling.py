"""Clip sampling: which frame indices each view of a sample needs.

All views of one sample share a centre frame; each view places ``num_frames`` frames at its own
stride around it. That gives, from one decode:

* a random training clip (T frames at stride s, random centre),
* K uniformly spaced clips for testing (K centres),
* two frame rates around one centre (two views with strides s and 2s),
* long clips at several temporal scales (one view with ``scales=(1, 2, 4)``: strides s, 2s, 4s).

Short videos (fewer frames than the clip spans) follow a defined policy, ``short_policy``:

* ``"shrink_stride"`` (default): lower the stride until the clip fits, keeping the frame order
  and the motion direction; a video shorter than ``num_frames`` repeats its last frame.
* ``"loop"``: wrap around to the start (mmaction2's ``out_of_bound_opt="loop"``).
* ``"repeat_last"``: clamp to the last frame.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

ShortPolicy = Literal["shrink_stride", "loop", "repeat_last"]


def clip_indices(
    num_frames: int, length: int, stride: int, centre: float, short_policy: ShortPolicy = "shrink_stride"
) -> np.ndarray:
    """``length`` frame indices at ``stride`` centred on ``centre``, kept inside ``[0, num_frames)``."""
    if num_frames <= 0:
        raise ValueError("num_frames must be positive")
    if length <= 0 or stride <= 0:
        raise ValueError(f"clip length and stride must be positive, got {length} and {stride}")
    span = (length - 1) * stride + 1
    if span > num_frames and short_policy == "shrink_stride":
        stride = max(1, (num_frames - 1) // max(1, length - 1))
        span = (length - 1) * stride + 1
    if span <= num_frames:
        start = int(round(centre - (span - 1) / 2))
        start = min(max(start, 0), num_frames - span)  # slide the window inside the video
    else:
        start = 0  # does not fit: start at the first frame, the policy handles the tail
    idx = start + np.arange(length) * stride
    if short_policy == "loop":
        return np.mod(idx, num_frames)
    return np.clip(idx, 0, num_frames - 1)


def random_centre(num_frames: int, span: int, rng: np.random.Generator) -> float:
    """A centre drawn uniformly so that a window of ``span`` frames fits when it can."""
    half = (span - 1) / 2
    lo, hi = half, num_frames - 1 - half
    if hi <= lo:
        return (num_frames - 1) / 2
    return float(rng.uniform(lo, hi))


def uniform_centres(num_frames: int, span: int, count: int) -> list[float]:
    """``count`` centres evenly spread over the video (the usual K-clip test protocol)."""
    half = (span - 1) / 2
    lo, hi = half, num_frames - 1 - half
    if hi <= lo or count == 1:
        if count == 1:
            return [(num_frames - 1) / 2]
        return [(num_frames - 1) / 2] * count
    return [float(c) for c in np.linspace(lo, hi, count)]
