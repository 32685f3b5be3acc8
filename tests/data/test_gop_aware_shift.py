"""GOP-aware clip sampling (``VideoDataset(gop_aware_shift=N)``, off by default): a training
sample's frames move by at most N frames to where sparse decoding decodes fewer frames, and the
frames delivered are exactly a plain decode of the moved indices."""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch

from ssvar.data.dataset import VideoDataset, ViewSpec
from ssvar.data.decode import PyAVDecoder
from ssvar.data.index import VideoIndex, VideoRecord
from ssvar.data.sampling import gop_aware_shift
from ssvar.data.transforms import AugmentConfig

T, STRIDE, CROP = 8, 3, 24


def texture(i: int, h: int, w: int) -> np.ndarray:
    """Moving random texture: x264 codes it with non-reference B-frames (see test_sparse_decode)."""
    base = np.random.default_rng(0).integers(0, 255, (h, 2 * w, 3), dtype=np.uint8)
    return np.ascontiguousarray(base[:, i % w : i % w + w])


@pytest.fixture
def bframe_video(video_factory):
    return video_factory("b.mp4", num_frames=64, width=64, height=48, content=texture)


def nonref_frames(path: str) -> set[int]:
    """Frame indices FFmpeg leaves out with ``skip_frame = NONREF`` (decoding from the start)."""
    with av.open(path) as c:
        s = c.streams.video[0]
        everything = [round(f.time * float(s.average_rate)) for f in c.decode(s)]
    with av.open(path) as c:
        s = c.streams.video[0]
        s.codec_context.skip_frame = "NONREF"
        kept = {round(f.time * float(s.average_rate)) for f in c.decode(s)}
    return set(everything) - kept


def test_reference_map_matches_ffmpeg_nonref(bframe_video):
    refs = PyAVDecoder().reference_map(bframe_video)
    skipped = nonref_frames(bframe_video)
    assert skipped, "the test video has no non-reference frames"
    assert set(np.flatnonzero(~refs.is_ref).tolist()) == skipped
    assert refs.keyframes.tolist()[0] == 0


def test_decode_fills_the_reference_cache_and_stays_exact(bframe_video):
    for plan in (list(range(0, 57, 8)), list(range(5, 62, 8))):  # from the start; with a seek
        cache: dict = {}
        got = PyAVDecoder(seek_margin=2).decode(bframe_video, lambda i: plan, references=cache)[0]
        full = PyAVDecoder(skip_nonref=False).decode(bframe_video, lambda i: plan)[0]
        assert torch.equal(got, full)
    assert np.array_equal(cache[bframe_video].is_ref, PyAVDecoder().reference_map(bframe_video).is_ref)


def test_shift_never_exceeds_the_limit_and_stays_inside():
    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(10, 80))
        is_ref = rng.random(n) < 0.6
        keys = np.unique(np.concatenate([[0], rng.integers(0, n, 2)]))
        length = int(rng.integers(1, 6))
        idx = np.sort(rng.integers(0, n, length))
        limit = int(rng.integers(0, 4))
        s = gop_aware_shift(idx, n, is_ref, keys, limit)
        assert abs(s) <= limit
        assert (idx + s).min() >= 0 and (idx + s).max() < n
        if limit == 0:
            assert s == 0


def test_shift_moves_needed_frames_onto_reference_frames():
    n = 40
    is_ref = np.array([i % 3 == 0 for i in range(n)])  # P B B P B B ...
    idx = np.array([13, 16, 19, 22, 25])  # all on non-reference frames
    assert gop_aware_shift(idx, n, is_ref, np.array([0]), 2) == -1  # onto 12, 15, ...: all references
    assert gop_aware_shift(idx, n, is_ref, np.array([0]), 0) == 0
    on_refs = np.array([12, 15, 18])
    assert gop_aware_shift(on_refs, n, is_ref, np.array([0]), 2) == 0  # nothing cheaper: not moved
    with pytest.raises(ValueError, match="max_shift"):
        gop_aware_shift(idx, n, is_ref, np.array([0]), -1)


def make_dataset(path: str, **kwargs) -> VideoDataset:
    index = VideoIndex([VideoRecord(path, 0)], ["a"])
    return VideoDataset(
        "",
        index,
        {"v": ViewSpec(aug="test")},
        num_frames=T,
        stride=STRIDE,
        augment=AugmentConfig(crop_size=CROP),
        **kwargs,
    )


def planned(ds: VideoDataset, path: str, seed: int) -> np.ndarray:
    """The unshifted indices the sample drawn with ``seed`` uses."""
    torch.manual_seed(seed)
    return ds._plan(PyAVDecoder().probe(path))["v"][0]


def expected_sample(ds: VideoDataset, path: str, idx: np.ndarray) -> torch.Tensor:
    """A plain (full) decode of ``idx`` through the view's deterministic test crop."""
    frames = PyAVDecoder(skip_nonref=False).decode(path, lambda i: idx, ds.short_side)[0]
    pos = {f: j for j, f in enumerate(sorted(set(idx.tolist())))}
    return ds._augment({"v": [frames[[pos[int(f)] for f in idx]]]})["v"]


def test_shifted_clips_equal_a_plain_decode_of_the_shifted_indices(bframe_video):
    off, on = make_dataset(bframe_video), make_dataset(bframe_video, gop_aware_shift=2)
    shifts = []
    for seed in range(12):
        idx = planned(off, bframe_video, seed)
        torch.manual_seed(seed)
        got = on[0]["v"]
        inside = [s for s in range(-2, 3) if 0 <= idx.min() + s and idx.max() + s < 64]
        matches = [s for s in inside if torch.equal(got, expected_sample(on, bframe_video, idx + s))]
        assert matches, f"seed {seed}: the clip is not a plain decode of any shift within 2 frames"
        shifts.append(matches[0])
    assert any(shifts), "no clip was moved: the option did nothing"
    assert bframe_video in on._refs  # frame types read once, then cached


def test_off_by_default_and_unchanged(bframe_video, monkeypatch):
    assert VideoDataset.__init__.__kwdefaults__["gop_aware_shift"] == 0
    default, zero = make_dataset(bframe_video), make_dataset(bframe_video, gop_aware_shift=0)

    def no_probe(*args, **kwargs):
        raise AssertionError("frame types read with the option off")

    monkeypatch.setattr(PyAVDecoder, "_reference_map", staticmethod(no_probe))
    for seed in range(4):
        idx = planned(default, bframe_video, seed)
        torch.manual_seed(seed)
        a = default[0]["v"]
        torch.manual_seed(seed)
        b = zero[0]["v"]
        assert torch.equal(a, b) and torch.equal(a, expected_sample(default, bframe_video, idx))


def test_evaluation_is_never_shifted(bframe_video):
    ds = make_dataset(bframe_video, gop_aware_shift=2, train=False)
    plain = make_dataset(bframe_video, train=False)
    assert torch.equal(ds[0]["v"], plain[0]["v"])


def test_bad_arguments(bframe_video):
    with pytest.raises(ValueError, match="gop_aware_shift must be >= 0"):
        make_dataset(bframe_video, gop_aware_shift=-1)
    with pytest.raises(ValueError, match="gop_aware_shift needs the decoder"):
        make_dataset(bframe_video, gop_aware_shift=1, decoder="torchcodec")


def test_data_module_passes_the_option_on(bframe_video):
    from ssvar.data.datamodule import FolderDataModule

    index = VideoIndex([VideoRecord(bframe_video, 0)], ["a"])
    for n in (0, 2):
        dm = FolderDataModule("", labeled_per_class=1, gop_aware_shift=n)
        assert dm.dataset(index, {"v": ViewSpec()}, train=True).gop_aware_shift == n
