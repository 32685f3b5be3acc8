"""Clip sampling: which frame indices each view of a sample needs.

All views of one sample share a centre frame; each view places ``num_frames`` frames at its own
stride around it. That gives, from one decode:

* a random training clip (T frames at stride s, random centre),
* K uniformly spaced clips for testing (K centres),
* two frame rates around one centre (two views with strides s and 2s),
* long clips at several temporal scales (one view with ``scales=(1, 2, 4)``: strides s, 2s, 4s),
* consecutive dense sub-clips tiling a sparse clip's span (a view with ``offsets`` from
  :func:`tiling_offsets`: TimeBalance/TCLR's sparse + dense clips).

Short videos (fewer frames than the clip spans) follow a defined policy, ``short_policy``:

* ``"shrink_stride"`` (default): lower the stride until the clip fits, keeping the frame order
  and the motion direction; a video shorter than ``num_frames`` repeats its last frame.
* ``"loop"``: wrap around to the start (mmaction2's ``out_of_bound_opt="loop"``).
* ``"repeat_last"``: clamp to the last frame.

:func:`gop_aware_shift` (training option, off by default) moves a sample's frames by a frame or
two to where sparse decoding decodes fewer frames.
"""

from __future__ import annotations

from typing import Literal, Protocol

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


class UniformSource(Protocol):
    """What :func:`random_centre` draws from: ``numpy.random.Generator`` or any ``uniform(low, high)``."""

    def uniform(self, low: float, high: float, /) -> float: ...


def random_centre(num_frames: int, span: int, rng: UniformSource) -> float:
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


def tiling_offsets(
    num_frames: int, stride: int, num_clips: int, clip_frames: int, clip_stride: int = 1
) -> tuple[float, ...]:
    """Centre offsets (relative to a ``num_frames`` x ``stride`` clip's centre) of ``num_clips``
    consecutive sub-clips of ``clip_frames`` frames at ``clip_stride``; sub-clip ``j`` starts at
    the big clip's frame ``j * num_frames / num_clips``.

    TCLR / TimeBalance: a 16-frame clip at stride 4 and 4 dense 16-frame clips at stride 1 give
    offsets ``(-22.5, -6.5, 9.5, 25.5)``: dense clip ``j`` covers frames ``16j .. 16j + 15`` of the
    sparse clip's 64-frame window.
    """
    if num_clips < 1 or num_frames % num_clips:
        raise ValueError(f"num_frames ({num_frames}) must be a multiple of num_clips ({num_clips})")
    if min(num_frames, stride, clip_frames, clip_stride) < 1:
        raise ValueError("frame counts and strides must be >= 1")
    step = num_frames // num_clips * stride
    half_big, half_small = (num_frames - 1) * stride / 2, (clip_frames - 1) * clip_stride / 2
    return tuple(float(j * step + half_small - half_big) for j in range(num_clips))


def gop_aware_shift(
    indices: np.ndarray,
    num_frames: int,
    is_ref: np.ndarray,
    keyframes: np.ndarray,
    max_shift: int,
    seek_margin: int = 8,
) -> int:
    """The shift ``s`` (``|s| <= max_shift``) of a sample's frame indices that makes them
    cheapest to decode with sparse decoding; 0 when nothing is cheaper or ``max_shift`` is 0.

    Cost of a candidate = the frames the decoder must decode: the reference frames from the
    keyframe it seeks to (or frame 0 within ``seek_margin``) to the last needed frame, plus the
    needed frames that are not reference frames (sparse decoding would skip those otherwise).
    Candidates keep every index inside ``[0, num_frames)``; ties go to the smallest ``|s|``,
    then to the earlier start. A heuristic: it only chooses the indices; the decode is exact.
    """
    if max_shift < 0:
        raise ValueError(f"max_shift must be >= 0, got {max_shift}")
    wanted = np.unique(np.asarray(indices, dtype=np.int64))
    if max_shift == 0 or wanted.size == 0:
        return 0
    ref_before = np.concatenate([[0], np.cumsum(is_ref[:num_frames], dtype=np.int64)])  # refs in [0, i)
    best, best_key = 0, None
    for s in sorted(range(-max_shift, max_shift + 1), key=lambda s: (abs(s), s)):
        lo, hi = int(wanted[0]) + s, int(wanted[-1]) + s
        if lo < 0 or hi >= num_frames:
            continue
        k = np.searchsorted(keyframes, lo, side="right") - 1
        first = int(keyframes[k]) if k >= 0 and lo > seek_margin else 0
        cost = int(ref_before[hi + 1] - ref_before[first]) + int(np.count_nonzero(~is_ref[wanted + s]))
        if best_key is None or cost < best_key:
            best, best_key = s, cost
    return best
