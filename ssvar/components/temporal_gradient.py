"""Temporal gradient (LTG): per-pixel differences of frames, computed on the device.

A view declared with ``ViewSpec(next_offset=k)`` carries frames ``t`` and ``t + k`` as the two
halves of its time axis (``[..., C, 2T, H, W]``, uint8), decoded in the same pass and cropped and
augmented identically. From it :func:`split_rgb_tg` gives the RGB clip and its temporal gradient

    G_t = floor((I_t - I_{t+k} + 255) / 2)    per channel, in [0, 255],

which is then normalised like RGB (LTG normalises both modalities with the ImageNet statistics).
``k = 1`` is LTG's temporal gradient (consecutive frames); ``k = stride`` is the "slow TG"
ablation (differences of the sampled frames). No second decode, nothing written to disk.
"""

from __future__ import annotations

import torch


def temporal_gradient(frames: torch.Tensor, next_frames: torch.Tensor) -> torch.Tensor:
    """uint8 ``(I_t - I_{t+k} + 255) // 2`` of two equally shaped uint8 clips."""
    if frames.shape != next_frames.shape:
        raise ValueError(f"frame tensors differ in shape: {tuple(frames.shape)} vs {tuple(next_frames.shape)}")
    diff = frames.to(torch.int16) - next_frames.to(torch.int16) + 255
    return torch.div(diff, 2, rounding_mode="floor").to(torch.uint8)


def split_rgb_tg(x: torch.Tensor, time_dim: int = -3) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a ``[..., C, 2T, H, W]`` view with next frames into (RGB clip, temporal gradient)."""
    t2 = x.shape[time_dim]
    if t2 % 2:
        raise ValueError(f"a view with next frames has an even time length, got {t2}")
    rgb, nxt = x.split(t2 // 2, dim=time_dim)
    return rgb, temporal_gradient(rgb, nxt)
