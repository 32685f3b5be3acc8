"""Feature alignment and soft-target distillation against hand-written references (explicit loops)
and closed forms."""

from __future__ import annotations

import math

import pytest
import torch

from ssvar.components import distillation_loss, feature_alignment_loss


def _ref_alignment(features, targets):
    """sum_stage (1 - mean over samples and positions of cos over channels), one cosine at a time."""
    total = 0.0
    for f, t in zip(features, targets):
        b, c = f.shape[:2]
        fv, tv = f.reshape(b, c, -1), t.reshape(b, c, -1)
        cosines = []
        for i in range(b):
            for p in range(fv.shape[2]):
                u, v = fv[i, :, p], tv[i, :, p]
                cosines.append(float(u @ v) / max(math.sqrt(float(u @ u)) * math.sqrt(float(v @ v)), 1e-8))
        total += 1.0 - sum(cosines) / len(cosines)
    return total


def test_feature_alignment_matches_the_reference_and_pulls_only_the_first_network():
    torch.manual_seed(0)
    feats = [
        torch.randn(2, 4, 3, 2, 2, dtype=torch.float64, requires_grad=True),
        torch.randn(2, 6, 1, 1, 1, dtype=torch.float64, requires_grad=True),
    ]
    targets = [
        torch.randn(2, 4, 3, 2, 2, dtype=torch.float64, requires_grad=True),
        torch.randn(2, 6, 1, 1, 1, dtype=torch.float64, requires_grad=True),
    ]
    loss = feature_alignment_loss(feats, targets)
    assert loss.item() == pytest.approx(
        _ref_alignment([f.detach() for f in feats], [t.detach() for t in targets]), abs=1e-12
    )
    loss.backward()
    assert all(f.grad is not None and f.grad.abs().sum() > 0 for f in feats)
    assert all(t.grad is None for t in targets)  # the target network gets no gradient


def test_feature_alignment_closed_forms():
    x = torch.randn(3, 5, 2, 2, 2)
    assert feature_alignment_loss([x, x], [2 * x, x]).abs() < 1e-6  # same direction: 0 per stage
    assert feature_alignment_loss([x], [-x]).item() == pytest.approx(2.0, abs=1e-6)  # opposite: 2
    with pytest.raises(ValueError, match="shape"):
        feature_alignment_loss([x], [x[:, :4]])
    with pytest.raises(ValueError, match="stages"):
        feature_alignment_loss([x, x], [x])


def _ref_distill(logits, target, kind):
    b, k = logits.shape
    total = 0.0
    for i in range(b):
        z = [math.exp(float(v)) for v in logits[i]]
        p = [v / sum(z) for v in z]
        for c in range(k):
            q = float(target[i, c])
            if kind == "mse":
                total += (p[c] - q) ** 2
            else:
                total += q * (math.log(max(q, 1e-12)) - math.log(p[c]))
    return total / (b * k)


@pytest.mark.parametrize("kind", ["mse", "kl"])
def test_distillation_matches_the_reference(kind):
    torch.manual_seed(0)
    logits = torch.randn(4, 5, requires_grad=True)
    target = torch.randn(4, 5).softmax(1)
    target[0] = torch.tensor([1.0, 0, 0, 0, 0])  # a one-hot row: 0 log 0 counts as 0
    loss = distillation_loss(logits, target, kind)
    assert loss.item() == pytest.approx(_ref_distill(logits.detach(), target, kind), rel=1e-5)
    loss.backward()
    assert logits.grad.abs().sum() > 0


def test_distillation_is_zero_at_the_target_and_refuses_bad_input():
    logits = torch.randn(3, 4)
    target = logits.softmax(1)
    assert distillation_loss(logits, target, "mse").item() == pytest.approx(0.0, abs=1e-12)
    assert distillation_loss(logits, target, "kl").item() == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="kind"):
        distillation_loss(logits, target, "l1")
    with pytest.raises(ValueError, match=r"\[B, K\]"):
        distillation_loss(logits, target[:, :3])
