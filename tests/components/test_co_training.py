"""Co-training parts: cross pseudo-labels (directions, threshold, normalisation, stop-gradient),
parameter groups per network, and the batched forward."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ssvar.components import CrossPseudoLabeler, PseudoLabeler, co_training_param_groups, forward_parts


def _logits(rows):
    return torch.tensor(rows, dtype=torch.float64)


def test_each_network_learns_the_other_ones_confident_labels():
    # Weak-view logits: a is confident on sample 0 (class 2), b on sample 1 (class 0).
    weak_a = _logits([[0.0, 0.0, 9.0], [0.0, 0.1, 0.0], [0.0, 0.0, 0.1]])
    weak_b = _logits([[0.1, 0.0, 0.0], [9.0, 0.0, 0.0], [0.0, 0.2, 0.0]])
    strong_a = torch.randn(3, 3, dtype=torch.float64, requires_grad=True)
    strong_b = torch.randn(3, 3, dtype=torch.float64, requires_grad=True)
    out = CrossPseudoLabeler(threshold=0.8)(weak_a, weak_b, strong_a, strong_b)
    assert out.from_a.mask.tolist() == [1.0, 0.0, 0.0] and out.from_b.mask.tolist() == [0.0, 1.0, 0.0]
    # a's strong view is supervised by b's label (sample 1 -> class 0), over the whole batch of 3.
    ce = lambda z, i, c: F.cross_entropy(z[i : i + 1], torch.tensor([c]))  # noqa: E731
    assert torch.allclose(out.loss_a, ce(strong_a, 1, 0) / 3)
    assert torch.allclose(out.loss_b, ce(strong_b, 0, 2) / 3)
    assert out.from_a.threshold == 0.8


def test_targets_carry_no_gradient():
    torch.manual_seed(0)
    net_a, net_b = nn.Linear(4, 3), nn.Linear(4, 3)
    xw, xs = torch.randn(6, 4), torch.randn(6, 4)
    out = CrossPseudoLabeler(threshold=0.0)(net_a(xw), net_b(xw), net_a(xs), net_b(xs))
    out.loss_a.backward()  # a's loss: gradients reach a (through its strong logits) only
    assert net_a.weight.grad is not None and net_a.weight.grad.abs().sum() > 0
    assert net_b.weight.grad is None
    assert not out.from_a.targets.requires_grad and not out.from_b.probs.requires_grad


def test_custom_pseudo_labeler_and_shape_check():
    pl = PseudoLabeler(threshold=0.5, normalize="mask")
    cross = CrossPseudoLabeler(threshold=0.99, pseudo_labeler=pl)
    assert cross.pseudo_labeler is pl
    with pytest.raises(ValueError, match="one shape"):
        cross(torch.randn(2, 3), torch.randn(2, 3), torch.randn(3, 3), torch.randn(2, 3))


class _Two(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.head_a = nn.Conv1d(2, 2, 1), nn.Linear(2, 3)
        self.b = nn.Sequential(nn.Linear(2, 2), nn.LayerNorm(2))
        self.frozen = nn.Linear(2, 2).requires_grad_(False)


def test_param_groups_per_network_with_their_own_learning_rates():
    m = _Two()
    groups = co_training_param_groups(
        m, {"primary": [m.a, m.head_a], "auxiliary": [m.b]}, {"primary": 0.1, "auxiliary": 0.01}, 1e-3
    )
    by_name = {g["name"]: g for g in groups}
    assert set(by_name) == {"primary", "primary_no_decay", "auxiliary", "auxiliary_no_decay"}
    assert by_name["primary"]["lr"] == 0.1 and by_name["auxiliary_no_decay"]["lr"] == 0.01
    assert by_name["primary"]["weight_decay"] == 1e-3 and by_name["primary_no_decay"]["weight_decay"] == 0.0
    ids = lambda ps: {id(p) for p in ps}  # noqa: E731
    assert ids(by_name["primary"]["params"]) == ids([m.a.weight, m.head_a.weight])
    assert ids(by_name["auxiliary_no_decay"]["params"]) == ids([m.b[0].bias, m.b[1].weight, m.b[1].bias])
    # One optimiser, one summed loss: each group steps at its own rate.
    opt = torch.optim.SGD(groups, lr=123.0)
    assert [g["lr"] for g in opt.param_groups] == [g["lr"] for g in groups]


def test_param_groups_refuse_bad_splits():
    m = _Two()
    with pytest.raises(ValueError, match="no network.*b.0.weight"):
        co_training_param_groups(m, {"primary": [m.a, m.head_a]}, {"primary": 0.1}, 0.0)
    with pytest.raises(ValueError, match="two networks"):
        co_training_param_groups(m, {"p": [m.a, m.head_a, m.b], "q": [m.b]}, {"p": 0.1, "q": 0.1}, 0.0)
    with pytest.raises(ValueError, match="no learning rate.*'q'"):
        co_training_param_groups(m, {"p": [m.a, m.head_a], "q": [m.b]}, {"p": 0.1}, 0.0)


def test_forward_parts_splits_one_batched_forward():
    torch.manual_seed(0)
    backbone, head = nn.Linear(4, 5), nn.Linear(5, 2)
    parts = [torch.randn(1, 4), torch.randn(3, 4), torch.randn(3, 4)]
    feats, logits = forward_parts(backbone, head, parts)
    assert [f.shape[0] for f in feats] == [1, 3, 3] and [z.shape for z in logits] == [(1, 2), (3, 2), (3, 2)]
    assert torch.allclose(logits[1], head(backbone(parts[1])), atol=1e-6)
