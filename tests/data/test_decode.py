"""PyAVDecoder: exact frame indices (with and without seeking), resizing, variable frame rate,
past-the-end plans and typed errors on broken files."""

from __future__ import annotations

import random
from fractions import Fraction

import av
import numpy as np
import pytest
import torch
from helpers import (
    decoded_index,
    frame_times,
    keyframe_count,
    make_broken,
    write_truncated,
)

from ssvar.data.decode import PyAVDecoder, VideoDecodeError, VideoInfo, resized_shape

NO_SEEK = 10**6  # seek_margin that never seeks


def recovered(frames) -> list[int]:
    return [decoded_index(f.numpy()) for f in frames]


@pytest.fixture
def seek_counter(monkeypatch):
    """Counts ``container.seek`` calls made by the decoder (``av.open`` returns a spying proxy)."""
    calls: list[tuple] = []
    real_open = av.open

    class Spy:
        def __init__(self, container):
            self._container = container

        def seek(self, *args, **kwargs):
            calls.append(args)
            return self._container.seek(*args, **kwargs)

        def __getattr__(self, name):
            return getattr(self._container, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._container.close()

    def spying_open(*args, **kwargs):
        container = real_open(*args, **kwargs)
        return container if kwargs.get("mode", "r") != "r" else Spy(container)

    monkeypatch.setattr(av, "open", spying_open)
    return calls


# -- exact indices ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name,codec,fps",
    [
        ("gop8.mp4", "libx264", 25),
        ("gop8.avi", "mpeg4", 25),
        # 29.97 fps with millisecond timestamps: frame times jitter around the index grid
        ("ntsc.mkv", "libx264", Fraction(30000, 1001)),
    ],
)
@pytest.mark.parametrize("seek_margin", [0, NO_SEEK], ids=["seek", "no_seek"])
def test_decodes_exactly_the_requested_indices(video_factory, seek_counter, name, codec, fps, seek_margin):
    n = 64
    path = video_factory(name, num_frames=n, codec=codec, gop=8, fps=fps)
    assert keyframe_count(path) >= 4  # seeking has keyframes to land on
    seek_counter.clear()
    decoder = PyAVDecoder(seek_margin=seek_margin)
    rng = random.Random(f"{name}-{seek_margin}")
    plans = [[0], [n - 1], list(range(n)), [5, 5, 9, 9, 9], [63, 0, 31]]  # unsorted, duplicates
    plans += [rng.sample(range(n), rng.randint(1, 12)) for _ in range(25)]
    for plan in plans:
        frames, indices, info = decoder.decode(path, lambda info: plan)
        assert indices == sorted(set(plan))
        assert frames.dtype == torch.uint8 and tuple(frames.shape) == (len(indices), 32, 32, 3)
        assert recovered(frames) == indices, f"plan {plan}"
        assert info == VideoInfo(num_frames=n, fps=pytest.approx(float(fps)), width=32, height=32)
    if seek_margin == 0:
        assert len(seek_counter) > 0
    else:
        assert seek_counter == []


def test_plan_sees_the_video_info(video_factory):
    path = video_factory("v.avi", num_frames=20, width=40, height=30, codec="mpeg4", fps=10)
    seen = []
    frames, indices, info = PyAVDecoder().decode(path, lambda info: seen.append(info) or [info.num_frames - 1])
    assert seen == [info] == [VideoInfo(num_frames=20, fps=10.0, width=40, height=30)]
    assert indices == [19] and recovered(frames) == [19]
    assert PyAVDecoder().probe(path) == info


def test_invalid_plans_are_value_errors(video_factory):
    path = video_factory("v.mp4", num_frames=8)
    with pytest.raises(ValueError, match="no frames"):
        PyAVDecoder().decode(path, lambda info: [])
    with pytest.raises(ValueError, match="negative"):
        PyAVDecoder().decode(path, lambda info: [-1, 2])


# -- resizing ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name,kwargs",
    [("odd.avi", dict(codec="mpeg4")), ("odd.mp4", dict(codec="libx264", pix_fmt="yuv444p"))],
)
@pytest.mark.parametrize(
    "width,height,short_side,expected_hw",
    [
        (41, 29, None, (29, 41)),
        (41, 29, 29, (29, 41)),
        (41, 29, 16, (16, 23)),
        (41, 29, 58, (58, 82)),
        (29, 41, 16, (23, 16)),
        (29, 41, 17, (24, 17)),
    ],
)
def test_short_side_resize(video_factory, name, kwargs, width, height, short_side, expected_hw):
    path = video_factory(name, num_frames=12, width=width, height=height, **kwargs)
    frames, indices, info = PyAVDecoder().decode(path, lambda info: [0, 5, 11], short_side=short_side)
    assert (info.width, info.height) == (width, height)
    assert tuple(frames.shape) == (3, *expected_hw, 3)
    assert recovered(frames) == [0, 5, 11]


def test_resized_shape():
    assert resized_shape(41, 29, None) == (41, 29)
    assert resized_shape(41, 29, 29) == (41, 29)
    assert resized_shape(41, 29, 16) == (23, 16)
    assert resized_shape(320, 240, 128) == (171, 128)
    assert resized_shape(240, 320, 128) == (128, 171)


# -- variable frame rate ----------------------------------------------------------------------
def test_variable_frame_rate_maps_indices_to_the_frame_on_screen(video_factory):
    # Frame times in ms: steady 40 ms runs, long gaps (frames held on screen) and a fast burst.
    intervals = [40] * 6 + [200] + [40] * 5 + [120, 40, 40, 10, 10, 10, 40, 40, 280] + [40] * 8
    pts = list(np.cumsum([0] + intervals))
    path = video_factory("vfr.mp4", num_frames=len(pts), vfr_pts=pts, gop=6)
    times = frame_times(path)
    assert len(times) == len(pts) and recovered_order(path) == list(range(len(pts)))
    info = PyAVDecoder().probe(path)
    start, half = times[0], 0.5 / info.fps
    grid = list(range(info.num_frames))

    frames, indices, _ = PyAVDecoder(seek_margin=NO_SEEK).decode(path, lambda info: grid)
    got = recovered(frames)
    assert indices == grid
    assert got == sorted(got)  # time never runs backwards
    held = 0
    for i, g in zip(grid, got):
        t = start + i / info.fps
        on_screen = max(j for j, tj in enumerate(times) if tj <= t + 1e-6)
        near = {j for j, tj in enumerate(times) if abs(tj - t) <= half + 1e-6}
        if near:  # a frame within half a grid period of t (timestamps may jitter)
            assert g in near | {on_screen}, (i, t, g)
        else:  # in a gap: the frame still on screen
            assert g == on_screen, (i, t, g)
            held += 1
    assert held >= 3  # the gaps were exercised
    assert got != grid  # and the grid really differs from the frame order

    # Seeking into the VFR file gives the same frame for every index.
    decoder = PyAVDecoder(seek_margin=0)
    rng = random.Random(0)
    for _ in range(15):
        plan = rng.sample(grid, rng.randint(1, 6))
        frames, indices, _ = decoder.decode(path, lambda info: plan)
        assert recovered(frames) == [got[i] for i in indices], plan


def recovered_order(path) -> list[int]:
    with av.open(str(path)) as container:
        return [decoded_index(f.to_ndarray(format="rgb24")) for f in container.decode(video=0)]


# -- past the end -----------------------------------------------------------------------------
@pytest.mark.parametrize("name,codec", [("v.mp4", "libx264"), ("v.avi", "mpeg4")])
@pytest.mark.parametrize("seek_margin", [0, NO_SEEK], ids=["seek", "no_seek"])
def test_plan_past_the_end_repeats_the_last_frame(video_factory, name, codec, seek_margin):
    path = video_factory(name, num_frames=20, codec=codec, gop=8)
    decoder = PyAVDecoder(seek_margin=seek_margin)
    # As if the header over-counted frames: indices past the last real frame.
    frames, indices, info = decoder.decode(path, lambda info: [10, info.num_frames - 1, info.num_frames + 3, 40])
    assert indices == [10, 19, 23, 40]
    assert recovered(frames) == [10, 19, 19, 19]
    frames, indices, _ = decoder.decode(path, lambda info: [25, 30])
    assert recovered(frames) == [19, 19]


# -- broken files -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["zero_byte", "truncated_mp4", "text_as_mp4", "missing", "audio_only"])
def test_broken_files_raise_video_decode_error(tmp_path, video_factory, kind):
    path = make_broken(kind, tmp_path, video_factory)
    with pytest.raises(VideoDecodeError) as e:
        PyAVDecoder().decode(path, lambda info: [0, 1])
    assert e.value.path == path and e.value.reason and path in str(e.value)
    assert isinstance(e.value, RuntimeError)
    with pytest.raises(VideoDecodeError):
        PyAVDecoder().probe(path)


@pytest.mark.parametrize("name,codec", [("t.mkv", "libx264"), ("t.avi", "mpeg4"), ("t.mp4", "libx264")])
@pytest.mark.parametrize("fraction", [0.05, 0.3, 0.5, 0.8, 0.95])
def test_truncated_files_give_frames_or_video_decode_error(tmp_path, video_factory, name, codec, fraction):
    source = video_factory("full_" + name, num_frames=32, codec=codec, gop=8)
    path = write_truncated(tmp_path / name, source, fraction)
    for seek_margin in (0, NO_SEEK):
        plan = [0, 7, 20, 31]
        try:
            frames, indices, info = PyAVDecoder(seek_margin=seek_margin).decode(path, lambda info: plan)
        except VideoDecodeError as e:  # never any other exception type
            assert e.path == path
            continue
        assert indices == plan and tuple(frames.shape) == (4, 32, 32, 3) and frames.dtype == torch.uint8
