"""Clip sampling: clip_indices (length, stride, centre, short-video policies), random_centre,
uniform_centres."""

from __future__ import annotations

import numpy as np
import pytest

from ssvar.data.sampling import clip_indices, random_centre, uniform_centres


@pytest.mark.parametrize("length,stride,centre", [(8, 4, 50.0), (8, 2, 30.3), (16, 1, 64.0), (5, 3, 20.0), (1, 7, 9.0)])
def test_clip_length_stride_and_centre(length, stride, centre):
    idx = clip_indices(100, length, stride, centre)
    assert len(idx) == length and idx.dtype.kind == "i"
    assert np.all(np.diff(idx) == stride)
    assert abs(idx.mean() - centre) <= 0.5  # centred on ``centre`` (to the frame)


def test_clip_slides_inside_the_video_at_both_ends():
    span = 7 * 4 + 1
    assert list(clip_indices(100, 8, 4, 0.0)) == list(range(0, span, 4))
    assert list(clip_indices(100, 8, 4, -30.0)) == list(range(0, span, 4))
    assert list(clip_indices(100, 8, 4, 99.0)) == list(range(100 - span, 100, 4))
    assert list(clip_indices(100, 8, 4, 500.0)) == list(range(100 - span, 100, 4))
    assert list(clip_indices(29, 8, 4, 14.0)) == list(range(0, 29, 4))  # exactly fits


@pytest.mark.parametrize("policy", ["shrink_stride", "loop", "repeat_last"])
def test_long_enough_videos_ignore_the_policy(policy):
    assert list(clip_indices(40, 8, 2, 20.0, policy)) == list(clip_indices(40, 8, 2, 20.0))


@pytest.mark.parametrize("n", [20, 15, 9, 8])
def test_shrink_stride_fits_the_clip_keeping_order(n):
    for centre in (0.0, (n - 1) / 2, n - 1.0):
        idx = clip_indices(n, 8, 4, centre, "shrink_stride")
        assert len(idx) == 8
        assert idx.min() >= 0 and idx.max() < n
        steps = np.diff(idx)
        assert np.all(steps > 0) and len(set(steps)) == 1  # strictly increasing at one stride
        assert steps[0] == max(1, (n - 1) // 7) < 4


@pytest.mark.parametrize("n", [1, 3, 5, 7])
def test_shrink_stride_shorter_than_the_clip_repeats_the_last_frame(n):
    for centre in (0.0, (n - 1) / 2, n - 1.0):
        idx = clip_indices(n, 8, 4, centre, "shrink_stride")
        # every frame once, in order, then the last frame repeated
        assert list(idx) == list(range(n)) + [n - 1] * (8 - n)


def test_loop_wraps_around_to_the_start():
    idx = clip_indices(10, 8, 2, 4.5, "loop")
    assert list(idx) == [0, 2, 4, 6, 8, 0, 2, 4]
    idx = clip_indices(5, 8, 1, 2.0, "loop")
    assert list(idx) == [0, 1, 2, 3, 4, 0, 1, 2]
    for centre in np.linspace(-5, 20, 11):
        idx = clip_indices(10, 8, 3, float(centre), "loop")
        assert idx.min() >= 0 and idx.max() < 10
        assert np.all((np.diff(idx) - 3) % 10 == 0)  # stride 3 modulo the video length


def test_repeat_last_clamps_to_the_last_frame():
    idx = clip_indices(10, 8, 2, 4.5, "repeat_last")
    assert list(idx) == [0, 2, 4, 6, 8, 9, 9, 9]
    idx = clip_indices(3, 8, 1, 1.0, "repeat_last")
    assert list(idx) == [0, 1, 2, 2, 2, 2, 2, 2]
    for centre in np.linspace(-5, 20, 11):
        idx = clip_indices(10, 8, 3, float(centre), "repeat_last")
        assert idx.min() >= 0 and idx.max() == 9 and np.all(np.diff(idx) >= 0)


def test_invalid_arguments():
    with pytest.raises(ValueError):
        clip_indices(0, 8, 1, 0.0)
    with pytest.raises(ValueError):
        clip_indices(10, 0, 1, 0.0)
    with pytest.raises(ValueError):
        clip_indices(10, 8, 0, 0.0)


def test_random_centre_keeps_the_span_inside():
    rng = np.random.default_rng(0)
    n, span = 100, 29
    half = (span - 1) / 2
    centres = [random_centre(n, span, rng) for _ in range(2000)]
    assert min(centres) >= half and max(centres) <= n - 1 - half
    assert min(centres) < half + 3 and max(centres) > n - 1 - half - 3  # the whole range is used
    for c in centres[:200]:
        idx = clip_indices(n, 8, 4, c)
        assert abs(idx.mean() - c) <= 0.5  # no sliding was needed
        assert idx[0] >= 0 and idx[-1] <= n - 1


@pytest.mark.parametrize("n,span", [(10, 29), (29, 29), (1, 8)])
def test_random_centre_without_room_is_the_middle(n, span):
    assert random_centre(n, span, np.random.default_rng(0)) == (n - 1) / 2


def test_uniform_centres_spread_over_the_video():
    n, span = 100, 29
    centres = uniform_centres(n, span, 5)
    assert len(centres) == 5
    assert np.allclose(np.diff(centres), np.diff(centres)[0]) and np.diff(centres)[0] > 0
    clips = [clip_indices(n, 8, 4, c) for c in centres]
    assert clips[0][0] == 0 and clips[-1][-1] == n - 1  # first clip at the start, last at the end
    assert uniform_centres(n, span, 1) == [(n - 1) / 2]
    assert uniform_centres(20, span, 3) == [9.5] * 3  # no room: all in the middle
