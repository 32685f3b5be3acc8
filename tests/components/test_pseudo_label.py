"""PseudoLabeler: threshold, masks, targets, normalisation and schedules."""

from __future__ import annotations

import math

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


def _loop_loss(
    logits: torch.Tensor, weak: torch.Tensor, threshold: float, targets: str, temperature: float, normalize: str
) -> torch.Tensor:
    """Masked cross-entropy written out sample by sample and class by class."""
    b, k = logits.shape
    total, confident = torch.zeros((), dtype=torch.float64), 0
    for i in range(b):
        z = [float(v) / temperature for v in weak[i]]
        m = max(z)
        e = [math.exp(v - m) for v in z]
        p = [v / sum(e) for v in e]
        if max(p) < threshold:
            continue
        confident += 1
        log_q = [float(v) - math.log(sum(math.exp(float(u)) for u in logits[i])) for v in logits[i]]
        if targets == "hard":
            total += -log_q[p.index(max(p))]
        else:
            total += -sum(p[c] * log_q[c] for c in range(k))
    return total / (b if normalize == "batch" else max(confident, 1))


@pytest.mark.parametrize("targets", ["hard", "soft"])
@pytest.mark.parametrize("normalize", ["batch", "mask"])
@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_loss_matches_a_loop(targets, normalize, temperature):
    g = torch.Generator().manual_seed(3)
    weak, strong = 2 * torch.randn(9, 5, generator=g), torch.randn(9, 5, generator=g)
    threshold = 0.6 if temperature == 1.0 else 0.95  # sharper probabilities at the lower temperature
    labeler = PseudoLabeler(threshold=threshold, targets=targets, temperature=temperature, normalize=normalize)
    pl = labeler(weak)
    assert 0 < pl.mask.sum() < 9  # confident and unconfident samples both present
    got = labeler.loss(strong, pl)
    assert got.item() == pytest.approx(
        _loop_loss(strong, weak, threshold, targets, temperature, normalize).item(), rel=1e-5
    )


def test_loss_closed_forms():
    # Uniform strong logits: every confident sample costs log K, whatever its target.
    pl = PseudoLabeler(threshold=0.5)(torch.tensor([[9.0, 0, 0, 0], [0, 9.0, 0, 0], [0, 0, 0, 0]]))
    assert pl.mask.tolist() == [1.0, 1.0, 0.0]
    assert PseudoLabeler(threshold=0.5).loss(torch.zeros(3, 4), pl).item() == pytest.approx(2 * math.log(4) / 3)
    assert PseudoLabeler(threshold=0.5, normalize="mask").loss(torch.zeros(3, 4), pl).item() == pytest.approx(
        math.log(4)
    )
    # No confident sample: zero loss under both normalisations (no division by zero).
    none = PseudoLabeler(threshold=0.99)(torch.zeros(2, 3))
    assert PseudoLabeler(normalize="mask").loss(torch.randn(2, 3), none).item() == 0.0


# ---------------------------------------------------------------- distribution alignment, FreeMatch thresholds
def test_distribution_alignment_against_a_hand_computation():
    from ssvar.components.pseudo_label import PseudoLabeler

    pl = PseudoLabeler(threshold=0.0, distribution_alignment=True, ema_momentum=0.5)
    logits = torch.tensor([[2.0, 0.0, 0.0], [1.0, 0.5, 0.0]])
    out = pl(logits)
    p = logits.softmax(1)
    p_model = 0.5 * torch.full((3,), 1 / 3) + 0.5 * p.mean(0)  # one EMA step from uniform
    expected = p / p_model
    expected = expected / expected.sum(1, keepdim=True)
    assert torch.allclose(pl.p_model, p_model) and torch.allclose(out.probs, expected, atol=1e-6)
    # a model favouring class 0 has its class-0 probabilities pulled down
    assert out.probs[:, 0].mean() < p[:, 0].mean()


def test_freematch_thresholds_against_the_paper():
    from ssvar.components.pseudo_label import PseudoLabeler

    m = 0.9
    pl = PseudoLabeler(adaptive_threshold="freematch", ema_momentum=m)
    logits = torch.tensor([[3.0, 0.0, 0.0, 0.0], [0.0, 0.2, 0.0, 0.0], [0.0, 0.0, 2.0, 0.0]])
    out = pl(logits)
    p = logits.softmax(1)
    conf, hard = p.max(1)
    tau = m / 4 + (1 - m) * conf.mean()  # tau_0 = 1/K
    p_c = m * torch.full((4,), 0.25) + (1 - m) * p.mean(0)
    per_class = tau * p_c / p_c.max()
    assert torch.allclose(pl.global_level, tau.reshape(1)) and torch.allclose(pl.class_level, p_c)
    assert torch.equal(out.mask, (conf >= per_class[hard]).float())
    assert out.threshold == pytest.approx(float(per_class.mean()))
    assert out.mask.sum() >= 2  # starting at 1/K, the early bar is low


def test_running_statistics_round_trip_through_a_state_dict():
    from ssvar.components.pseudo_label import PseudoLabeler

    a = PseudoLabeler(distribution_alignment=True, adaptive_threshold="freematch")
    a(torch.randn(5, 6))
    b = PseudoLabeler(distribution_alignment=True, adaptive_threshold="freematch")
    b.load_state_dict(a.state_dict())
    for name in ("p_model", "class_level", "global_level"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    assert PseudoLabeler().state_dict() == {}  # the default adds no keys (old checkpoints load)
    with pytest.raises(ValueError, match="adaptive_threshold"):
        PseudoLabeler(adaptive_threshold="flexmatch")


def _adaptive_rank(rank: int, world: int) -> dict:
    from ddp import shard

    from ssvar.components.pseudo_label import PseudoLabeler

    pl = PseudoLabeler(distribution_alignment=True, adaptive_threshold="freematch", ema_momentum=0.7)
    masks = []
    for step in range(3):
        logits = torch.randn(8, 5, generator=torch.Generator().manual_seed(step)) * 2
        masks.append(pl(shard(logits, rank, world), step).mask)
    return {"state": pl.state_dict(), "mask": torch.cat(masks)}


@pytest.mark.ddp
def test_adaptive_statistics_under_ddp_equal_one_process_on_the_global_batch():
    from ddp import run_ddp, shard

    from ssvar.components.pseudo_label import PseudoLabeler

    ranks = run_ddp(_adaptive_rank, 2)
    ref = PseudoLabeler(distribution_alignment=True, adaptive_threshold="freematch", ema_momentum=0.7)
    ref_masks = [[], []]
    for step in range(3):
        out = ref(torch.randn(8, 5, generator=torch.Generator().manual_seed(step)) * 2, step)
        for r in range(2):
            ref_masks[r].append(shard(out.mask, r, 2))
    for r, got in enumerate(ranks):
        for k, v in ref.state_dict().items():
            torch.testing.assert_close(got["state"][k], v)  # every rank holds the global statistics
        assert torch.equal(got["mask"], torch.cat(ref_masks[r]))
