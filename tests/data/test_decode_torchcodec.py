"""TorchCodecDecoder (optional backend): the PyAV decoder's exact-index contract, agreement with
PyAVDecoder, the dataset path, and a clear ImportError when torchcodec or FFmpeg is missing.

The decoding tests skip when torchcodec cannot be imported *or loaded* (it raises RuntimeError,
not ImportError, when the system FFmpeg libraries are absent); the ImportError tests always run.
"""

from __future__ import annotations

import pickle
import random
import sys
import types
from fractions import Fraction

import numpy as np
import pytest
import torch
from helpers import (
    TINY_CLASSES,
    clip_indices_of,
    decoded_index,
    frame_times,
    make_broken,
    write_truncated,
)

from ssvar.data.decode import PyAVDecoder, VideoDecodeError, VideoInfo, decoder_from_name
from ssvar.data.decode_torchcodec import TorchCodecDecoder, torchcodec_status

TORCHCODEC_OK, TORCHCODEC_WHY = torchcodec_status()
needs_torchcodec = pytest.mark.skipif(not TORCHCODEC_OK, reason=TORCHCODEC_WHY.split(". ")[0])


def recovered(frames) -> list[int]:
    return [decoded_index(f.numpy()) for f in frames]


# -- a clear ImportError (runs without torchcodec) -----------------------------------------------
def test_missing_torchcodec_is_a_clear_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchcodec", None)  # import of torchcodec halted
    monkeypatch.delitem(sys.modules, "torchcodec.decoders", raising=False)
    with pytest.raises(ImportError, match=r"pip install ssvar\[torchcodec\]") as e:
        TorchCodecDecoder()
    assert "not installed" in str(e.value) and "FFmpeg" in str(e.value)
    with pytest.raises(ImportError, match="torchcodec"):
        decoder_from_name("torchcodec")
    assert torchcodec_status()[0] is False


def _fake_torchcodec(monkeypatch, decoders: types.ModuleType, load_error: Exception | None = None):
    def load_core_libraries():
        if load_error is not None:
            raise load_error

    ops = types.ModuleType("torchcodec._core.ops")
    ops.load_core_libraries = load_core_libraries
    monkeypatch.setitem(sys.modules, "torchcodec", types.ModuleType("torchcodec"))
    monkeypatch.setitem(sys.modules, "torchcodec._core", types.ModuleType("torchcodec._core"))
    monkeypatch.setitem(sys.modules, "torchcodec._core.ops", ops)
    monkeypatch.setitem(sys.modules, "torchcodec.decoders", decoders)


@pytest.mark.parametrize("error", [RuntimeError, OSError])
@pytest.mark.parametrize("when", ["import", "load"])
def test_unloadable_torchcodec_is_a_clear_import_error(monkeypatch, error, when):
    """Without FFmpeg, older torchcodec fails at import, 0.17 when its core library loads."""
    message = "Could not load libtorchcodec. Likely causes:\n  1. FFmpeg is not properly installed"

    class Unloadable(types.ModuleType):
        def __getattr__(self, name):
            raise error(message)

    if when == "import":
        _fake_torchcodec(monkeypatch, Unloadable("torchcodec.decoders"))
    else:
        decoders = types.ModuleType("torchcodec.decoders")
        decoders.VideoDecoder = object
        _fake_torchcodec(monkeypatch, decoders, load_error=error(message))
    with pytest.raises(ImportError, match="failed to load") as e:
        TorchCodecDecoder()
    assert "system FFmpeg" in str(e.value) and "pip install ssvar[torchcodec]" in str(e.value)
    assert "Could not load libtorchcodec" in str(e.value) and "Likely causes" not in str(e.value)
    assert isinstance(e.value.__cause__, error)
    assert torchcodec_status()[0] is False


def test_importing_the_module_does_not_import_torchcodec(monkeypatch):
    import runpy

    import ssvar.data.decode_torchcodec as module

    monkeypatch.setitem(sys.modules, "torchcodec", None)  # any import of torchcodec would fail
    namespace = runpy.run_path(module.__file__)  # a fresh copy of the module, executed here
    assert "TorchCodecDecoder" in namespace


# -- exact indices ----------------------------------------------------------------------------
@needs_torchcodec
@pytest.mark.parametrize(
    "name,codec,fps,seek_mode",
    [
        ("gop8.mp4", "libx264", 25, "exact"),
        ("gop8a.mp4", "libx264", 25, "approximate"),
        ("gop8.avi", "mpeg4", 25, "exact"),
        # 29.97 fps with millisecond timestamps: frame times jitter around the index grid
        ("ntsc.mkv", "libx264", Fraction(30000, 1001), "exact"),
    ],
)
def test_decodes_exactly_the_requested_indices(video_factory, name, codec, fps, seek_mode):
    n = 64
    path = video_factory(name, num_frames=n, codec=codec, gop=8, fps=fps)
    decoder = TorchCodecDecoder(seek_mode=seek_mode)
    rng = random.Random(name)
    plans = [[0], [n - 1], list(range(n)), [5, 5, 9, 9, 9], [63, 0, 31]]  # unsorted, duplicates
    plans += [rng.sample(range(n), rng.randint(1, 12)) for _ in range(10)]
    for plan in plans:
        frames, indices, info = decoder.decode(path, lambda info: plan)
        assert indices == sorted(set(plan))
        assert frames.dtype == torch.uint8 and tuple(frames.shape) == (len(indices), 32, 32, 3)
        assert frames.is_contiguous()
        assert recovered(frames) == indices, f"plan {plan}"
        assert info == VideoInfo(num_frames=n, fps=pytest.approx(float(fps)), width=32, height=32)


@needs_torchcodec
def test_plan_sees_the_video_info(video_factory):
    path = video_factory("v.avi", num_frames=20, width=40, height=30, codec="mpeg4", fps=10)
    seen = []
    frames, indices, info = TorchCodecDecoder().decode(path, lambda info: seen.append(info) or [info.num_frames - 1])
    assert seen == [info] == [VideoInfo(num_frames=20, fps=10.0, width=40, height=30)]
    assert indices == [19] and recovered(frames) == [19]
    assert TorchCodecDecoder().probe(path) == info == PyAVDecoder().probe(path)


@needs_torchcodec
def test_invalid_plans_are_value_errors(video_factory):
    path = video_factory("v.mp4", num_frames=8)
    with pytest.raises(ValueError, match="no frames"):
        TorchCodecDecoder().decode(path, lambda info: [])
    with pytest.raises(ValueError, match="negative"):
        TorchCodecDecoder().decode(path, lambda info: [-1, 2])
    with pytest.raises(ValueError, match="seek_mode"):
        TorchCodecDecoder(seek_mode="fast")


@needs_torchcodec
def test_decoder_from_name():
    assert isinstance(decoder_from_name("torchcodec"), TorchCodecDecoder)


# -- resizing ----------------------------------------------------------------------------------
@needs_torchcodec
@pytest.mark.parametrize(
    "name,kwargs",
    [("odd.avi", dict(codec="mpeg4")), ("odd.mp4", dict(codec="libx264", pix_fmt="yuv444p"))],
)
@pytest.mark.parametrize(
    "width,height,short_side,expected_hw",
    [(41, 29, None, (29, 41)), (41, 29, 16, (16, 23)), (41, 29, 58, (58, 82)), (29, 41, 17, (24, 17))],
)
def test_short_side_resize(video_factory, name, kwargs, width, height, short_side, expected_hw):
    path = video_factory(name, num_frames=12, width=width, height=height, **kwargs)
    frames, indices, info = TorchCodecDecoder().decode(path, lambda info: [0, 5, 11], short_side=short_side)
    assert (info.width, info.height) == (width, height)
    assert frames.dtype == torch.uint8 and tuple(frames.shape) == (3, *expected_hw, 3)
    assert recovered(frames) == [0, 5, 11]


# -- variable frame rate ----------------------------------------------------------------------
@needs_torchcodec
def test_variable_frame_rate_maps_indices_to_a_frame_near_the_grid_time(video_factory):
    intervals = [40] * 6 + [200] + [40] * 5 + [120, 40, 40, 10, 10, 10, 40, 40, 280] + [40] * 8
    pts = list(np.cumsum([0] + intervals))
    path = video_factory("vfr.mp4", num_frames=len(pts), vfr_pts=pts, gop=6)
    times = frame_times(path)
    decoder = TorchCodecDecoder()
    info = decoder.probe(path)
    assert info.num_frames == len(pts)
    start, half = times[0], 0.5 / info.fps
    grid = list(range(info.num_frames))
    frames, indices, _ = decoder.decode(path, lambda info: grid)
    got = recovered(frames)
    assert indices == grid and got == sorted(got)  # time never runs backwards
    held = 0
    for i, g in zip(grid, got):
        t = start + i / info.fps
        on_screen = max(j for j, tj in enumerate(times) if tj <= t + 1e-6)
        near = {j for j, tj in enumerate(times) if abs(tj - t) <= half + 1e-6}
        assert g in near | {on_screen}, (i, t, g)
        held += not near
    assert held >= 3 and got != grid  # gaps were exercised: the grid differs from frame order
    rng = random.Random(0)  # random subsets (seeks) give the same frame for every index
    for _ in range(8):
        plan = rng.sample(grid, rng.randint(1, 6))
        frames, indices, _ = decoder.decode(path, lambda info: plan)
        assert recovered(frames) == [got[i] for i in indices], plan


# -- past the end -----------------------------------------------------------------------------
@needs_torchcodec
@pytest.mark.parametrize("name,codec", [("v.mp4", "libx264"), ("v.avi", "mpeg4")])
def test_plan_past_the_end_repeats_the_last_frame(video_factory, name, codec):
    path = video_factory(name, num_frames=20, codec=codec, gop=8)
    decoder = TorchCodecDecoder()
    frames, indices, info = decoder.decode(path, lambda info: [10, info.num_frames - 1, info.num_frames + 3, 40])
    assert indices == [10, 19, 23, 40]
    assert recovered(frames) == [10, 19, 19, 19]
    frames, indices, _ = decoder.decode(path, lambda info: [25, 30], short_side=16)
    assert recovered(frames) == [19, 19] and tuple(frames.shape) == (2, 16, 16, 3)


# -- broken files -----------------------------------------------------------------------------


@needs_torchcodec
@pytest.mark.parametrize("kind", ["zero_byte", "truncated_mp4", "text_as_mp4", "missing", "audio_only"])
def test_broken_files_raise_video_decode_error(tmp_path, video_factory, kind):
    path = make_broken(kind, tmp_path, video_factory)
    with pytest.raises(VideoDecodeError) as e:
        TorchCodecDecoder().decode(path, lambda info: [0, 1])
    assert e.value.path == path and e.value.reason and path in str(e.value)
    with pytest.raises(VideoDecodeError):
        TorchCodecDecoder().probe(path)


@needs_torchcodec
@pytest.mark.parametrize("name,codec", [("t.mkv", "libx264"), ("t.avi", "mpeg4")])
@pytest.mark.parametrize("fraction", [0.05, 0.5, 0.9])
def test_truncated_files_give_frames_or_video_decode_error(tmp_path, video_factory, name, codec, fraction):
    source = video_factory("full_" + name, num_frames=32, codec=codec, gop=8)
    path = write_truncated(tmp_path / name, source, fraction)
    plan = [0, 7, 20, 31]
    try:
        frames, indices, info = TorchCodecDecoder().decode(path, lambda info: plan)
    except VideoDecodeError as e:  # never any other exception type
        assert e.path == path
        return
    assert indices == plan and tuple(frames.shape) == (4, 32, 32, 3) and frames.dtype == torch.uint8


# -- agreement with PyAV ----------------------------------------------------------------------
def smooth(i: int, h: int, w: int) -> np.ndarray:
    """A smooth 2-D texture that changes with the frame index (resampling-friendly)."""
    y, x = np.mgrid[0:h, 0:w]
    r = 128 + 100 * np.sin(x / w * 2 * np.pi + i / 5)
    g = 128 + 100 * np.cos(y / h * 2 * np.pi - i / 7)
    b = (x + y) * 255 / (w + h - 2)
    return np.stack([r, g, b], -1).round().clip(0, 255).astype(np.uint8)


@needs_torchcodec
@pytest.mark.parametrize(
    "name,codec,size,short_side",
    [("a.mp4", "libx264", (64, 48), 32), ("a.avi", "mpeg4", (48, 64), None), ("b.mp4", "libx264", (80, 60), 60)],
)
def test_agrees_with_pyav(video_factory, name, codec, size, short_side):
    n = 40
    w, h = size
    index_path = video_factory("idx_" + name, num_frames=n, width=w, height=h, codec=codec, gop=10)
    texture_path = video_factory("tex_" + name, num_frames=n, width=w, height=h, codec=codec, gop=10, content=smooth)
    tc, av_ = TorchCodecDecoder(), PyAVDecoder(seek_margin=0)
    assert tc.probe(index_path) == av_.probe(index_path)
    rng = random.Random(name)
    plans = [list(range(0, n, 8)), [n - 1, n + 2]] + [rng.sample(range(n), 5) for _ in range(3)]
    for plan in plans:
        a, ia, info_a = tc.decode(index_path, lambda info: plan, short_side=short_side)
        b, ib, info_b = av_.decode(index_path, lambda info: plan, short_side=short_side)
        assert ia == ib and info_a == info_b and a.shape == b.shape
        assert recovered(a) == recovered(b)
        a, _, _ = tc.decode(texture_path, lambda info: plan, short_side=short_side)
        b, _, _ = av_.decode(texture_path, lambda info: plan, short_side=short_side)
        assert a.shape == b.shape
        diff = (a.float() - b.float()).abs()
        assert diff.mean() < 3, f"mean abs diff {diff.mean():.2f} for plan {plan}"


# -- the dataset ------------------------------------------------------------------------------
@needs_torchcodec
def test_video_dataset_with_torchcodec(tiny_tree):
    from ssvar.data.dataset import VideoDataset, ViewSpec
    from ssvar.data.index import VideoIndex, VideoRecord
    from ssvar.data.transforms import AugmentConfig

    records = [VideoRecord(f"{c}/{c}_{i}.mp4", label) for label, c in enumerate(TINY_CLASSES) for i in range(3)]
    index = VideoIndex(records, list(TINY_CLASSES))
    views = {"weak": ViewSpec(aug="weak"), "test": ViewSpec(aug="test", clips=2)}
    kwargs = dict(num_frames=4, stride=2, augment=AugmentConfig(crop_size=16))
    tc = VideoDataset(str(tiny_tree), index, views, decoder="torchcodec", **kwargs)
    av_ = VideoDataset(str(tiny_tree), index, views, decoder="pyav", **kwargs)
    for i in (0, 4):
        torch.manual_seed(i)
        s = tc[i]
        torch.manual_seed(i)
        r = av_[i]
        assert isinstance(tc.decoder, TorchCodecDecoder)
        assert s["weak"].dtype == torch.uint8 and tuple(s["weak"].shape) == (3, 4, 16, 16)
        assert s["label"] == index.records[i].label and s["decode_failures"] == 0
        got = clip_indices_of(s["weak"])
        assert np.all(np.diff(got) == 2) and 0 <= got[0] and got[-1] < 24
        assert got == clip_indices_of(r["weak"])  # the same sampling as with PyAV
        assert [clip_indices_of(c) for c in s["test"]] == [clip_indices_of(c) for c in r["test"]]
    copy = pickle.loads(pickle.dumps(tc))  # as sent to DataLoader workers, decoder included
    assert isinstance(copy.decoder, TorchCodecDecoder) and copy[1]["weak"].shape == (3, 4, 16, 16)
