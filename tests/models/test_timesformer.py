"""TimeSformer: divided space-time attention against a naive reference, embeddings, hooks, checkpoints."""

from __future__ import annotations

import math

import pytest
import torch

from ssvar.models import TimeSformer, timesformer_vit_b, timesformer_vit_s
from ssvar.models.timesformer import DividedBlock


def tiny(**kw) -> TimeSformer:
    """A 2-layer, 32-d model at 32 px (2x2 patches of 16), 4 frames."""
    args = dict(variant=None, embed_dim=32, depth=2, num_heads=4, img_size=32, num_frames=4)
    return TimeSformer(**{**args, **kw})


# ----------------------------------------------------------------------------------------------
# Naive reference: the reference implementation's flat token layout "b (n t) d" (token 1 + n*T + t),
# explicit loops and an explicit per-head softmax; only the weights are taken from the module.
def _ln(x, norm):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + norm.eps) * norm.weight + norm.bias


def _lin(x, layer):
    return torch.einsum("...i,oi->...o", x, layer.weight) + layer.bias


def _attn(seq, attn):
    """seq [L, D] -> [L, D]: multi-head softmax attention, heads by explicit loop."""
    L, D = seq.shape
    H = attn.num_heads
    q, k, v = _lin(seq, attn.qkv).split(D, dim=-1)
    heads = []
    for h in range(H):
        sl = slice(h * D // H, (h + 1) * D // H)
        s = torch.einsum("id,jd->ij", q[:, sl], k[:, sl]) / math.sqrt(D // H)
        a = torch.exp(s - s.max(-1, keepdim=True).values)
        heads.append(torch.einsum("ij,jd->id", a / a.sum(-1, keepdim=True), v[:, sl]))
    return _lin(torch.cat(heads, -1), attn.proj)


def naive_block(blk, X, T, N):
    """X [B, 1 + N*T, D] in the reference layout -> the block output in the same layout."""
    B, _, D = X.shape
    cls, P = X[:, 0], X[:, 1:].reshape(B, N, T, D)
    Pt = torch.empty_like(P)
    for b in range(B):  # temporal attention: one sequence of T tokens per spatial location
        for n in range(N):
            Pt[b, n] = P[b, n] + _lin(_attn(_ln(P[b, n], blk.temporal_norm1), blk.temporal_attn), blk.temporal_fc)
    Ps, cls_res = torch.empty_like(Pt), torch.zeros_like(cls)
    for b in range(B):  # spatial attention: per frame, the CLS token and the N patches of that frame
        for t in range(T):
            seq = torch.cat([cls[b][None], Pt[b, :, t]])
            r = _attn(_ln(seq, blk.norm1), blk.attn)
            cls_res[b] += r[0] / T
            Ps[b, :, t] = Pt[b, :, t] + r[1:]
    Y = torch.cat([(cls + cls_res)[:, None], Ps.reshape(B, N * T, D)], dim=1)
    h = _lin(_ln(Y, blk.norm2), blk.mlp.fc1)
    h = 0.5 * h * (1 + torch.erf(h / math.sqrt(2)))
    return Y + _lin(h, blk.mlp.fc2)


def test_divided_block_matches_naive_reference():
    torch.manual_seed(0)
    B, T, N, D = 2, 3, 5, 32
    blk = DividedBlock(D, num_heads=4).eval()
    with torch.no_grad():
        for name, p in blk.named_parameters():  # random everything, temporal_fc included (non-zero)
            is_norm_scale = "norm" in name and name.endswith("weight")
            p.copy_(1 + 0.1 * torch.randn_like(p) if is_norm_scale else 0.2 * torch.randn_like(p))
    assert blk.temporal_fc.weight.abs().min() > 0
    cls, x = torch.randn(B, 1, D), torch.randn(B, T, N, D)
    with torch.no_grad():
        got_cls, got_x = blk(cls, x)
        ref = naive_block(blk, torch.cat([cls, x.transpose(1, 2).reshape(B, N * T, D)], 1), T, N)
    torch.testing.assert_close(got_cls[:, 0], ref[:, 0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got_x, ref[:, 1:].reshape(B, N, T, D).transpose(1, 2), atol=1e-5, rtol=1e-5)


def test_forward_backward_and_shapes():
    torch.manual_seed(0)
    net = tiny(drop_path_rate=0.2, attn_drop=0.1, drop_rate=0.1)
    x = torch.randn(2, 3, 4, 32, 32, requires_grad=True)
    f = net(x)
    assert f.shape == (2, net.feature_dim) == (2, 32)
    f.sum().backward()
    assert x.grad is not None and all(p.grad is not None for p in net.parameters())
    net.eval()
    with torch.no_grad():
        assert net.forward_tokens(x).shape == (2, 4, 4, 32)
        assert net.forward_time(x).shape == (2, 4, 32)
        torch.testing.assert_close(net.forward_time(x), net.forward_tokens(x).mean(2))
        torch.testing.assert_close(net(x), net(x))  # eval: no dropout / drop-path


def test_vit_s_full_config_tiny_input():
    net = timesformer_vit_s(num_frames=8)  # 224 px, 8 frames: the real layout
    assert (net.feature_dim, net.depth, net.num_heads, len(net.blocks)) == (384, 12, 6, 12)
    assert sum(p.numel() for p in net.parameters()) == 30_548_352
    x = torch.randn(1, 3, 2, 32, 32)  # 2x2 patches, 2 frames: both embeddings interpolated
    f = net(x)
    assert f.shape == (1, 384)
    f.sum().backward()
    assert net.patch_embed.proj.weight.grad is not None


@pytest.mark.slow
def test_vit_b_config():
    net = timesformer_vit_b(img_size=32, num_frames=2)
    assert (net.feature_dim, net.num_heads, len(net.blocks)) == (768, 12, 12)
    assert sum(p.numel() for p in timesformer_vit_b().parameters()) == 121_258_752
    assert net(torch.randn(1, 3, 2, 32, 32)).shape == (1, 768)


def test_variant_arguments():
    net = TimeSformer(variant="vit_b", depth=1, img_size=32)
    assert (net.embed_dim, net.num_heads, len(net.blocks)) == (768, 12, 1)
    assert TimeSformer(depth=1, img_size=32).embed_dim == 384  # default variant: ViT-S
    with pytest.raises(ValueError, match="embed_dim, depth and num_heads"):
        TimeSformer(variant=None, embed_dim=32)
    with pytest.raises(ValueError, match="variant"):
        TimeSformer(variant="vit_l")


def test_yaml_class_path():
    from jsonargparse import ArgumentParser

    from ssvar.models import VideoBackbone

    parser = ArgumentParser()
    parser.add_argument("--backbone", type=VideoBackbone)
    cfg = parser.parse_string(
        "backbone:\n"
        "  class_path: ssvar.models.TimeSformer\n"
        "  init_args: {variant: null, embed_dim: 32, depth: 1, num_heads: 2, img_size: 32}\n"
    )
    net = parser.instantiate(cfg).backbone
    assert isinstance(net, TimeSformer) and net.feature_dim == 32 and len(net.blocks) == 1


def test_fresh_model_is_image_vit_per_frame(tmp_path):
    """temporal_fc = 0 and time_embed = 0: loaded with a timm image ViT's weights, the model is that ViT
    on each frame. Exact for T = 1, and for T > 1 when all frames are equal (frames meet only in the
    frame-averaged CLS update, which is then the single-frame one); a non-zero temporal_fc breaks it."""
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    vit = timm.create_model("vit_small_patch16_224", pretrained=False, img_size=32, depth=2).eval()
    path = tmp_path / "vit.pt"
    torch.save(vit.state_dict(), path)  # image layout: no temporal_* keys, a head
    net = timesformer_vit_s(depth=2, img_size=32, num_frames=4, checkpoint=str(path)).eval()
    torch.testing.assert_close(net.blocks[1].temporal_attn.qkv.weight, vit.blocks[1].attn.qkv.weight)
    assert not net.blocks[0].temporal_fc.weight.any() and not net.time_embed.any()

    frame = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref = vit.forward_features(frame)  # [B, 1 + N, D] after the final norm
        cls, tokens = net.forward_features(frame[:, :, None])  # T = 1
        torch.testing.assert_close(cls, ref[:, 0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(tokens[:, 0], ref[:, 1:], atol=1e-5, rtol=1e-5)

        clip = frame[:, :, None].expand(-1, -1, 4, -1, -1)  # 4 equal frames
        cls, tokens = net.forward_features(clip)
        torch.testing.assert_close(cls, ref[:, 0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(tokens, ref[:, None, 1:].expand(-1, 4, -1, -1), atol=1e-5, rtol=1e-5)

        net.blocks[0].temporal_fc.weight.normal_(std=0.05)
        assert not torch.allclose(net(clip), ref[:, 0], atol=1e-3)


def _random_timm_vit(timm, **kw):
    """A tiny timm image ViT (timm's own class and key layout) with every parameter random,
    norms and biases included, so every copied tensor matters."""
    from timm.models.vision_transformer import VisionTransformer

    vit = VisionTransformer(
        **{**dict(img_size=32, patch_size=16, embed_dim=32, depth=2, num_heads=4, num_classes=7), **kw}
    )
    with torch.no_grad():
        for name, p in vit.named_parameters():
            if name.endswith("weight") and "norm" in name:
                p.copy_(1 + 0.2 * torch.randn_like(p))
            else:
                p.copy_(0.3 * torch.randn_like(p))
    return vit.eval()


@pytest.mark.parametrize("fmt", ["pt", "safetensors"])
def test_timm_image_vit_checkpoint_starts_as_image_model_per_frame(tmp_path, fmt):
    """Issue 9 point 4: a randomly initialised timm ViT saved to disk and loaded into TimeSformer
    (image layout: no temporal keys, a classifier head). Spatial attention, MLP, norms, patch and
    position embeddings come from the image model; temporal attention is a copy of the spatial
    one behind a zero ``temporal_fc``; time embeddings are zero. With one CLS token per frame the
    per-frame features of a clip of 4 DIFFERENT frames equal the image model's on each frame."""
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    vit = _random_timm_vit(timm)
    path = tmp_path / f"vit.{fmt}"
    if fmt == "pt":
        torch.save(vit.state_dict(), path)
    else:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in vit.state_dict().items()}, str(path))
    net = tiny(cls_per_frame=True, checkpoint=str(path)).eval()
    # What was copied, and the temporal parts at their initial values.
    for i, (blk, ref_blk) in enumerate(zip(net.blocks, vit.blocks)):
        torch.testing.assert_close(blk.attn.qkv.weight, ref_blk.attn.qkv.weight)
        torch.testing.assert_close(blk.mlp.fc2.bias, ref_blk.mlp.fc2.bias)
        torch.testing.assert_close(blk.temporal_attn.qkv.weight, ref_blk.attn.qkv.weight)
        torch.testing.assert_close(blk.temporal_norm1.weight, ref_blk.norm1.weight)
        assert not blk.temporal_fc.weight.any() and not blk.temporal_fc.bias.any(), i
    assert not net.time_embed.any()
    torch.testing.assert_close(net.pos_embed, vit.pos_embed)
    torch.testing.assert_close(net.patch_embed.proj.weight, vit.patch_embed.proj.weight)

    clip = torch.randn(2, 3, 4, 32, 32)  # 4 different frames
    with torch.no_grad():
        ref = torch.stack([vit.forward_features(clip[:, :, t]) for t in range(4)], 1)  # [B, T, 1 + N, D]
        pooled, tokens = net.forward_features(clip)
        torch.testing.assert_close(tokens, ref[:, :, 1:], atol=1e-5, rtol=1e-5)  # every frame's patch tokens
        torch.testing.assert_close(pooled, ref[:, :, 0].mean(1), atol=1e-5, rtol=1e-5)  # frame-averaged CLS
        torch.testing.assert_close(net.forward_time(clip), ref[:, :, 1:].mean(2), atol=1e-5, rtol=1e-5)
        # The per-frame CLS features themselves, through the blocks.
        cls, x = net.embed(clip)
        for blk in net.blocks:
            cls, x = blk(cls, x)
        torch.testing.assert_close(net.norm(cls), ref[:, :, 0], atol=1e-5, rtol=1e-5)
        # The reference layout (shared CLS) is the image model only on equal frames.
        shared = tiny(checkpoint=str(path)).eval()
        assert not torch.allclose(shared.forward_tokens(clip), ref[:, :, 1:], atol=1e-3)
        # Leaving the initial values makes the frames interact: the check above can fail.
        net.blocks[1].temporal_fc.weight.normal_(std=0.1)
        assert not torch.allclose(net.forward_tokens(clip), ref[:, :, 1:], atol=1e-3)


def test_cls_per_frame_shapes_and_backward():
    torch.manual_seed(0)
    net = tiny(cls_per_frame=True, drop_path_rate=0.1)
    x = torch.randn(2, 3, 4, 32, 32)
    f = net(x)
    assert f.shape == (2, 32)
    f.sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    net.eval()
    with torch.no_grad():  # one frame: both layouts are the same network
        shared = tiny().eval()
        shared.load_state_dict(net.state_dict())
        torch.testing.assert_close(net(x[:, :, :1]), shared(x[:, :, :1]))


def test_one_block_patch_tokens_are_per_frame():
    """Fresh model (temporal_fc = 0, time_embed = 0), one block: a frame's patch tokens equal those
    of that frame run alone as a 1-frame clip (only the CLS token mixes frames, from block 2 on)."""
    torch.manual_seed(0)
    net = tiny(depth=1).eval()
    x = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        tokens = net.forward_tokens(x)
        for t in range(4):
            torch.testing.assert_close(tokens[:, t], net.forward_tokens(x[:, :, t : t + 1])[:, 0], atol=1e-5, rtol=1e-5)
        net.blocks[0].temporal_fc.weight.normal_(std=0.1)  # the temporal path now mixes frames
        assert not torch.allclose(net.forward_tokens(x)[:, 0], net.forward_tokens(x[:, :, :1])[:, 0], atol=1e-4)


def test_position_and_time_embedding_interpolation():
    torch.manual_seed(0)
    net = tiny().eval()
    with torch.no_grad():
        net.time_embed.normal_()
        _, pos = net._pos_embed(2, 2)
        torch.testing.assert_close(pos[0, 0], net.pos_embed[0, 1:])  # native size: unchanged
        _, pos = net._pos_embed(3, 4)
        assert pos.shape == (1, 1, 12, 32)
        # A constant grid stays constant under interpolation.
        net.pos_embed[:, 1:] = net.pos_embed[:, 1:2]
        torch.testing.assert_close(net._pos_embed(3, 4)[1][0, 0], net.pos_embed[0, 1:2].expand(12, -1))
        torch.testing.assert_close(net._time_embed(4)[:, :, 0], net.time_embed)
        assert net._time_embed(8).shape == (1, 8, 1, 32)
        x = torch.randn(2, 3, 8, 48, 64)  # 3x4 patches, 8 frames
        assert net.forward_tokens(x).shape == (2, 8, 12, 32)
        assert net(x).shape == (2, 32)


def test_token_hook():
    torch.manual_seed(0)
    net = tiny().eval()
    x, y = torch.randn(2, 3, 4, 32, 32), torch.randn(2, 3, 4, 32, 32)
    seen = []

    def identity(tokens):
        seen.append(tokens.shape)
        return tokens

    def zero(tokens):
        return torch.zeros_like(tokens)

    with torch.no_grad():
        torch.testing.assert_close(net(x, token_hook=identity), net(x))
        assert seen == [(2, 4, 4, 32)]
        assert not torch.allclose(net(x, token_hook=zero), net(x))
        # Applied before the position/time embeddings: zeroed tokens leave no trace of the input.
        torch.testing.assert_close(net.forward_tokens(x, token_hook=zero), net.forward_tokens(y, token_hook=zero))
        # Tube-TokenMix-like use: mixing with the batch flipped.
        mix = lambda t: torch.where(torch.arange(4).view(1, 1, 4, 1) < 2, t, t.flip(0))  # noqa: E731
        assert net(x, token_hook=mix).shape == (2, 32)
        with pytest.raises(ValueError, match="token_hook"):
            net(x, token_hook=lambda t: t[:, :, :2])


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    a = tiny()
    with torch.no_grad():
        for blk in a.blocks:
            blk.temporal_fc.weight.normal_(std=0.1)
        a.time_embed.normal_(std=0.1)
    a.eval()
    x = torch.randn(1, 3, 4, 32, 32)

    own = tmp_path / "own.pt"
    torch.save(a.state_dict(), own)
    b = tiny(checkpoint=str(own)).eval()
    with torch.no_grad():
        torch.testing.assert_close(b(x), a(x))

    # Lightning checkpoint of a method holding the backbone.
    lit = tmp_path / "lit.ckpt"
    torch.save({"state_dict": {f"backbone.{k}": v for k, v in a.state_dict().items()}}, lit)
    c = tiny()
    c.load_checkpoint(str(lit), prefix="backbone.")
    with torch.no_grad():
        torch.testing.assert_close(c.eval()(x), a(x))

    # Reference TimeSformer layout: {"model_state": {"model.<key>": ..., "model.head.*": ...}}.
    ref = tmp_path / "ref.pyth"
    state = {f"model.{k}": v for k, v in a.state_dict().items()}
    state.update({"model.head.weight": torch.zeros(10, 32), "model.head.bias": torch.zeros(10)})
    torch.save({"model_state": state}, ref)
    d = tiny(checkpoint=str(ref)).eval()
    with torch.no_grad():
        torch.testing.assert_close(d(x), a(x))

    # Another grid / frame count: pos_embed and time_embed are resized on load.
    e = tiny(img_size=64, num_frames=8, checkpoint=str(own))
    assert e.pos_embed.shape == (1, 17, 32) and e.time_embed.shape == (1, 8, 32)
    torch.testing.assert_close(e.pos_embed[0, 0], a.pos_embed[0, 0])

    with pytest.raises(RuntimeError, match="does not match"):
        tiny(embed_dim=64, checkpoint=str(own))
