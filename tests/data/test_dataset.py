"""VideoDataset: the sample contract, crop sharing, frame rates and scales from one decode,
evaluation views, broken-video retries and worker safety."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from helpers import TINY_CLASSES, clip_indices_of, write_text, write_truncated, write_zero_byte
from torch.utils.data import DataLoader

from ssvar.data.dataset import VideoDataset, ViewSpec, with_labels_hidden
from ssvar.data.decode import PyAVDecoder
from ssvar.data.index import VideoIndex, VideoRecord
from ssvar.data.sampling import clip_indices, uniform_centres
from ssvar.data.transforms import AugmentConfig

CROP = 16
T, STRIDE = 4, 2


def tree_index(root) -> VideoIndex:
    """The ``tiny_tree`` fixture's videos (label = class folder)."""
    records = [
        VideoRecord(f"{c}/{c}_{i}.mp4", label)
        for label, c in enumerate(TINY_CLASSES)
        for i in range(3)
    ]
    return VideoIndex(records, list(TINY_CLASSES))


def dataset(root, index, views, **kwargs) -> VideoDataset:
    kwargs.setdefault("augment", AugmentConfig(crop_size=CROP))
    return VideoDataset(str(root), index, views, num_frames=T, stride=STRIDE, **kwargs)


def textured(i: int, h: int, w: int) -> np.ndarray:
    """Smooth 2-D texture (every crop position differs), changing with the frame index."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // (w - 1), y * 255 // (h - 1), np.full_like(x, (40 * i) % 256)], -1).astype(np.uint8)


# -- the sample contract ----------------------------------------------------------------------
def test_sample_contract(tiny_tree):
    index = tree_index(tiny_tree)
    ds = dataset(tiny_tree, index, {"clip": ViewSpec()})
    assert len(ds) == 9
    torch.manual_seed(0)
    for i in range(len(ds)):
        s = ds[i]
        assert set(s) == {"clip", "label", "index", "decode_failures"}
        assert s["clip"].dtype == torch.uint8 and tuple(s["clip"].shape) == (3, T, CROP, CROP)
        assert s["label"] == index.records[i].label and s["index"] == i and s["decode_failures"] == 0
        got = clip_indices_of(s["clip"])
        assert np.all(np.diff(got) == STRIDE) and 0 <= got[0] and got[-1] < 24


def test_unlabelled_samples_hide_the_label(tiny_tree):
    index = tree_index(tiny_tree)
    ds = dataset(tiny_tree, index, {"clip": ViewSpec()}, labeled=False)
    for i in (0, 4, 8):
        s = ds[i]
        assert s["label"] == -1 and s["hidden_label"] == index.records[i].label
    labeled = dataset(tiny_tree, index, {"clip": ViewSpec()})
    hidden = with_labels_hidden(labeled)
    assert "hidden_label" not in labeled[5] and labeled[5]["label"] == 1
    assert hidden[5]["label"] == -1 and hidden[5]["hidden_label"] == 1
    assert labeled.labeled  # the copy did not change the original


def test_view_spec_validation(tiny_tree):
    with pytest.raises(ValueError):
        ViewSpec(aug="medium")
    with pytest.raises(ValueError):
        ViewSpec(aug="test", crops=2)
    with pytest.raises(ValueError, match="same_as"):
        dataset(tiny_tree, tree_index(tiny_tree), {"strong": ViewSpec(aug="strong", same_as="weak")})
    with pytest.raises(ValueError):
        dataset(tiny_tree, tree_index(tiny_tree), {})


# -- crop sharing -----------------------------------------------------------------------------
def test_same_as_shares_the_crop(video_factory, tmp_path):
    video_factory("tex/v.mp4", num_frames=24, width=48, height=40, content=textured)
    index = VideoIndex([VideoRecord("v.mp4", 0)], ["a"])
    views = {
        "weak": ViewSpec(aug="weak"),
        "strong": ViewSpec(aug="strong", same_as="weak"),
        "other": ViewSpec(aug="weak"),
    }
    no_op = dataset(tmp_path / "tex", index, views, augment=AugmentConfig(crop_size=CROP, randaugment_ops=0))
    strong = dataset(tmp_path / "tex", index, views, augment=AugmentConfig(crop_size=CROP, randaugment_ops=2))
    torch.manual_seed(0)
    differs_from_other, differs_strong = [], []
    for _ in range(6):
        s = no_op[0]
        assert torch.equal(s["weak"], s["strong"])  # same frames, same crop, same flip
        differs_from_other.append(not torch.equal(s["weak"], s["other"]))  # an independent crop
        s = strong[0]
        assert s["strong"].shape == s["weak"].shape
        differs_strong.append(not torch.equal(s["weak"], s["strong"]))
    assert all(differs_from_other)  # the texture tells crops apart
    assert sum(differs_strong) >= 4  # RandAugment changed the strong view (an op may be identity)


def test_two_frame_rates_from_one_clip_centre(tiny_tree):
    views = {"slow": ViewSpec(aug="weak"), "fast": ViewSpec(aug="weak", stride_factor=2, same_as="slow")}
    ds = dataset(tiny_tree, tree_index(tiny_tree), views)
    torch.manual_seed(0)
    starts = set()
    for i in range(len(ds)):
        s = ds[i]
        slow, fast = clip_indices_of(s["slow"]), clip_indices_of(s["fast"])
        assert np.all(np.diff(slow) == STRIDE) and np.all(np.diff(fast) == 2 * STRIDE)
        assert np.mean(slow) == np.mean(fast)  # centre-aligned
        assert 0 <= fast[0] and fast[-1] < 24
        starts.add(slow[0])
    assert len(starts) > 1  # the centre is random


def test_multi_scale_view(tiny_tree):
    views = {"long": ViewSpec(aug="weak", num_frames=3, scales=(1, 2, 4))}
    ds = dataset(tiny_tree, tree_index(tiny_tree), views)
    torch.manual_seed(0)
    s = ds[0]
    assert s["long"].dtype == torch.uint8 and tuple(s["long"].shape) == (3, 3, 3, CROP, CROP)
    clips = [clip_indices_of(c) for c in s["long"]]
    for scale, clip in zip((1, 2, 4), clips):
        assert np.all(np.diff(clip) == STRIDE * scale)
        assert np.mean(clip) == np.mean(clips[0])


@pytest.mark.parametrize(
    "policy,expected",
    [("shrink_stride", [0, 1, 2, 2]), ("loop", [0, 2, 1, 0]), ("repeat_last", [0, 2, 2, 2])],
)
def test_short_video_policies(video_factory, tmp_path, policy, expected):
    video_factory("short/v.mp4", num_frames=3)
    index = VideoIndex([VideoRecord("v.mp4", 0)], ["a"])
    for train in (True, False):
        ds = dataset(tmp_path / "short", index, {"clip": ViewSpec()}, short_policy=policy, train=train)
        s = ds[0]
        assert tuple(s["clip"].shape) == (3, T, CROP, CROP)
        assert clip_indices_of(s["clip"]) == expected


# -- evaluation views ------------------------------------------------------------------------
def test_test_view_clips_and_crops(tiny_tree, video_factory, tmp_path):
    index = tree_index(tiny_tree)
    ds = dataset(tiny_tree, index, {"test": ViewSpec(aug="test", clips=2, crops=3)}, train=False)
    s = ds[0]
    assert s["test"].dtype == torch.uint8 and tuple(s["test"].shape) == (6, 3, T, CROP, CROP)
    span = (T - 1) * STRIDE + 1
    expected = [list(clip_indices(24, T, STRIDE, c)) for c in uniform_centres(24, span, 2)]
    got = [clip_indices_of(v) for v in s["test"]]
    assert got == [expected[0]] * 3 + [expected[1]] * 3  # clip-major, then crops
    assert expected[0][0] == 0 and expected[1][-1] == 23
    assert torch.equal(ds[0]["test"], s["test"])  # deterministic

    video_factory("wide/v.mp4", num_frames=12, width=48, height=32, content="hgradient")
    wide = VideoIndex([VideoRecord("v.mp4", 0)], ["a"])
    ds = dataset(tmp_path / "wide", wide, {"test": ViewSpec(aug="test", crops=3)}, train=False)
    crops = ds[0]["test"]
    assert tuple(crops.shape) == (3, 3, T, CROP, CROP)
    means = [float(c.float().mean()) for c in crops]
    assert means[0] < means[1] < means[2]  # left, centre, right of the ramp
    one = dataset(tmp_path / "wide", wide, {"test": ViewSpec(aug="test")}, train=False)[0]["test"]
    assert torch.equal(one, crops[1])  # the single crop is the centre crop


# -- one decode per sample --------------------------------------------------------------------
def test_one_decode_per_sample(tiny_tree, monkeypatch):
    calls = []
    real = PyAVDecoder.decode

    def counting(self, path, plan, short_side=None):
        calls.append(path)
        return real(self, path, plan, short_side)

    monkeypatch.setattr(PyAVDecoder, "decode", counting)
    views = {
        "weak": ViewSpec(aug="weak"),
        "strong": ViewSpec(aug="strong", same_as="weak"),
        "fast": ViewSpec(aug="weak", stride_factor=2, same_as="weak"),
        "long": ViewSpec(aug="weak", num_frames=2, scales=(1, 3)),
        "test": ViewSpec(aug="test", clips=2, crops=3),
    }
    ds = dataset(tiny_tree, tree_index(tiny_tree), views)
    torch.manual_seed(0)
    for n, i in enumerate((0, 3, 8), start=1):
        s = ds[i]
        assert set(views) <= set(s)
        assert len(calls) == n and calls[-1].endswith(tree_index(tiny_tree).records[i].path)


# -- broken videos ----------------------------------------------------------------------------
def _tree_with_broken_files(tiny_tree) -> tuple[VideoIndex, set[int]]:
    index = tree_index(tiny_tree)
    c = TINY_CLASSES[0]
    write_zero_byte(tiny_tree / c / "zero.mp4")
    write_truncated(tiny_tree / c / "trunc.mp4", tiny_tree / c / f"{c}_0.mp4", 0.5)
    write_text(tiny_tree / c / "text.mp4")
    records = list(index.records)
    for k, name in enumerate(("zero.mp4", "trunc.mp4", "text.mp4")):
        records.insert(2 * k + 1, VideoRecord(f"{c}/{name}", 0))
    broken = {i for i, r in enumerate(records) if not r.path.split("/")[-1].startswith("class_")}
    return VideoIndex(records, list(TINY_CLASSES)), broken


def test_broken_videos_are_replaced(tiny_tree, caplog):
    index, broken = _tree_with_broken_files(tiny_tree)
    assert broken == {1, 3, 5}
    ds = dataset(tiny_tree, index, {"clip": ViewSpec()})
    torch.manual_seed(0)
    for i in range(len(ds)):
        s = ds[i]
        assert tuple(s["clip"].shape) == (3, T, CROP, CROP)
        assert s["index"] not in broken  # a good video replaced the broken one...
        assert s["label"] == index.records[s["index"]].label  # ...with its own label
        if i in broken:
            assert s["decode_failures"] >= 1
        else:
            assert s["decode_failures"] == 0 and s["index"] == i
    assert "unreadable video" in caplog.text


def test_all_broken_raises_a_clear_error(tmp_path):
    names = [write_zero_byte(tmp_path / "a.mp4"), write_text(tmp_path / "b.mp4")]
    index = VideoIndex([VideoRecord(n, 0) for n in ("a.mp4", "b.mp4")], ["x"])
    ds = dataset(tmp_path, index, {"clip": ViewSpec()}, max_retries=3)
    with pytest.raises(RuntimeError, match="check-videos") as e:
        ds[0]
    assert "unreadable videos" in str(e.value) and any(n in str(e.value) for n in names)


# -- worker safety ----------------------------------------------------------------------------
def test_dataset_pickles_and_loads_in_workers(tiny_tree):
    views = {"weak": ViewSpec(aug="weak"), "strong": ViewSpec(aug="strong", same_as="weak")}
    ds = dataset(tiny_tree, tree_index(tiny_tree), views, labeled=False)
    ds[0]  # the decoder exists in the parent before the copy
    clone = pickle.loads(pickle.dumps(ds))
    assert tuple(clone[1]["weak"].shape) == (3, T, CROP, CROP)
    loader = DataLoader(ds, batch_size=4, num_workers=2, shuffle=False)
    batches = list(loader)
    assert [tuple(b["weak"].shape) for b in batches] == [(4, 3, T, CROP, CROP)] * 2 + [(1, 3, T, CROP, CROP)]
    assert torch.cat([b["index"] for b in batches]).tolist() == list(range(9))
    assert torch.cat([b["hidden_label"] for b in batches]).tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert all(b["weak"].dtype == torch.uint8 for b in batches)
