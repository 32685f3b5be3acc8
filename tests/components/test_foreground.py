"""Foreground-background merging (FAME-style): the moving part of a clip on another video's background."""

from __future__ import annotations

import pytest
import torch

from ssvar.components import foreground_merge, motion_mask, static_background


def _clips(b: int = 3, t: int = 8, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Clips with a textured static background per video and a 6x6 square moving right (the
    square's path is the true foreground)."""
    g = torch.Generator().manual_seed(0)
    background = torch.rand(b, 3, 1, size, size, generator=g) * 0.5
    clips = background.expand(b, 3, t, size, size).clone()
    path = torch.zeros(b, 1, 1, size, size)
    for i in range(b):
        y = 4 + 8 * i
        for f in range(t):
            x = 2 + 2 * f
            clips[i, :, f, y : y + 6, x : x + 6] = torch.tensor([1.0, 0.9, 0.1]).view(3, 1, 1)
            path[i, :, :, y : y + 6, x : x + 6] = 1
    return clips, path


def test_the_mask_covers_the_moving_square_and_has_the_asked_size():
    clips, path = _clips()
    # the path is 6 x 20 = 120 of 1024 pixels; ask for about that much
    mask = motion_mask(clips, fg_ratio=120 / 1024)
    assert mask.shape == (3, 1, 1, 32, 32)
    inter = (mask * path).sum((1, 2, 3, 4)) / path.sum((1, 2, 3, 4))
    assert (inter > 0.8).all(), inter  # most of the path is foreground (the 5x5 smoothing blurs its ends)
    assert ((mask.sum((1, 2, 3, 4)) - 120).abs() <= 8).all()  # ties aside, the asked fraction


def test_merge_puts_the_foreground_on_the_previous_videos_background():
    clips, path = _clips()
    merged = foreground_merge(clips, fg_ratio=0.2)
    mask = motion_mask(clips, 0.2).bool().expand_as(clips)
    still = static_background(clips).expand_as(clips)
    # inside the mask: the clip itself, moving square included
    assert torch.equal(merged[mask], clips[mask])
    # outside both videos' masks: exactly video i-1's static background, not video i's
    for i in range(3):
        j = (i - 1) % 3
        keep = ~mask[i] & ~mask[j]
        assert torch.equal(merged[i][keep], still[j][keep])
        assert not torch.equal(merged[i][keep], clips[i][keep])


def test_the_other_videos_foreground_is_not_pasted_in():
    # video 1 has a static bright bar inside its moving region: the median keeps it, the merge must not
    clips, _ = _clips(b=2)
    clips[1, :, :, 10:14, 4:20] = 1.0  # static, inside the moving square's rows: part of the mask region
    mask1 = motion_mask(clips[1:], 0.2)[0, 0, 0].bool()
    merged = foreground_merge(clips, fg_ratio=0.2)
    onto0 = merged[0, :, 0]  # video 0 takes video 1's background
    mask0 = motion_mask(clips[:1], 0.2)[0, 0, 0].bool()
    region = mask1 & ~mask0
    assert region.any()
    assert (onto0[:, region] < 0.9).all()  # the coarse version, not the bright static bar


def test_gradients_flow_to_the_foreground_only_and_arguments_are_checked():
    clips, _ = _clips()
    clips.requires_grad_(True)
    merged = foreground_merge(clips, fg_ratio=0.2)
    merged.sum().backward()
    mask = motion_mask(clips.detach(), 0.2).expand_as(clips)
    assert torch.equal(clips.grad, mask)
    with pytest.raises(ValueError, match="at least 2 clips"):
        foreground_merge(clips[:1].detach())
    with pytest.raises(ValueError, match="its own background"):
        foreground_merge(clips.detach(), shift=3)
    with pytest.raises(ValueError, match="fg_ratio"):
        motion_mask(clips.detach(), 0.0)
    with pytest.raises(ValueError, match=r"\[B, C, T, H, W\]"):
        motion_mask(clips.detach()[0], 0.2)
