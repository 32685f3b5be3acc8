"""Multi-scale temporal parts: per-time-step features, the cross-scale calibration, the alignment,
and the long-clip view that feeds them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ssvar.components import CrossScaleCalibration, supports_time_features, temporal_alignment_loss, time_features
from ssvar.data.dataset import VideoDataset, ViewSpec
from ssvar.data.index import VideoIndex, VideoRecord
from ssvar.data.transforms import AugmentConfig
from ssvar.models import TimeSformer, Tiny3D


def test_time_features_pool_like_the_backbone():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, 16, 16)
    cnn = Tiny3D(width=4).eval()
    pooled, steps = time_features(cnn, x)
    assert steps.shape == (2, 2, cnn.feature_dim)  # 8 frames, two temporal strides of 2
    assert torch.allclose(pooled, cnn(x), atol=1e-6)
    vit = TimeSformer(img_size=16, patch_size=8, embed_dim=16, depth=1, num_heads=2, num_frames=8).eval()
    pooled, steps = time_features(vit, x)
    assert steps.shape == (2, 8, 16) and torch.allclose(pooled, vit(x), atol=1e-6)
    assert (
        supports_time_features(cnn)
        and supports_time_features(vit)
        and not supports_time_features(torch.nn.Linear(2, 2))
    )


def test_calibration_weights_are_a_distribution_over_all_scales_and_steps():
    torch.manual_seed(0)
    cal = CrossScaleCalibration(dim=8, num_scales=3, max_time_steps=4, num_heads=2)
    short, long = torch.randn(5, 8, requires_grad=True), torch.randn(5, 3, 4, 8, requires_grad=True)
    g = cal(short, long)
    assert g.shape == (5, 8)
    attn = cal.last_attention
    assert attn.shape == (5, 2, 12) and torch.allclose(attn.sum(-1), torch.ones(5, 2), atol=1e-6)
    g.square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in cal.parameters())
    assert short.grad.abs().sum() > 0 and long.grad.abs().sum() > 0


def test_calibration_of_identical_steps_is_their_value_whatever_the_query():
    torch.manual_seed(0)
    cal = CrossScaleCalibration(dim=8, num_scales=2, max_time_steps=3)
    with torch.no_grad():
        cal.scale_embed.zero_(), cal.time_embed.zero_()
    u = torch.randn(1, 1, 1, 8).expand(4, 2, 3, 8)
    g = cal(torch.randn(4, 8), u)
    expected = cal.out(cal.v(cal.norm_kv(u[:, 0, 0])))
    assert torch.allclose(g, expected, atol=1e-6)


def test_calibration_emphasises_the_step_that_matches_the_query():
    cal = CrossScaleCalibration(dim=4, num_scales=2, max_time_steps=2)
    with torch.no_grad():  # identity projections, no norms' scale change matters for the argmax
        for lin in (cal.q, cal.k, cal.v, cal.out):
            lin.weight.copy_(torch.eye(4) * 3), lin.bias.zero_()
        cal.scale_embed.zero_(), cal.time_embed.zero_()
    basis = torch.eye(4)
    long = basis.view(1, 2, 2, 4)  # four distinct steps
    for i in range(4):
        cal(basis[i : i + 1] * 5, long)
        assert int(cal.last_attention[0, 0].argmax()) == i


def test_bad_shapes_are_named():
    cal = CrossScaleCalibration(dim=8, num_scales=2, max_time_steps=2)
    with pytest.raises(ValueError, match="long_steps"):
        cal(torch.randn(2, 8), torch.randn(2, 3, 2, 8))
    with pytest.raises(ValueError, match="max_time_steps"):
        cal(torch.randn(2, 8), torch.randn(2, 2, 3, 8))
    with pytest.raises(ValueError, match="num_heads"):
        CrossScaleCalibration(dim=8, num_scales=2, num_heads=3)


def test_alignment_target_is_detached():
    short, long = torch.randn(3, 5, requires_grad=True), torch.randn(3, 5, requires_grad=True)
    loss = temporal_alignment_loss(short, long)
    loss.backward()
    assert long.grad is None and short.grad.abs().sum() > 0
    same = torch.randn(3, 5)
    assert temporal_alignment_loss(same, same * 2).item() == pytest.approx(0.0, abs=1e-6)
    w = torch.tensor([1.0, 0.0, 0.0])
    per = (1 - torch.cosine_similarity(short, long, dim=1)).detach()
    assert temporal_alignment_loss(short, long, weight=w).detach().item() == pytest.approx(float(per[0]) / 3, rel=1e-5)


def test_long_view_gives_clips_at_each_scale_around_the_short_clip(video_factory):
    from helpers import clip_indices_of

    path = video_factory("v.mp4", num_frames=80)
    index = VideoIndex([VideoRecord("v.mp4", 0)], ["a"])
    views = {"weak": ViewSpec("weak"), "long": ViewSpec("weak", scales=(2, 4), same_as="weak")}
    ds = VideoDataset(
        str(path).rsplit("/", 1)[0], index, views, num_frames=4, stride=3,
        augment=AugmentConfig(crop_size=16, area_range=(1.0, 1.0)), short_side=16,
    )
    for _ in range(3):
        s = ds[0]
        assert s["long"].shape == (2, 3, 4, 16, 16)  # [S, C, T, H, W]
        short = np.array(clip_indices_of(s["weak"]))
        centre = (short[0] + short[-1]) / 2
        for k, mult in enumerate((2, 4)):
            idx = np.array(clip_indices_of(s["long"][k]))
            assert (np.diff(idx) == 3 * mult).all()
            assert abs((idx[0] + idx[-1]) / 2 - centre) <= 1  # the same centre
