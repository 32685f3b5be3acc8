"""ClipContrastive: the self-supervised start (instance contrast + time-reversed / sped-up negatives)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from synth import tiny_datamodule, tiny_trainer

from ssvar.data.dataset import VideoDataset
from ssvar.data.index import VideoIndex, VideoRecord
from ssvar.data.transforms import AugmentConfig
from ssvar.methods import ClipContrastive, Supervised
from ssvar.methods.clip_contrastive import temporal_contrast
from ssvar.models import Tiny3D


def test_temporal_contrast_matches_a_hand_written_softmax():
    torch.manual_seed(0)
    a, p, r, f = (torch.randn(3, 5) for _ in range(4))
    got = temporal_contrast(a, p, [r, f], temperature=0.5)
    n = lambda x: x / x.norm()  # noqa: E731
    want = 0.0
    for i in range(3):
        s = [float(n(a[i]) @ n(c[i])) / 0.5 for c in (p, r, f)]
        want += -s[0] + math.log(sum(math.exp(v) for v in s))
    assert math.isclose(float(got), want / 3, rel_tol=1e-5)
    # a positive identical to the anchor and orthogonal variants: the loss is log(1 + 2 e^-2) at tau 0.5
    e = torch.eye(3)
    low = temporal_contrast(e[:1], e[:1], [e[1:2], e[2:3]], temperature=0.5)
    assert math.isclose(float(low), math.log(1 + 2 * math.exp(-2)), rel_tol=1e-6)


def test_views_are_two_windows_and_the_variants_share_frames_and_colours(video_factory):
    from helpers import clip_indices_of

    path = video_factory("v.mp4", num_frames=80)
    model = ClipContrastive(Tiny3D(width=4), num_classes=2, num_frames=8, augmentation="weak")
    views = model.views()
    assert views["labeled"] == {} and set(views["unlabeled"]) == {"anchor", "positive"}
    ds = VideoDataset(
        str(path).rsplit("/", 1)[0],
        VideoIndex([VideoRecord("v.mp4", 0)], ["a"]),
        views["unlabeled"],
        num_frames=8,
        stride=2,
        augment=AugmentConfig(crop_size=16, area_range=(0.5, 1.0)),
        short_side=16,
        labeled=False,
    )
    offsets = set()
    for seed in range(6):
        torch.manual_seed(seed)
        s = ds[0]
        assert s["anchor"].shape[1] == 8 and s["positive"].shape[1] == 16  # the variants' source, twice as long
        clip, faster = model.split_long(s["positive"][None])
        clip_ix, fast_ix = np.array(clip_indices_of(clip[0])), np.array(clip_indices_of(faster[0]))
        assert len(clip_ix) == len(fast_ix) == 8
        assert (np.diff(clip_ix) == 2).all() and (np.diff(fast_ix) == 4).all()  # twice as fast
        assert abs(clip_ix.mean() - fast_ix.mean()) <= 1  # around the same centre
        offsets.add(int(clip_ix[0]) - clip_indices_of(s["anchor"])[0])
    assert len(offsets) > 1  # the positive is another window, not the anchor's frames


def test_strong_variants_share_the_augmentation():
    # the faster clip and the clip come from one augmented tensor: equal frames where they overlap
    model = ClipContrastive(Tiny3D(width=4), 2, num_frames=4)
    long = torch.arange(8.0).view(1, 1, 8, 1, 1).expand(2, 3, 8, 2, 2)
    clip, faster = model.split_long(long)
    assert clip[0, 0, :, 0, 0].tolist() == [2, 3, 4, 5] and faster[0, 0, :, 0, 0].tolist() == [0, 2, 4, 6]
    assert ClipContrastive(Tiny3D(width=4), 2, speed_negative=False).views()["unlabeled"]["positive"].num_frames == 8


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="temperature"):
        ClipContrastive(Tiny3D(width=4), 2, temperature=0)
    with pytest.raises(ValueError, match="reverse_negative or speed_negative"):
        ClipContrastive(Tiny3D(width=4), 2, reverse_negative=False, speed_negative=False)
    with pytest.raises(ValueError, match="num_frames"):
        ClipContrastive(Tiny3D(width=4), 2, num_frames=5)
    with pytest.raises(ValueError, match="variants_of"):
        ClipContrastive(Tiny3D(width=4), 2, variants_of="other")
    with pytest.raises(ValueError, match="positive_window"):
        ClipContrastive(Tiny3D(width=4), 2, positive_window="next")


def test_reversed_negative_needs_direction_sensitive_features():
    # A clip and its reversal have equal per-frame content: a time-symmetric (mean over time)
    # embedding cannot rank the positive above the reversed anchor, so the loss stays at log(3).
    model = ClipContrastive(Tiny3D(width=4), 2, speed_negative=True)
    x = torch.randn(4, 3, 8, 16, 16)
    sym = lambda v: v.mean(dim=(2, 3, 4))  # noqa: E731
    loss = temporal_contrast(sym(x), sym(x), [sym(x.flip(2)), sym(x)], temperature=0.1)
    assert math.isclose(float(loss), math.log(3), rel_tol=1e-5)
    assert model.reverse_negative and model.speed_negative


def test_pretrain_then_start_a_method_from_it(tmp_path):
    dm = tiny_datamodule(str(tmp_path / "synth"), labeled_in_unlabeled=True, batch_size=4)
    torch.manual_seed(0)
    pre = ClipContrastive(
        Tiny3D(width=4), num_classes=dm.num_classes, num_frames=4, proj_dim=8, proj_hidden_dim=16, lr=0.05
    )
    before = {k: v.clone() for k, v in pre.backbone.state_dict().items()}
    trainer = tiny_trainer(tmp_path, max_steps=3, enable_checkpointing=False)
    trainer.fit(pre, datamodule=dm)
    assert trainer.global_step == 3
    assert any(not torch.equal(before[k], v) for k, v in pre.backbone.state_dict().items())
    ckpt = tmp_path / "pre.ckpt"
    trainer.save_checkpoint(ckpt)
    sup = Supervised(Tiny3D(width=4), num_classes=dm.num_classes, init_backbone_from=str(ckpt))
    sup.load_initial_weights()
    for k, v in pre.backbone.state_dict().items():
        assert torch.equal(sup.backbone.state_dict()[k], v), k


def test_foreground_merge_feeds_the_merged_anchor(monkeypatch):
    # with foreground_merge the backbone sees the anchor on another video's background, the positive as it is
    torch.manual_seed(0)
    anchor, positive = torch.randn(4, 3, 8, 16, 16), torch.randn(4, 3, 16, 16, 16)
    seen = []
    for merge in (False, True):
        model = ClipContrastive(Tiny3D(width=4), 2, num_frames=8, foreground_merge=merge, fg_ratio=0.25)
        def record(*clips):
            seen.append(clips)
            return [torch.randn(c.shape[0], 8) for c in clips]

        monkeypatch.setattr(model, "embed", record)
        model.pretext_losses({"anchor": anchor, "positive": positive})
    plain, merged = seen
    from ssvar.components import foreground_merge

    assert torch.equal(plain[0], anchor) and torch.equal(merged[0], foreground_merge(anchor, 0.25))
    assert all(torch.equal(a, b) for a, b in zip(plain[1:], merged[1:]))  # the positive and its variants
    with pytest.raises(ValueError, match="fg_ratio"):
        ClipContrastive(Tiny3D(width=4), 2, foreground_merge=True, fg_ratio=1.5)
