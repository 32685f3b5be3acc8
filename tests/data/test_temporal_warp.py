"""Temporal warping (SVFormer) and the view options it uses: warped frame indices, own windows."""

from __future__ import annotations

import collections

import numpy as np
import pytest
import torch

from ssvar.data import TemporalWarp, ViewSpec
from ssvar.data.dataset import VideoDataset
from ssvar.data.index import VideoIndex, VideoRecord
from ssvar.data.transforms import AugmentConfig


def _runs(idx: np.ndarray) -> list[int]:
    return sorted(set(idx.tolist()))


def test_warp_indices_are_anchors_stretched_to_fill_the_clip():
    torch.manual_seed(0)
    counts = collections.Counter()
    for _ in range(600):
        idx = TemporalWarp().indices(8)
        assert idx.shape == (8,) and idx.dtype == np.int64
        assert (np.diff(idx) >= 0).all()  # order kept
        anchors = _runs(idx)
        counts[len(anchors)] += 1
        if len(anchors) == 8:
            assert (idx == np.arange(8)).all()  # no warp: the clip unchanged
            continue
        assert len(anchors) in (2, 4)
        # Each frame shows an anchor no farther than its neighbours: the first anchor fills the
        # start, the last fills the end, and each gap is split between its two ends.
        assert (idx[: anchors[0]] == anchors[0]).all() and (idx[anchors[-1] :] == anchors[-1]).all()
        for a, b in zip(anchors, anchors[1:]):
            seg = idx[a:b]
            assert seg[0] == a and set(seg.tolist()) <= {a, b}
    # 0, 2 or 4 anchors with equal odds.
    assert set(counts) == {8, 2, 4} and all(abs(c / 600 - 1 / 3) < 0.07 for c in counts.values())


def test_warp_probabilities_clip_and_arguments():
    torch.manual_seed(1)
    w = TemporalWarp(anchors=(0, 3), probs=(0.0, 1.0))
    assert all(len(_runs(w.indices(8))) == 3 for _ in range(50))
    clip = torch.arange(8).view(8, 1, 1, 1).expand(8, 3, 2, 2)  # [T, C, H, W], frame t holds t
    out = w(clip)
    assert out.shape == clip.shape and len(out[:, 0, 0, 0].unique()) == 3
    assert w(clip.transpose(0, 1), dim=1).shape == (3, 8, 2, 2)
    assert (TemporalWarp(anchors=(12,)).indices(8) == np.arange(8)).all()  # more anchors than frames
    with pytest.raises(ValueError, match="anchors"):
        TemporalWarp(anchors=(-1,))
    with pytest.raises(ValueError, match="probs"):
        TemporalWarp(anchors=(0, 2), probs=(0.5, 0.6))
    with pytest.raises(ValueError, match="window"):
        ViewSpec("weak", window="other")


def _dataset(video_factory, views, n=60):
    path = video_factory("v.mp4", num_frames=n)
    index = VideoIndex([VideoRecord("v.mp4", 0)], ["a"])
    return VideoDataset(
        str(path).rsplit("/", 1)[0], index, views, num_frames=8, stride=2,
        augment=AugmentConfig(crop_size=16, area_range=(1.0, 1.0), hflip=0.0), short_side=16,
    )


def test_warped_strong_view_re_times_the_weak_views_frames(video_factory):
    from helpers import clip_indices_of

    torch.manual_seed(2)
    warp = TemporalWarp(anchors=(4,))
    ds = _dataset(
        video_factory, {"weak": ViewSpec("weak"), "strong": ViewSpec("weak", same_as="weak", temporal_warp=warp)}
    )
    for _ in range(5):
        s = ds[0]
        weak, strong = clip_indices_of(s["weak"]), clip_indices_of(s["strong"])
        assert (np.diff(weak) == 2).all()
        assert set(strong) <= set(weak) and len(set(strong)) == 4  # only 4 anchors of the weak clip
        assert strong == sorted(strong)


def test_own_window_draws_another_temporal_window(video_factory):
    from helpers import clip_indices_of

    torch.manual_seed(3)
    shared = _dataset(video_factory, {"weak": ViewSpec("weak"), "strong": ViewSpec("weak")})
    own = _dataset(video_factory, {"weak": ViewSpec("weak"), "strong": ViewSpec("weak", window="own")})
    same = [clip_indices_of(s["weak"]) == clip_indices_of(s["strong"]) for s in (shared[0] for _ in range(4))]
    assert all(same)
    starts = [(clip_indices_of(s["weak"])[0], clip_indices_of(s["strong"])[0]) for s in (own[0] for _ in range(8))]
    assert any(a != b for a, b in starts)
    for s in (own[0] for _ in range(3)):
        assert (np.diff(clip_indices_of(s["strong"])) == 2).all()  # a regular clip, just elsewhere
