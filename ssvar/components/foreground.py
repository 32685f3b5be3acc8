"""Foreground-background merging: move a clip's moving part onto another video's background.

Contrastive pretraining on videos from static cameras learns the background first: two clips of one
video share it, so "same background" solves instance discrimination without looking at the
action. FAME (Ding et al., "Motion-aware Contrastive Video Representation Learning via
Foreground-background Merging", CVPR 2022) breaks that shortcut by pasting one view's foreground
onto the background of another video of the batch; the contrastive loss then has to match the
foreground. The foreground is found without labels, from how much each pixel changes over the clip.

The details are our choices (FAME's paper gives the idea, not these numbers): the static background
of a clip is its per-pixel temporal median; a pixel's motion is its largest deviation from that
median over the clip, averaged over channels and smoothed over a 5x5 window (so the mask is blobs,
not grain); the foreground is the ``fg_ratio`` of pixels that move most, as one mask for the whole
clip (so the merged clip keeps the foreground's motion exactly and adds none). The other video's
background is its temporal median with its own foreground region replaced by a coarse (4x4) version
of that median: a static object of the other video would otherwise be pasted in as well.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["foreground_merge", "motion_mask", "static_background"]


def static_background(clips: torch.Tensor) -> torch.Tensor:
    """Per-pixel temporal median ``[B, C, 1, H, W]`` of clips ``[B, C, T, H, W]``."""
    return clips.median(dim=2, keepdim=True).values


def motion_mask(clips: torch.Tensor, fg_ratio: float) -> torch.Tensor:
    """A ``[B, 1, 1, H, W]`` 0/1 mask of the ``fg_ratio`` of pixels of each clip that move most.

    Motion of a pixel: its largest absolute deviation from the clip's temporal median over time,
    averaged over channels, then averaged over a 5x5 window. Ties at the threshold are all
    foreground.
    """
    if not 0.0 < fg_ratio <= 1.0:
        raise ValueError(f"fg_ratio must be in (0, 1], got {fg_ratio}")
    if clips.dim() != 5:
        raise ValueError(f"clips must be [B, C, T, H, W], got shape {tuple(clips.shape)}")
    b, _, _, h, w = clips.shape
    motion = (clips - static_background(clips)).abs().mean(1).amax(1, keepdim=True)  # [B, 1, H, W]
    motion = F.avg_pool2d(motion, 5, stride=1, padding=2, count_include_pad=False).unsqueeze(2)
    k = max(1, round(fg_ratio * h * w))
    threshold = motion.flatten(1).topk(k, dim=1).values[:, -1]
    return (motion >= threshold.view(b, 1, 1, 1, 1)).to(clips.dtype)


def foreground_merge(clips: torch.Tensor, fg_ratio: float = 0.2, shift: int = 1) -> torch.Tensor:
    """Each clip's foreground on the static background of the clip ``shift`` places on in the batch.

    ``clips`` ``[B, C, T, H, W]`` (any normalisation; B >= 2). Returns a tensor of the same shape:
    ``mask * clip_i + (1 - mask) * background_{(i - shift) mod B}``. No gradient flows into the
    mask (it is a selection, not a feature).
    """
    if clips.shape[0] < 2:
        raise ValueError("foreground_merge needs at least 2 clips in the batch (another video's background)")
    if shift % clips.shape[0] == 0:
        raise ValueError(f"shift {shift} maps every clip onto its own background (batch of {clips.shape[0]})")
    with torch.no_grad():
        mask = motion_mask(clips, fg_ratio)
        still = static_background(clips)
        coarse = F.interpolate(
            F.adaptive_avg_pool2d(still.squeeze(2), 4), size=still.shape[-2:], mode="bilinear", align_corners=False
        ).unsqueeze(2)
        background = torch.where(mask.bool(), coarse, still).roll(shift, dims=0)
    return mask * clips + (1 - mask) * background
