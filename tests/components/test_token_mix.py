"""Tube TokenMix: one spatial mask for every frame, the kept fraction, targets mixed by the ratio."""

from __future__ import annotations

import pytest
import torch

from ssvar.components import TubeTokenMix


def _labelled_tokens(B=6, T=4, N=49, D=3):
    """Token (b, t, n) holds the value b in every channel: a mixed token says whose it is."""
    return torch.arange(B, dtype=torch.float32).view(B, 1, 1, 1).expand(B, T, N, D).clone()


def test_tube_mask_is_the_same_in_every_frame_and_keeps_the_drawn_fraction():
    torch.manual_seed(0)
    B, T, N = 6, 4, 49
    draw = TubeTokenMix(alpha=10.0).draw(B)
    mixed = draw(_labelled_tokens(B, T, N))
    own = mixed[..., 0] == torch.arange(B, dtype=torch.float32).view(B, 1, 1)  # [B, T, N]: own token kept
    partner = mixed[..., 0] == draw.perm.float().view(B, 1, 1)
    assert (own | partner).all()  # every token is the clip's own or its partner's
    # The same positions in every frame and for every clip (that has a distinct partner).
    distinct = draw.perm != torch.arange(B)
    assert distinct.any()
    for b in torch.nonzero(distinct).flatten().tolist():
        for t in range(T):
            assert torch.equal(own[b, t], draw.keep)
    assert torch.equal(draw.tube_mask(T), draw.keep.expand(T, -1))
    # The kept fraction is the drawn ratio, rounded to whole tokens.
    kept = int(draw.keep.sum())
    assert kept == round(draw.lam * N)
    assert draw.ratio == pytest.approx(kept / N)
    # A second call (another forward of the same draw) reuses the mask.
    first = draw.keep.clone()
    draw(_labelled_tokens(B, T, N))
    assert torch.equal(draw.keep, first)
    with pytest.raises(ValueError, match="mask of 49 tokens"):
        draw(_labelled_tokens(B, T, 16))


def test_kept_fraction_follows_beta_alpha_alpha():
    torch.manual_seed(1)
    tm = TubeTokenMix(alpha=10.0)
    N, ratios = 196, []
    for _ in range(400):
        d = tm.draw(2)
        d.draw_mask(N)
        ratios.append(d.ratio)
    r = torch.tensor(ratios)
    # Beta(10, 10): mean 1/2, std sqrt(1 / (4 * 21)) = 0.109.
    assert abs(r.mean() - 0.5) < 0.02
    assert abs(r.std() - (1 / 84) ** 0.5) < 0.02
    r2 = []
    for _ in range(400):  # alpha = 1: uniform ratios, std 1/sqrt(12) = 0.289
        d = TubeTokenMix(alpha=1.0).draw(2)
        d.draw_mask(N)
        r2.append(d.ratio)
    assert abs(torch.tensor(r2).std() - 12 ** -0.5) < 0.03


def test_mixed_targets_equal_the_mixing_ratio():
    torch.manual_seed(2)
    B, K = 5, 7
    draw = TubeTokenMix(alpha=2.0).draw(B)
    with pytest.raises(RuntimeError, match="after the tokens"):
        draw.mix(torch.zeros(B, K))
    mixed_tokens = draw(_labelled_tokens(B, 2, 16))
    y = torch.nn.functional.one_hot(torch.arange(B) % K, K).float()
    m = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0])
    r = draw.ratio
    torch.testing.assert_close(draw.mix(y), r * y + (1 - r) * y[draw.perm])
    torch.testing.assert_close(draw.mix(m), r * m + (1 - r) * m[draw.perm])
    # The weight of each clip's own label is the share of its own tokens in the mixed clip.
    own_share = (mixed_tokens[..., 0] == torch.arange(B, dtype=torch.float32).view(B, 1, 1)).float().mean((1, 2))
    for b in range(B):
        if draw.perm[b] != b:
            assert draw.mix(y)[b, b % K] == pytest.approx(float(own_share[b]))
    assert torch.allclose(draw.mix(y).sum(1), torch.ones(B))


def test_image_tokens_and_arguments():
    torch.manual_seed(3)
    draw = TubeTokenMix().draw(3)
    x = torch.randn(3, 9, 8)  # [B, N, D]: an image ViT or flattened tokens
    out = draw(x)
    assert out.shape == x.shape
    keep = draw.keep
    torch.testing.assert_close(out[:, keep], x[:, keep])
    torch.testing.assert_close(out[:, ~keep], x[draw.perm][:, ~keep])
    with pytest.raises(ValueError, match="B=3"):
        draw(torch.randn(4, 9, 8))
    with pytest.raises(ValueError, match="alpha"):
        TubeTokenMix(alpha=0.0)
    # Seeded: the same draw (exact resume restores the global RNG state).
    torch.manual_seed(4)
    a = TubeTokenMix().draw(4)
    a.draw_mask(16)
    torch.manual_seed(4)
    b = TubeTokenMix().draw(4)
    b.draw_mask(16)
    assert a.lam == b.lam and torch.equal(a.perm, b.perm) and torch.equal(a.keep, b.keep)


def test_mixing_in_a_timesformer_happens_before_the_embeddings():
    from ssvar.models import TimeSformer

    torch.manual_seed(5)
    net = TimeSformer(variant=None, embed_dim=16, depth=1, num_heads=2, patch_size=8, img_size=16, num_frames=2).eval()
    x = torch.randn(4, 3, 2, 16, 16)
    draw = TubeTokenMix().draw(4)
    with torch.no_grad():
        out = net(x, token_hook=draw)
        # Same result as mixing the patch embeddings by hand before the position/time embeddings.
        tokens = (
            net.patch_embed.proj(x.transpose(1, 2).reshape(8, 3, 16, 16))
            .flatten(2)
            .transpose(1, 2)
            .reshape(4, 2, 4, 16)
        )
        keep = draw.keep.view(-1, 1)
        by_hand = torch.where(keep, tokens, tokens[draw.perm])
        torch.testing.assert_close(out, net(x, token_hook=lambda t: by_hand))
