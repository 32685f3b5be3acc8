"""PrototypeBank.step: the whole per-step protocol of the class docstring in one call, equal to the
hand-written sequence that ACL+MTL runs (prototypes, refit, reliability, loss against the bank
before this batch, enqueue)."""

from __future__ import annotations

import pytest
import torch

from ssvar.components import BankStep, PrototypeBank, adaptive_contrastive_loss

K, D, BL, BU = 3, 6, 4, 5


def _bank() -> PrototypeBank:
    return PrototypeBank(K, D, size=16, refit_every=2, min_fill=6)


def _batches(n: int):
    g = torch.Generator().manual_seed(0)
    for _ in range(n):
        yield {
            "labelled": torch.randn(BL, D, generator=g),
            "labels": torch.randint(0, K, (BL,), generator=g),
            "teacher": torch.randn(BU, D, generator=g),
            "pseudo_labels": torch.randint(0, K, (BU,), generator=g),
            "confidence": torch.rand(BU, generator=g),
            "anchors": torch.randn(BU, D, generator=g),
            "mask": (torch.rand(BU, generator=g) > 0.3).float(),
        }


def _by_hand(bank: PrototypeBank, b: dict, anchors: torch.Tensor, mask: torch.Tensor | None):
    """ACL+MTL's steps 5 (ssvar/methods/acl_mtl.py), written out."""
    bank.update_prototypes(b["labelled"], b["labels"])
    refitted = bank.maybe_refit()
    rel = bank.reliability(b["teacher"], b["pseudo_labels"])
    w = rel * mask if mask is not None else rel
    loss, stats = adaptive_contrastive_loss(anchors, b["pseudo_labels"], w, bank, 0.2, 0.4, True)
    bank.enqueue(b["teacher"], b["pseudo_labels"], b["confidence"])
    return loss, stats, rel, refitted


@pytest.mark.parametrize("masked", [False, True])
def test_step_equals_the_hand_written_sequence(masked):
    hand, stepped = _bank(), _bank()
    refits, nonzero = 0, 0
    for b in _batches(8):
        mask = b["mask"] if masked else None
        a1, a2 = b["anchors"].clone().requires_grad_(), b["anchors"].clone().requires_grad_()
        loss, stats, rel, refitted = _by_hand(hand, b, a1, mask)
        out = stepped.step(b["labelled"], b["labels"], b["teacher"], b["pseudo_labels"], b["confidence"],
                           anchors=a2, anchor_mask=mask, temperature=0.2, reliability_threshold=0.4)
        assert isinstance(out, BankStep)
        assert torch.equal(out.loss, loss) and torch.equal(out.reliability, rel) and out.refitted == refitted
        assert out.stats.keys() == stats.keys() and all(torch.equal(out.stats[k], stats[k]) for k in stats)
        if loss.requires_grad:
            loss.backward(), out.loss.backward()
            assert torch.equal(a1.grad, a2.grad)
        refits += refitted
        nonzero += loss.item() > 0
    assert refits >= 2 and hand.gmm.fitted and nonzero >= 3  # through GMM refits, with real losses
    s1, s2 = hand.state_dict(), stepped.state_dict()
    assert s1.keys() == s2.keys() and all(torch.equal(s1[k], s2[k]) for k in s1)


def test_the_loss_sees_the_bank_before_this_batch():
    bank = _bank()
    b = next(_batches(1))
    anchors = b["teacher"].clone().requires_grad_()  # anchors identical to the entries enqueued
    out = bank.step(b["labelled"], b["labels"], b["teacher"], b["pseudo_labels"], b["confidence"], anchors=anchors)
    # The bank was empty when the loss was taken: no positives, zero loss, then 5 entries.
    assert out.loss.item() == 0.0 and out.stats["anchors_with_positive"].item() == 0.0
    assert bank.num_filled == BU and torch.equal(bank.labels[:BU], b["pseudo_labels"])


def test_step_without_anchors_only_updates_the_bank():
    with_loss, without = _bank(), _bank()
    for b in _batches(4):
        with_loss.step(
            b["labelled"], b["labels"], b["teacher"], b["pseudo_labels"], b["confidence"], anchors=b["anchors"]
        )
        out = without.step(b["labelled"], b["labels"], b["teacher"], b["pseudo_labels"], b["confidence"])
        assert out.loss is None and out.stats == {} and out.reliability.shape == (BU,)
    s1, s2 = with_loss.state_dict(), without.state_dict()
    assert all(torch.equal(s1[k], s2[k]) for k in s1)
