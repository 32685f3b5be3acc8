"""PrototypeBank, the torch GMM and the adaptive contrastive loss: formulas, FIFO, state, and a
2-process gloo run equal to a single process on the same global batches."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from ddp import run_ddp

from ssvar.components import GaussianMixture1D, PrototypeBank, adaptive_contrastive_loss, fit_gmm_1d


def test_gmm_matches_scikit_learn_on_two_clusters():
    from sklearn.mixture import GaussianMixture

    g = torch.Generator().manual_seed(0)
    x = torch.cat([0.2 + 0.05 * torch.randn(300, generator=g), 0.7 + 0.1 * torch.randn(700, generator=g)])
    pi, mean, var = fit_gmm_1d(x, iters=100)
    sk = GaussianMixture(2, covariance_type="diag", tol=1e-10, max_iter=500, reg_covar=1e-6, random_state=0).fit(
        x[:, None].numpy()
    )
    order = sk.means_[:, 0].argsort()
    assert torch.allclose(mean, torch.tensor(sk.means_[order, 0], dtype=mean.dtype), atol=1e-3)
    assert torch.allclose(var, torch.tensor(sk.covariances_[order, 0], dtype=var.dtype), atol=1e-4)
    assert torch.allclose(pi, torch.tensor(sk.weights_[order], dtype=pi.dtype), atol=1e-3)
    assert mean[0] < mean[1]


def test_gmm_weights_ignore_masked_values_and_reliability_is_monotone():
    g = torch.Generator().manual_seed(1)
    x = torch.cat([0.1 + 0.05 * torch.randn(200, generator=g), 0.8 + 0.02 * torch.randn(200, generator=g)])
    junk = torch.full((100,), 5.0)  # masked out: must not move the fit
    w = torch.cat([torch.ones(400), torch.zeros(100)])
    a = fit_gmm_1d(torch.cat([x, junk]), w, iters=30)
    b = fit_gmm_1d(x, iters=30)
    for u, v in zip(a, b):
        assert torch.allclose(u, v, atol=1e-9)
    gmm = GaussianMixture1D(iters=30)
    assert torch.equal(gmm.reliability(torch.tensor([0.0, 1.0])), torch.ones(2))  # before a fit
    gmm.fit(x)
    grid = torch.linspace(-1, 2, 301)
    r = gmm.reliability(grid)
    assert (r[1:] >= r[:-1] - 1e-7).all()  # non-decreasing despite unequal variances
    assert r[0] < 0.01 and r[-1] > 0.99


def test_prototype_momentum_update_formula():
    bank = PrototypeBank(3, 4, size=8, prototype_momentum=0.5, min_fill=2, gather=False)
    z1 = torch.tensor([[1.0, 0, 0, 0], [0, 2.0, 0, 0], [0, 0, 3.0, 0]])
    bank.update_prototypes(z1, torch.tensor([0, 0, 1]))
    first0 = F.normalize(F.normalize(z1[:2], dim=1).mean(0), dim=0)
    assert torch.allclose(bank.prototypes[0], first0)
    assert torch.allclose(bank.prototypes[1], torch.tensor([0, 0, 1.0, 0]))
    assert torch.equal(bank.prototypes[2], torch.zeros(4)) and bank.prototype_seen.tolist() == [True, True, False]
    z2 = torch.tensor([[0, 0, 0, 1.0]])
    bank.update_prototypes(z2, torch.tensor([0]))
    assert torch.allclose(bank.prototypes[0], F.normalize(0.5 * first0 + 0.5 * z2[0], dim=0))
    assert torch.allclose(bank.prototypes[1], torch.tensor([0, 0, 1.0, 0]))  # absent class unchanged


def test_bank_is_a_fifo_that_wraps_and_keeps_the_newest():
    bank = PrototypeBank(2, 2, size=5, min_fill=2, gather=False)
    for i in range(3):  # 3 batches of 2: the oldest entry is overwritten
        z = torch.tensor([[1.0, float(2 * i)], [1.0, float(2 * i + 1)]])
        bank.enqueue(z, torch.tensor([i % 2, i % 2]), torch.tensor([0.1 * i, 0.2]))
    raw = [[1.0, 5.0], [1.0, 1.0], [1.0, 2.0], [1.0, 3.0], [1.0, 4.0]]
    assert torch.allclose(bank.features, F.normalize(torch.tensor(raw), dim=1))
    assert bank.labels.tolist() == [0, 0, 1, 1, 0]
    assert int(bank.ptr) == 1 and bank.num_filled == 5 and bank.valid.all()
    big = torch.randn(7, 2)
    bank.enqueue(big, torch.zeros(7, dtype=torch.long), torch.ones(7))
    assert torch.allclose(bank.features[[1, 2, 3, 4, 0]], F.normalize(big[-5:], dim=1))  # the newest 5


def test_refit_schedule_and_state_dict_round_trip():
    torch.manual_seed(0)
    bank = PrototypeBank(3, 8, size=32, refit_every=3, min_fill=8, gather=False)
    fits = []
    for _ in range(10):
        bank.update_prototypes(torch.randn(6, 8), torch.arange(6) % 3)
        fits.append(bank.maybe_refit())
        bank.enqueue(torch.randn(4, 8), torch.randint(0, 3, (4,)), torch.rand(4))
    # the first fit once 8 entries are in (the third step), then every 3rd step (steps 6, 9)
    assert fits == [False, False, True, False, False, True, False, False, True, False]
    assert int(bank.gmm.num_fits) == 3
    other = PrototypeBank(3, 8, size=32, refit_every=3, min_fill=8, gather=False)
    other.load_state_dict(bank.state_dict())
    for k, v in bank.state_dict().items():
        assert torch.equal(v, other.state_dict()[k]), k
    # The loaded copy continues exactly like the original (host counters re-read from the buffers).
    z, y, c = torch.randn(4, 8), torch.randint(0, 3, (4,)), torch.rand(4)
    for b in (bank, other):
        b.maybe_refit(), b.maybe_refit()
        b.enqueue(z, y, c)
    for k, v in bank.state_dict().items():
        assert torch.equal(v, other.state_dict()[k]), k


def _reference_loss(z, y, a, feats, labels, rel, valid, tau, thr, weight_neg):
    """The loss written out anchor by anchor, entry by entry."""
    total = 0.0
    z = F.normalize(z, dim=1)
    for i in range(z.shape[0]):
        sel = [j for j in range(feats.shape[0]) if valid[j] and rel[j] >= thr]
        pos = [j for j in sel if labels[j] == y[i]]
        if not pos:
            continue
        neg = [j for j in sel if labels[j] != y[i]]
        s = {j: float(z[i] @ feats[j]) / tau for j in sel}
        denom = sum(torch.exp(torch.tensor(s[j])) for j in pos) + sum(
            (rel[j] if weight_neg else 1.0) * torch.exp(torch.tensor(s[j])) for j in neg
        )
        rp = sum(float(rel[j]) for j in pos)
        li = -sum(float(rel[j]) / rp * (s[j] - float(torch.log(denom))) for j in pos)
        total += float(a[i]) * li
    return total / z.shape[0]


@pytest.mark.parametrize("weight_neg", [True, False])
def test_adaptive_contrastive_loss_matches_a_loop_reference(weight_neg):
    torch.manual_seed(0)
    bank = PrototypeBank(3, 6, size=12, min_fill=2, gather=False)
    bank.enqueue(torch.randn(10, 6), torch.randint(0, 3, (10,)), torch.rand(10))
    bank.reliabilities.copy_(torch.rand(12) * bank.valid)
    z = torch.randn(5, 6, requires_grad=True)
    y = torch.tensor([0, 1, 2, 0, 1])
    a = torch.rand(5)
    loss, stats = adaptive_contrastive_loss(z, y, a, bank, 0.2, 0.3, weight_neg)
    ref = _reference_loss(
        z.detach(), y, a, bank.features, bank.labels, bank.reliabilities, bank.valid, 0.2, 0.3, weight_neg
    )
    assert loss.item() == pytest.approx(ref, rel=1e-5, abs=1e-6)
    loss.backward()
    assert torch.isfinite(z.grad).all()
    assert 0 <= float(stats["anchors_with_positive"]) <= 1


def test_empty_bank_gives_zero_loss_and_finite_zero_gradient():
    bank = PrototypeBank(3, 4, size=8, min_fill=2, gather=False)
    z = torch.randn(3, 4, requires_grad=True)
    loss, _ = adaptive_contrastive_loss(z, torch.tensor([0, 1, 2]), torch.ones(3), bank)
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(z.grad, torch.zeros_like(z))


# ---------------------------------------------------------------- 2-process gloo
WORLD, LOCAL_L, LOCAL_U, STEPS, DIM, K = 2, 3, 4, 7, 6, 3


def _global_batches():
    g = torch.Generator().manual_seed(5)
    out = []
    for _ in range(STEPS):
        out.append((
            torch.randn(WORLD * LOCAL_L, DIM, generator=g), torch.randint(0, K, (WORLD * LOCAL_L,), generator=g),
            torch.randn(WORLD * LOCAL_U, DIM, generator=g), torch.randint(0, K, (WORLD * LOCAL_U,), generator=g),
            torch.rand(WORLD * LOCAL_U, generator=g), torch.randn(WORLD * LOCAL_U, DIM, generator=g),
        ))
    return out


def _new_bank():
    # 7 steps x 8 entries into 20 slots: wraps twice; first fit at step 2, then every 2nd step.
    return PrototypeBank(K, DIM, size=20, refit_every=2, min_fill=10)


def _run(bank, batches, rank=0, world=1):
    """The per-step protocol of the method on this rank's slice; returns the anchors' reliabilities
    and losses of every step."""
    rels, losses = [], []
    for zl, yl, zu, yu, cu, zs in batches:
        ls = slice(rank * LOCAL_L * (world > 1), (rank + 1) * LOCAL_L if world > 1 else None)
        us = slice(rank * LOCAL_U * (world > 1), (rank + 1) * LOCAL_U if world > 1 else None)
        bank.update_prototypes(zl[ls], yl[ls])
        bank.maybe_refit()
        r = bank.reliability(zu[us], yu[us])
        loss, _ = adaptive_contrastive_loss(zs[us], yu[us], r, bank, 0.1, 0.5)
        bank.enqueue(zu[us], yu[us], cu[us])
        rels.append(r)
        losses.append(loss.detach())
    return torch.cat(rels), torch.stack(losses)


def _worker(rank, world):
    bank = _new_bank()
    rels, losses = _run(bank, _global_batches(), rank, world)
    return {"state": {k: v.clone() for k, v in bank.state_dict().items()}, "rels": rels, "losses": losses}


@pytest.mark.ddp
def test_bank_prototypes_and_gmm_identical_across_ranks_and_equal_single_process():
    r0, r1 = run_ddp(_worker, WORLD)
    for k in r0["state"]:  # bank, prototypes, GMM: bit-identical on both ranks
        assert torch.equal(r0["state"][k], r1["state"][k]), k
    single = _new_bank()
    rels, losses = _run(single, _global_batches())
    assert int(single.gmm.num_fits) >= 3 and int(single.filled) == 20
    for k, v in single.state_dict().items():
        assert torch.allclose(r0["state"][k].double(), v.double(), atol=1e-6), k
    # Each rank's anchor reliabilities are its slice of the single-process ones; the mean of the
    # two ranks' losses is the single-process loss of the global batch.
    per_step = rels.view(STEPS, WORLD, LOCAL_U)
    assert torch.allclose(r0["rels"].view(STEPS, LOCAL_U), per_step[:, 0], atol=1e-6)
    assert torch.allclose(r1["rels"].view(STEPS, LOCAL_U), per_step[:, 1], atol=1e-6)
    assert torch.allclose((r0["losses"] + r1["losses"]) / 2, losses, atol=1e-6)
    assert (losses[3:] > 0).all()  # the bank and the reliabilities are in use
