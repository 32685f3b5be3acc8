"""Temporal gradient (LTG): the formula on every pair of uint8 values against plain integer
arithmetic, splitting a view with next frames, and the errors."""

from __future__ import annotations

import pytest
import torch

from ssvar.components import split_rgb_tg, temporal_gradient


def test_formula_on_every_pair_of_uint8_values():
    a = torch.arange(256, dtype=torch.uint8).repeat_interleave(256)
    b = torch.arange(256, dtype=torch.uint8).repeat(256)
    got = temporal_gradient(a, b)
    assert got.dtype == torch.uint8
    # The reference: (I_t - I_{t+k} + 255) // 2 in Python integers (no wrap-around, floor division).
    want = torch.tensor([(int(x) - int(y) + 255) // 2 for x, y in zip(a.tolist(), b.tolist())], dtype=torch.uint8)
    assert torch.equal(got, want)
    assert int(got.min()) == 0 and int(got.max()) == 255  # (0 - 255 + 255) // 2 and (255 - 0 + 255) // 2
    same = torch.arange(256, dtype=torch.uint8)
    assert (temporal_gradient(same, same) == 127).all()  # nothing moves: mid-grey everywhere


def test_split_gives_the_clip_and_the_gradient_to_its_next_frames():
    g = torch.Generator().manual_seed(0)
    b, c, t, h, w = 2, 3, 4, 5, 6
    rgb = torch.randint(0, 256, (b, c, t, h, w), generator=g, dtype=torch.uint8)
    nxt = torch.randint(0, 256, (b, c, t, h, w), generator=g, dtype=torch.uint8)
    clip, tg = split_rgb_tg(torch.cat([rgb, nxt], dim=2))  # [B, C, 2T, H, W]: frames t, then t + k
    assert torch.equal(clip, rgb)
    ref = torch.empty_like(rgb)
    for i in range(b):
        for ti in range(t):  # frame by frame, as the formula reads
            ref[i, :, ti] = ((rgb[i, :, ti].int() - nxt[i, :, ti].int() + 255) // 2).to(torch.uint8)
    assert torch.equal(tg, ref)
    # A time axis elsewhere (e.g. [C, 2T, H, W] samples with time_dim=1).
    clip1, tg1 = split_rgb_tg(torch.cat([rgb[0], nxt[0]], dim=1), time_dim=1)
    assert torch.equal(clip1, rgb[0]) and torch.equal(tg1, ref[0])


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="even time length"):
        split_rgb_tg(torch.zeros(1, 3, 5, 2, 2, dtype=torch.uint8))
    with pytest.raises(ValueError, match="differ in shape"):
        temporal_gradient(torch.zeros(2, dtype=torch.uint8), torch.zeros(3, dtype=torch.uint8))
