"""Contrastive losses and heads: hand-written references, the projection head, and a 2-process
gloo run showing that distributed == single process on the global batch (losses, DDP-averaged
parameter gradients, per-sample input gradients), including the gradient-scaling factor."""

from __future__ import annotations

import math

import pytest
import torch
from ddp import averaged_grads, mean_over_ranks, run_ddp
from torch import nn

from ssvar.components import (
    PairedContrastive,
    ProjectionHead,
    gather_no_grad,
    gather_with_grad,
    info_nce,
    nt_xent,
    rank_offset,
)

# ---------------------------------------------------------------- references (explicit loops)


def _ref_info_nce(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """-(1/N) sum_i log(exp(a_i.b_i/t) / sum_j exp(a_i.b_j/t)), cosine similarities."""
    a, b = a / a.norm(dim=1, keepdim=True), b / b.norm(dim=1, keepdim=True)
    n = a.shape[0]
    losses = []
    for i in range(n):
        sims = torch.stack([a[i] @ b[j] / t for j in range(n)])
        losses.append(-(sims[i] - torch.logsumexp(sims, 0)))
    return torch.stack(losses).mean()


def _ref_nt_xent(z1: torch.Tensor, z2: torch.Tensor, t: float) -> torch.Tensor:
    """SimCLR NT-Xent over z = [z1; z2]: for k the positive is (k + N) mod 2N, the denominator
    every j != k; mean over all 2N anchors."""
    z = torch.cat([z1, z2])
    z = z / z.norm(dim=1, keepdim=True)
    n2 = z.shape[0]
    losses = []
    for k in range(n2):
        pos = (k + n2 // 2) % n2
        others = [j for j in range(n2) if j != k]
        sims = torch.stack([z[k] @ z[j] / t for j in others])
        losses.append(-(z[k] @ z[pos] / t - torch.logsumexp(sims, 0)))
    return torch.stack(losses).mean()


# ---------------------------------------------------------------- single-process unit checks


@pytest.mark.parametrize("t", [0.07, 0.5, 2.0])
def test_info_nce_matches_reference(t):
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    assert torch.allclose(info_nce(a, b, t), _ref_info_nce(a, b, t), atol=1e-5)
    # Not symmetric: l(a, b) normalises over b's, l(b, a) over a's.
    assert not torch.allclose(info_nce(a, b, t), info_nce(b, a, t))


@pytest.mark.parametrize("t", [0.1, 0.5])
def test_nt_xent_matches_reference(t):
    g = torch.Generator().manual_seed(1)
    z1, z2 = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)
    assert torch.allclose(nt_xent(z1, z2, t), _ref_nt_xent(z1, z2, t), atol=1e-5)
    assert torch.allclose(nt_xent(z1, z2, t), nt_xent(z2, z1, t), atol=1e-6)  # symmetric by construction


def test_aligned_pairs_give_lower_loss_than_random():
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(16, 32, generator=g), torch.randn(16, 32, generator=g)
    assert info_nce(a, a * 3.0, 0.5) < info_nce(a, b, 0.5)  # scale-free: inputs are L2-normalised
    assert nt_xent(a, a.clone(), 0.1) < nt_xent(a, b, 0.1)


def test_temperature_scaling_closed_form():
    # Orthonormal, perfectly aligned: each row has one similarity 1 and N-1 similarities 0.
    n = 4
    e = torch.eye(n, dtype=torch.float64)
    for t in (0.1, 0.5, 1.0):
        expected = -math.log(math.exp(1 / t) / (math.exp(1 / t) + n - 1))
        assert info_nce(e, e, t).item() == pytest.approx(expected, rel=1e-9)
        # NT-Xent: the positive (1) against 2N-2 negatives (all 0).
        expected_nt = -math.log(math.exp(1 / t) / (math.exp(1 / t) + 2 * n - 2))
        assert nt_xent(e, e, t).item() == pytest.approx(expected_nt, rel=1e-9)
    # Lower temperature sharpens: aligned pairs cost less; an infinite temperature gives log N.
    assert info_nce(e, e, 0.1) < info_nce(e, e, 0.5)
    assert info_nce(e, e, 1e6).item() == pytest.approx(math.log(n), rel=1e-5)


def test_more_closed_forms():
    n, t = 3, 0.5
    e = torch.eye(n, dtype=torch.float64)
    # Opposite positives (cosine -1) among orthogonal negatives (cosine 0).
    want = -math.log(math.exp(-1 / t) / (math.exp(-1 / t) + n - 1))
    assert info_nce(e, -e, t).item() == pytest.approx(want, rel=1e-9)
    # One pair and nothing else: the positive is the whole denominator, the loss is 0.
    one = torch.tensor([[1.0, 2.0]], dtype=torch.float64)
    assert info_nce(one, 3 * one, t).item() == pytest.approx(0.0, abs=1e-12)
    assert nt_xent(one, one, t).item() == pytest.approx(0.0, abs=1e-12)
    # Every embedding the same: N-way (info_nce) / (2N-1)-way (nt_xent) chance.
    same = torch.ones(n, 4, dtype=torch.float64)
    assert info_nce(same, same, t).item() == pytest.approx(math.log(n), rel=1e-9)
    assert nt_xent(same, same, t).item() == pytest.approx(math.log(2 * n - 1), rel=1e-9)


@pytest.mark.parametrize("loss,ref", [(info_nce, _ref_info_nce), (nt_xent, _ref_nt_xent)], ids=["info_nce", "nt_xent"])
def test_gradients_match_the_reference(loss, ref):
    g = torch.Generator().manual_seed(4)
    a, b = torch.randn(5, 3, generator=g, dtype=torch.float64), torch.randn(5, 3, generator=g, dtype=torch.float64)
    a1, b1 = a.clone().requires_grad_(), b.clone().requires_grad_()
    a2, b2 = a.clone().requires_grad_(), b.clone().requires_grad_()
    loss(a1, b1, 0.3).backward()
    ref(a2, b2, 0.3).backward()
    assert torch.allclose(a1.grad, a2.grad, atol=1e-10) and torch.allclose(b1.grad, b2.grad, atol=1e-10)
    assert a1.grad.abs().sum() > 0


def test_half_precision_inputs_give_float32_loss():
    a = torch.randn(4, 8, dtype=torch.bfloat16)
    assert info_nce(a, a, 0.1).dtype == torch.float32
    assert nt_xent(a, a, 0.1).dtype == torch.float32


def test_bad_arguments():
    with pytest.raises(ValueError, match="temperature"):
        info_nce(torch.randn(2, 3), torch.randn(2, 3), 0.0)
    with pytest.raises(ValueError, match="same shape"):
        nt_xent(torch.randn(2, 3), torch.randn(3, 3), 0.1)
    with pytest.raises(ValueError, match=r"\[B, D\]"):
        info_nce(torch.randn(2, 3, 1), torch.randn(2, 3, 1), 0.1)
    with pytest.raises(ValueError, match="temperature"):
        PairedContrastive(4, 4, temperature=-1.0)
    with pytest.raises(ValueError, match=r"\[B, 6\]"):
        ProjectionHead(6)(torch.randn(2, 5))


def test_projection_head_ltg_layout():
    head = ProjectionHead(6, hidden_dim=8, out_dim=5)
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    bns = [m for m in head.modules() if isinstance(m, nn.BatchNorm1d)]
    assert [(lin.in_features, lin.out_features) for lin in linears] == [(6, 8), (8, 8), (8, 5)]
    assert linears[0].bias is None and linears[1].bias is not None
    assert len(bns) == 3 and bns[0].affine and bns[1].affine
    assert not bns[-1].affine and bns[-1].weight is None  # last BN non-affine: no learnable params
    assert isinstance(head.net[-1], nn.BatchNorm1d)
    assert head(torch.randn(3, 6)).shape == (3, 5)
    assert ProjectionHead(6, 8, 5, last_bn_affine=True).net[-1].affine
    # Defaults follow LTG: 512-wide, 3 layers.
    assert ProjectionHead(16)(torch.randn(2, 16)).shape == (2, 512)
    one = ProjectionHead(6, out_dim=4, num_layers=1)
    assert [type(m) for m in one.net] == [nn.Linear, nn.BatchNorm1d]
    simclr = ProjectionHead(6, 8, 4, num_layers=2, last_bn=False)
    assert isinstance(simclr.net[-1], nn.Linear) and simclr.net[-1].bias is not None
    with pytest.raises(ValueError, match="num_layers"):
        ProjectionHead(6, num_layers=0)


def test_modules_compose_heads_and_losses():
    torch.manual_seed(0)
    fa, fb = torch.randn(6, 10), torch.randn(6, 7)
    cm = PairedContrastive(
        10, 7, hidden_dim=8, proj_dim=8, num_layers=3, temperature=0.5, loss="info_nce", last_bn=True
    )
    loss = cm(fa, fb)
    h_a, h_b = cm.head_a(fa), cm.head_b(fb)
    assert torch.allclose(loss, 0.5 * (_ref_info_nce(h_a, h_b, 0.5) + _ref_info_nce(h_b, h_a, 0.5)), atol=1e-5)
    assert cm.last_num_negatives == 5
    loss.backward()
    assert all(p.grad is not None for p in cm.parameters())

    ca = PairedContrastive(10, 7, proj_dim=4, hidden_dim=8)
    assert ca.temperature == 0.1 and ca.loss == "nt_xent" and not isinstance(ca.head_a.net[-1], nn.BatchNorm1d)
    loss = ca(fa, fb)
    assert torch.allclose(loss, _ref_nt_xent(ca.head_a(fa), ca.head_b(fb), 0.1), atol=1e-5)
    assert ca.last_num_negatives == 10
    assert ca(fa, fb).shape == ()


def test_gather_helpers_are_identity_without_ddp():
    x = torch.randn(3, 2, requires_grad=True)
    assert gather_with_grad(x) is x
    g = gather_no_grad(x)
    assert torch.equal(g, x) and not g.requires_grad
    assert rank_offset(3) == 0


# ---------------------------------------------------------------- 2-process gloo: distributed == single

WORLD, LOCAL_B, DIM_A, DIM_B, DIM_Z = 2, 4, 6, 5, 4
CASES = ["info_nce", "nt_xent", "cross_modal_eval", "cross_arch_eval", "cross_modal_train_bn", "cross_arch_train_bn"]
T_INFO, T_NT = 0.5, 0.2


def _global_inputs(case: str) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(123)
    n = WORLD * LOCAL_B
    da, db = (DIM_Z, DIM_Z) if case in ("info_nce", "nt_xent") else (DIM_A, DIM_B)
    return torch.randn(n, da, generator=g, dtype=torch.float64), torch.randn(n, db, generator=g, dtype=torch.float64)


def _build(case: str) -> nn.Module | None:
    """Same initial weights on every rank (fixed seed); random BN running stats and affine params
    so eval-mode BN is not an identity."""
    if case in ("info_nce", "nt_xent"):
        return None
    torch.manual_seed(7)
    if case.startswith("cross_modal"):
        m = PairedContrastive(
            DIM_A, DIM_B, proj_dim=8, hidden_dim=8, num_layers=3, temperature=0.5, loss="info_nce", last_bn=True
        )
    else:
        m = PairedContrastive(DIM_A, DIM_B, proj_dim=DIM_Z, hidden_dim=8)
    m.double()
    with torch.no_grad():
        for bn in m.modules():
            if isinstance(bn, nn.BatchNorm1d):
                bn.running_mean.uniform_(-0.5, 0.5)
                bn.running_var.uniform_(0.5, 2.0)
                if bn.affine:
                    bn.weight.uniform_(0.5, 1.5)
                    bn.bias.uniform_(-0.2, 0.2)
    m.train(case.endswith("train_bn"))
    return m


def _loss(case: str, m: nn.Module | None, xa: torch.Tensor, xb: torch.Tensor) -> torch.Tensor:
    if case == "info_nce":
        return info_nce(xa, xb, T_INFO)
    if case == "nt_xent":
        return nt_xent(xa, xb, T_NT)
    return m(xa, xb)


def _ddp_worker(rank: int, world: int) -> dict:
    sl = slice(rank * LOCAL_B, (rank + 1) * LOCAL_B)
    results: dict = {}
    # The helpers themselves.
    xa, _ = _global_inputs("info_nce")
    results["rank_offset"] = gather_no_grad(torch.tensor([rank_offset(LOCAL_B)])).tolist()
    results["gather_ok"] = torch.equal(gather_with_grad(xa[sl].clone()), xa)
    for case in CASES:
        m = _build(case)
        ga, gb = _global_inputs(case)
        xa, xb = ga[sl].clone().requires_grad_(), gb[sl].clone().requires_grad_()
        loss = _loss(case, m, xa, xb)
        loss.backward()
        results[case] = {
            # What DDP does: average the losses (for logging) and the parameter gradients.
            "loss_mean": mean_over_ranks(loss),
            "param_grads": averaged_grads(m) if m is not None else {},
            # Raw per-rank input gradients, in global order: not averaged by anyone.
            "input_grad_a": gather_no_grad(xa.grad),
            "input_grad_b": gather_no_grad(xb.grad),
            "num_negatives": getattr(m, "last_num_negatives", None),
        }
    return results


@pytest.fixture(scope="module")
def ddp_results():
    return run_ddp(_ddp_worker, WORLD)[0]


def _single_process(case: str) -> dict:
    """The reference: one process, the global batch. For train-mode BN the documented semantics:
    the heads see each rank's chunk separately (per-rank statistics), the loss the whole batch."""
    m = _build(case)
    ga, gb = _global_inputs(case)
    xa, xb = ga.clone().requires_grad_(), gb.clone().requires_grad_()
    if case.endswith("train_bn"):
        ha = torch.cat([m.head_a(c) for c in xa.split(LOCAL_B)])
        hb = torch.cat([m.head_b(c) for c in xb.split(LOCAL_B)])
        if case.startswith("cross_modal"):
            loss = 0.5 * (info_nce(ha, hb, m.temperature) + info_nce(hb, ha, m.temperature))
        else:
            loss = nt_xent(ha, hb, m.temperature)
    else:
        loss = _loss(case, m, xa, xb)
    loss.backward()
    return {
        "loss": loss.detach(),
        "param_grads": {n: p.grad for n, p in (m.named_parameters() if m is not None else [])},
        "input_grad_a": xa.grad,
        "input_grad_b": xb.grad,
    }


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    # atol 1e-6 as asked, plus a relative check: some gradients are ~1e-4, and in float64 the
    # two computations agree to ~1e-12, so a wrong factor cannot hide under the absolute tolerance.
    return torch.allclose(a, b, atol=1e-6, rtol=0) and torch.allclose(a, b, atol=1e-12, rtol=1e-8)


@pytest.mark.ddp
def test_ddp_gather_helpers(ddp_results):
    assert ddp_results["gather_ok"]
    assert ddp_results["rank_offset"] == [0, LOCAL_B]


@pytest.mark.ddp
@pytest.mark.parametrize("case", CASES)
def test_ddp_equals_single_process(ddp_results, case):
    d, s = ddp_results[case], _single_process(case)
    # (i) the mean of the per-rank losses is the single-process loss on the global batch.
    assert _close(d["loss_mean"], s["loss"])
    # (ii) DDP-averaged parameter gradients equal the single-process ones: no loss rescaling.
    assert d["param_grads"].keys() == s["param_grads"].keys()
    for name, g in s["param_grads"].items():
        assert _close(d["param_grads"][name], g), name
    # Per-sample input gradients: each rank's is WORLD x the single-process one (the summed
    # gather backward brings every rank's loss term home); DDP's 1/WORLD average of parameter
    # gradients cancels it, i.e. the gradient of the DDP objective mean_r L_r is grad / WORLD.
    for key in ("input_grad_a", "input_grad_b"):
        assert _close(d[key] / WORLD, s[key]), key
        assert s[key].norm() > 0
    if case in ("info_nce", "nt_xent"):  # without a head every sample must get a gradient
        assert all((s[k].norm(dim=1) > 0).all() for k in ("input_grad_a", "input_grad_b"))
    if case.startswith("cross_modal"):
        assert d["num_negatives"] == WORLD * LOCAL_B - 1
    elif case.startswith("cross_arch"):
        assert d["num_negatives"] == 2 * WORLD * LOCAL_B - 2
