"""Losses that used to be written inside method files, now named parts: each against a hand-written
reference, and each method's loss term bit-identical to the inline computation it replaced.

The method-level checks call the methods' per-iteration hooks directly (``train_step``,
``pretext_losses``) on fixed inputs; ``_old_*`` are the inline computations as they were."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ssvar.components import temporal_slices, time_features, token_mix_loss
from ssvar.methods import TGFixMatch, TimeBalance, TimeBalancePretrain
from ssvar.models import TimeSformer, Tiny3D

# ---------------------------------------------------------------- the computations as they were


def _old_feature_alignment(rgb_stages, tg_stages):  # ssvar/methods/tg_fixmatch.py
    total = rgb_stages[0].new_zeros(())
    for fr, ft in zip(rgb_stages, tg_stages):
        total = total + (1.0 - F.cosine_similarity(fr, ft.detach(), dim=1).mean())
    return total


def _old_distillation(student_logits, target, kind):  # ssvar/methods/timebalance.py
    if kind == "mse":
        return F.mse_loss(student_logits.float().softmax(1), target)
    log_p = student_logits.float().log_softmax(1)
    return (target * (target.clamp_min(1e-12).log() - log_p)).mean()


def _old_global_and_slices(bb, x, slices):  # TimeBalancePretrain.global_and_slices
    if hasattr(bb, "forward_stages") and getattr(bb, "stage_dims", None):
        fmap = bb.forward_stages(x)[-1]
        glob, per_t = fmap.mean(dim=(2, 3, 4)), fmap.mean(dim=(3, 4))
    else:
        cls, tokens = bb.forward_features(x)
        glob, per_t = cls, tokens.mean(dim=2).transpose(1, 2)
    return glob, F.adaptive_avg_pool1d(per_t, slices).transpose(1, 2)


def _old_mix_loss(logits_mix, y_mix, m_mix, kind):  # ssvar/methods/svformer.py
    if kind == "mse":
        per_clip = (logits_mix.float() - y_mix).pow(2).mean(dim=1)
    else:
        per_clip = -(y_mix * logits_mix.float().log_softmax(dim=1)).sum(dim=1)
    return (per_clip * m_mix).mean()


def _tiny_vit() -> TimeSformer:
    return TimeSformer(variant=None, embed_dim=16, depth=1, num_heads=2, patch_size=8, img_size=16, num_frames=8)


# ---------------------------------------------------------------- time features and slices


def test_time_features_pool_exactly_like_the_backbone():
    # The mean of the per-time means differs from the backbone's one mean in the last bit
    # (3.7e-9 here before the fix): time_features now pools as the backbone does.
    torch.manual_seed(0)
    net, x = Tiny3D(width=8).eval(), torch.randn(3, 3, 8, 32, 32)
    with torch.no_grad():
        pooled, steps = time_features(net, x)
        assert torch.equal(pooled, net(x))
        assert torch.equal(steps, net.forward_stages(x)[-1].mean(dim=(3, 4)).transpose(1, 2))


def _ref_slices(per_time: torch.Tensor, k: int) -> torch.Tensor:
    """Adaptive average pooling written out: slice i averages steps floor(i T/k) .. ceil((i+1) T/k) - 1."""
    b, t, d = per_time.shape
    out = torch.empty(b, k, d, dtype=per_time.dtype)
    for i in range(k):
        lo, hi = (i * t) // k, -(-((i + 1) * t) // k)
        out[:, i] = per_time[:, lo:hi].mean(dim=1)
    return out


@pytest.mark.parametrize("net", [lambda: Tiny3D(width=4), _tiny_vit], ids=["cnn", "timesformer"])
@pytest.mark.parametrize("k", [2, 3, 4])
def test_temporal_slices_reuse_time_features_and_equal_the_old_slicing(net, k):
    torch.manual_seed(0)
    m, x = net().eval(), torch.randn(2, 3, 8, 16, 16)
    with torch.no_grad():
        pooled, slices = temporal_slices(m, x, k)
        old_glob, old_slices = _old_global_and_slices(m, x, k)
        per_time = time_features(m, x)[1]
    assert torch.equal(pooled, old_glob) and torch.equal(slices, old_slices)  # bit for bit
    assert slices.shape == (2, k, pooled.shape[1])
    torch.testing.assert_close(slices, _ref_slices(per_time, k))  # k > T' (CNN: T' = 2) repeats steps
    with pytest.raises(ValueError, match="slices"):
        temporal_slices(m, x, 0)


# ---------------------------------------------------------------- TokenMix loss


@pytest.mark.parametrize("kind", ["mse", "ce"])
def test_token_mix_loss_matches_a_loop_reference_and_the_old_inline_code(kind):
    g = torch.Generator().manual_seed(0)
    logits, targets = torch.randn(5, 4, generator=g), torch.rand(5, 4, generator=g).softmax(1)
    weights = torch.tensor([1.0, 0.0, 0.5, 0.25, 1.0])
    ref = 0.0
    for i in range(5):
        if kind == "mse":
            per = sum((float(logits[i, c]) - float(targets[i, c])) ** 2 for c in range(4)) / 4
        else:
            lse = torch.logsumexp(logits[i], 0).item()
            per = -sum(float(targets[i, c]) * (float(logits[i, c]) - lse) for c in range(4))
        ref += float(weights[i]) * per
    loss = token_mix_loss(logits, targets, weights, kind)
    assert loss.item() == pytest.approx(ref / 5, rel=1e-5)
    assert torch.equal(loss, _old_mix_loss(logits, targets, weights, kind))
    with pytest.raises(ValueError, match="kind"):
        token_mix_loss(logits, targets, weights, "l1")
    with pytest.raises(ValueError, match=r"weights \[B\]"):
        token_mix_loss(logits, targets, weights[:3])


# ---------------------------------------------------------------- the methods' loss terms, unchanged


NO_TRAINER = pytest.mark.filterwarnings("ignore:.*self.trainer. reference is not registered")


@NO_TRAINER
def test_tg_fixmatch_alignment_term_is_unchanged():
    torch.manual_seed(0)
    m = TGFixMatch(Tiny3D(width=4), num_classes=3, align_weight=0.7, proj_dim=8).eval()
    g = torch.Generator().manual_seed(1)
    def clip(n):
        return torch.randn(n, 3, 8, 16, 16, generator=g)
    labeled = {"weak": clip(2), "weak_tg": clip(2), "label": torch.tensor([0, 2])}
    unlabeled = {"weak": clip(3), "weak_tg": clip(3), "strong": clip(3), "strong_tg": clip(3)}
    losses = m.train_step(labeled, unlabeled).losses
    with torch.no_grad():
        rgb = m.backbone.forward_stages(torch.cat([labeled["weak"], unlabeled["weak"], unlabeled["strong"]]))
        tg = m.tg_backbone.forward_stages(torch.cat([labeled["weak_tg"], unlabeled["weak_tg"], unlabeled["strong_tg"]]))
        expected = 0.7 * _old_feature_alignment([f[:5] for f in rgb], [f[:5] for f in tg])
    assert torch.equal(losses["align"].detach(), expected)


@NO_TRAINER
@pytest.mark.parametrize("kind", ["mse", "kl"])
def test_timebalance_distillation_terms_are_unchanged(kind):
    torch.manual_seed(0)
    m = TimeBalance(Tiny3D(width=4), num_classes=3, distill_loss=kind).eval()
    m.reweighter.set_scores({"labeled": torch.tensor([0.2, 0.9]), "unlabeled": torch.tensor([0.0, 0.5, 1.0])})
    g = torch.Generator().manual_seed(1)
    labeled = {
        "weak": torch.randn(2, 3, 8, 16, 16, generator=g),
        "label": torch.tensor([1, 2]),
        "index": torch.tensor([1, 0]),
    }
    unlabeled = {"weak": torch.randn(3, 3, 8, 16, 16, generator=g), "index": torch.tensor([2, 0, 1])}
    losses = m.train_step(labeled, unlabeled).losses
    with torch.no_grad():
        x = torch.cat([labeled["weak"], unlabeled["weak"]])
        logits = m(x)
        p_inv, p_dist = m.teacher_inv(x).float().softmax(1), m.teacher_dist(x).float().softmax(1)
        s = torch.tensor([0.9, 0.2, 1.0, 0.0, 0.5])
        target = s[:, None] * p_inv + (1 - s[:, None]) * p_dist
    assert torch.equal(losses["distill_labeled"].detach(), 50.0 * _old_distillation(logits[:2], target[:2], kind))
    assert torch.equal(losses["distill_unlabeled"].detach(), 100.0 * _old_distillation(logits[2:], target[2:], kind))


@pytest.mark.parametrize("net", [lambda: Tiny3D(width=4), lambda: _tiny_vit()], ids=["cnn", "timesformer"])
def test_timebalance_pretrain_terms_are_unchanged(net):
    from ssvar.components import global_local_contrastive, nt_xent

    torch.manual_seed(0)
    m = TimeBalancePretrain(net(), num_classes=2, local_local_weight=0, dense_instance_weight=0.0, num_frames=8,
                            sparse_stride=2, num_dense_clips=2, dense_stride=1, proj_dim=8, proj_hidden_dim=8).eval()
    g = torch.Generator().manual_seed(1)
    b, k = 2, 2
    views = {
        "sparse": torch.randn(b, 3, 8, 16, 16, generator=g),
        "sparse_aug": torch.randn(b, 3, 8, 16, 16, generator=g),
        "dense": torch.randn(b, k, 3, 8, 16, 16, generator=g),
        "dense_aug": torch.randn(b, k, 3, 8, 16, 16, generator=g),
    }
    losses = m.pretext_losses(views)
    with torch.no_grad():
        glob, slices = _old_global_and_slices(m.backbone, torch.cat([views["sparse"], views["sparse_aug"]]), k)
        zg, zs = m._project(glob), m._project(slices)
        dense = torch.cat([views["dense"], views["dense_aug"]])
        zd = m._project(m.backbone(dense.flatten(0, 1)).view(2 * b, k, -1))
        instance = nt_xent(zg[:b], zg[b:], m.temperature, m.gather)
        gl = 0.5 * (
            global_local_contrastive(zs[:b], zd[:b], m.temperature)
            + global_local_contrastive(zs[b:], zd[b:], m.temperature)
        )
    assert torch.equal(losses["instance"].detach(), instance)
    assert torch.equal(losses["global_local"].detach(), gl)
