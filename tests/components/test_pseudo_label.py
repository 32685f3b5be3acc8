"""PseudoLabeler: threshold, masks, targets, normalisation and schedules."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ssvar.components import PseudoLabeler


def test_mask_targets_and_batch_normalisation():
    logits_w = torch.tensor([[4.0, 0.0, 0.0], [0.1, 0.0, 0.0], [0.0, 0.0, 5.0], [0.0, 0.2, 0.0]])
    pl = PseudoLabeler(threshold=0.9)(logits_w)
    assert pl.mask.tolist() == [1.0, 0.0, 1.0, 0.0]
    assert pl.targets.tolist() == [0, 0, 2, 1]
    logits_s = torch.randn(4, 3, requires_grad=True)
    loss = PseudoLabeler(threshold=0.9).loss(logits_s, pl)
    ce = F.cross_entropy(logits_s, pl.targets, reduction="none")
    assert torch.allclose(loss, (ce[0] + ce[2]) / 4)  # divided by the whole unlabelled batch
    loss_m = PseudoLabeler(threshold=0.9, normalize="mask").loss(logits_s, pl)
    assert torch.allclose(loss_m, (ce[0] + ce[2]) / 2)
    loss.backward()
    assert logits_s.grad[1].abs().sum() == 0  # unconfident samples get no gradient


def test_targets_carry_no_gradient():
    logits_w = torch.randn(5, 4, requires_grad=True)
    pl = PseudoLabeler(threshold=0.0, targets="soft")(logits_w)
    assert not pl.targets.requires_grad and not pl.mask.requires_grad
    assert torch.allclose(pl.targets.sum(1), torch.ones(5))


def test_soft_targets_sharpened_by_temperature():
    logits = torch.tensor([[1.0, 0.0]])
    soft = PseudoLabeler(threshold=0.0, targets="soft", temperature=0.5)(logits).targets
    assert torch.allclose(soft, torch.tensor([[2.0, 0.0]]).softmax(1))


def test_threshold_schedule():
    p = PseudoLabeler(threshold=0.5, final_threshold=0.9, schedule_steps=100)
    assert p.current_threshold(0) == pytest.approx(0.5)
    assert p.current_threshold(50) == pytest.approx(0.7)
    assert p.current_threshold(500) == pytest.approx(0.9)
    c = PseudoLabeler(threshold=0.5, final_threshold=0.9, schedule="cosine", schedule_steps=100)
    assert c.current_threshold(50) == pytest.approx(0.7) and c.current_threshold(25) < 0.6
    with pytest.raises(ValueError, match="normalize"):
        PseudoLabeler(normalize="sum")
