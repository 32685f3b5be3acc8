"""Adaptive contrastive learning parts (ACL, Wang et al. 2024, arXiv 2404.16416).

* :class:`GaussianMixture1D`: a 2-component 1-D Gaussian mixture fitted by a few EM iterations in
  torch; the posterior of the high-mean component is a sample's *reliability*.
* :class:`PrototypeBank`: class prototypes from labelled embeddings (momentum-updated, L2
  normalised) and a fixed-size FIFO memory bank of pseudo-labelled unlabelled embeddings from a
  momentum (EMA) teacher, with each entry's pseudo-label, confidence, prototype similarity and
  reliability; the GMM is refitted on the bank's prototype similarities every ``refit_every``
  steps.
* :func:`adaptive_contrastive_loss`: a supervised-contrastive loss of student embeddings against
  the bank, positives (same pseudo-label) and negatives (other pseudo-labels) selected and
  weighted by reliability.

The paper's body is not available (only the abstract and figure captions, see
``docs/methods/acl_mtl.md``): every detail below beyond "prototypes from labelled data, a momentum
bank of pseudo-labelled samples, a GMM turning prototype confidences into reliabilities that pick
positives and negatives" is our assumption, and each one is a constructor argument.

**DDP by construction.** Labelled embeddings (for the prototypes) and teacher embeddings (for the
bank) are gathered from every rank, detached, in rank order, *before* the update; every rank then
runs the same arithmetic on the same data, so prototypes, bank, GMM and reliabilities are
identical on every rank and equal to a single process fed the concatenated global batches (tested
in ``tests/components/test_prototype_bank.py``). The loss needs no gradient across ranks (the bank
is detached); each rank averages over its own anchors, so with equal local batches the mean over
ranks is the global-batch loss.

**State.** Everything lives in persistent buffers (a checkpoint resumes exactly). Counters that
decide what happens next (write pointer, fill, step) are mirrored on the host so the hot path
never waits on the device; the mirrors are re-read after a state-dict load.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssvar.components.distributed import gather_no_grad

__all__ = ["BankStep", "GaussianMixture1D", "PrototypeBank", "adaptive_contrastive_loss", "fit_gmm_1d"]


def fit_gmm_1d(
    x: Tensor,
    weight: Tensor | None = None,
    iters: int = 10,
    init: tuple[Tensor, Tensor, Tensor] | None = None,
    min_var: float = 1e-6,
) -> tuple[Tensor, Tensor, Tensor]:
    """EM for a 2-component Gaussian mixture on the 1-D values ``x`` (``[N]``).

    ``weight`` (``[N]``, 0/1 or soft) says which values count (a partly filled bank); ``init`` is
    ``(pi, mean, var)`` to start from (a warm start); otherwise the means start one standard
    deviation either side of the weighted mean, the variances at the data variance and the
    mixing weights at 1/2. A fixed number of iterations and no data-dependent stopping: the
    result is a deterministic function of the inputs (identical on every rank that has the same
    bank) and nothing is read back to the host. Computed in float64. Returns ``(pi, mean, var)``,
    each ``[2]``, component 0 with the lower mean.
    """
    x = x.detach().double().flatten()
    w = torch.ones_like(x) if weight is None else weight.detach().double().flatten()
    n = w.sum().clamp_min(1e-12)
    mu0 = (w * x).sum() / n
    var0 = ((w * (x - mu0) ** 2).sum() / n).clamp_min(min_var)
    if init is None:
        sd = var0.sqrt()
        pi = torch.full((2,), 0.5, dtype=x.dtype, device=x.device)
        mean = torch.stack([mu0 - sd, mu0 + sd])
        var = torch.stack([var0, var0])
    else:
        pi, mean, var = (t.detach().double().to(x.device).clone() for t in init)
        var = var.clamp_min(min_var)
        pi = pi.clamp_min(1e-6)
        pi = pi / pi.sum()
    for _ in range(iters):
        # E step: log responsibilities [N, 2]
        logp = _log_normal(x[:, None], mean[None], var[None]) + pi.log()[None]
        resp = (logp - logp.logsumexp(dim=1, keepdim=True)).exp() * w[:, None]
        # M step
        nk = resp.sum(dim=0).clamp_min(1e-12)
        pi = (nk / n).clamp_min(1e-6)
        pi = pi / pi.sum()
        mean = (resp * x[:, None]).sum(dim=0) / nk
        var = ((resp * (x[:, None] - mean[None]) ** 2).sum(dim=0) / nk).clamp_min(min_var)
    order = torch.argsort(mean)  # component 0 = low mean, 1 = high mean (no host sync)
    return pi[order], mean[order], var[order]


def _log_normal(x: Tensor, mean: Tensor, var: Tensor) -> Tensor:
    return -0.5 * ((x - mean) ** 2 / var + var.log() + math.log(2 * math.pi))


class GaussianMixture1D(nn.Module):
    """A fitted 2-component 1-D GMM whose high-mean component means "reliable".

    Args:
        iters: EM iterations per fit.
        warm_start: start each fit from the previous one (fewer iterations needed; still
            deterministic since the previous fit is part of the saved state).
        min_var: variance floor (1e-4: a standard deviation of 0.01 on the cosine scale, so a
            component cannot collapse onto one value and make reliability a step function).
        clamp_to_means: evaluate the posterior at ``x`` clamped to ``[mean_low, mean_high]``.
            The raw posterior of a mixture with unequal variances is not monotone: far beyond
            the high mean the wider component wins again, which would call the most
            prototype-like samples unreliable. Clamping makes reliability non-decreasing in the
            similarity. [assumption]
    """

    def __init__(self, iters: int = 10, warm_start: bool = True, min_var: float = 1e-4, clamp_to_means: bool = True):
        super().__init__()
        if iters < 1:
            raise ValueError(f"iters must be >= 1, got {iters}")
        if min_var <= 0:
            raise ValueError(f"min_var must be > 0, got {min_var}")
        self.iters = iters
        self.warm_start = warm_start
        self.min_var = min_var
        self.clamp_to_means = clamp_to_means
        self.register_buffer("pi", torch.full((2,), 0.5, dtype=torch.float64))
        self.register_buffer("mean", torch.tensor([0.0, 1.0], dtype=torch.float64))
        self.register_buffer("var", torch.ones(2, dtype=torch.float64))
        self.register_buffer("num_fits", torch.zeros((), dtype=torch.long))
        self._num_fits: int | None = None  # host mirror of num_fits

    @property
    def fitted(self) -> bool:
        if self._num_fits is None:
            self._num_fits = int(self.num_fits)
        return self._num_fits > 0

    @torch.no_grad()
    def fit(self, x: Tensor, weight: Tensor | None = None) -> None:
        init = (self.pi, self.mean, self.var) if (self.warm_start and self.fitted) else None
        pi, mean, var = fit_gmm_1d(x, weight, self.iters, init, self.min_var)
        self.pi.copy_(pi), self.mean.copy_(mean), self.var.copy_(var)
        self._num_fits = (self._num_fits or 0) + 1
        self.num_fits.fill_(self._num_fits)

    @torch.no_grad()
    def reliability(self, x: Tensor) -> Tensor:
        """Posterior probability of the high-mean component for each value of ``x`` (float32).
        Before the first fit every value is fully reliable (1)."""
        if not self.fitted:
            return torch.ones_like(x, dtype=torch.float32)
        xd = x.detach().double()
        if self.clamp_to_means:
            xd = torch.minimum(torch.maximum(xd, self.mean[0]), self.mean[1])
        logp = _log_normal(xd[..., None], self.mean, self.var) + self.pi.log()
        return (logp[..., 1] - logp.logsumexp(dim=-1)).exp().float()

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self._num_fits = None


class PrototypeBank(nn.Module):
    """Class prototypes, a momentum memory bank of pseudo-labelled embeddings, GMM reliability.

    Use per training step, in this order (:meth:`step` does all of it in one call)::

        bank.update_prototypes(labelled_embeddings, labels)   # 1. gathered across ranks
        bank.maybe_refit()                                     # 2. every refit_every steps
        r = bank.reliability(teacher_embeddings, pseudo_labels)
        loss = adaptive_contrastive_loss(student_embeddings, pseudo_labels, r, bank)
        bank.enqueue(teacher_embeddings, pseudo_labels, confidence)  # 3. after the loss

    The loss is taken against the bank *before* the current batch is enqueued (MoCo order), so an
    anchor never meets the teacher embedding of its own clip from the same step.

    Args:
        num_classes: number of classes (prototypes).
        dim: embedding size.
        size: bank entries (FIFO; the paper's size is unknown; 4096 is our choice).
        prototype_momentum: ``c_k <- normalise(m c_k + (1 - m) mean_k)`` for each class present
            in the (global) labelled batch; a class's first batch sets ``c_k`` to its mean.
        similarity: statistic the GMM is fitted on: ``"cosine"`` = ``cos(b_j, c_{y_j})``, the
            similarity of an entry to its pseudo-label's prototype; ``"softmax"`` = the probability
            of its pseudo-label under ``softmax(b_j . C / prototype_temperature)``. [assumption]
        prototype_temperature: temperature of ``similarity="softmax"``.
        refit_every: refit the GMM (on every valid entry, similarities recomputed with the current
            prototypes, then every entry's reliability recomputed) every this many steps; between
            refits new entries get their reliability from the current GMM. [assumption]
        min_fill: entries needed before the first fit; until then reliabilities are 1.
        gmm: the mixture (iterations, warm start, clamping); default ``GaussianMixture1D()``.
        gather: gather embeddings across ranks before updating (keep ``True`` under DDP).
    """

    def __init__(
        self,
        num_classes: int,
        dim: int,
        size: int = 4096,
        prototype_momentum: float = 0.9,
        similarity: Literal["cosine", "softmax"] = "cosine",
        prototype_temperature: float = 0.1,
        refit_every: int = 10,
        min_fill: int = 64,
        gmm: GaussianMixture1D | None = None,
        gather: bool = True,
    ):
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        if dim < 1 or size < 1:
            raise ValueError(f"dim and size must be >= 1, got dim={dim}, size={size}")
        if not 0.0 <= prototype_momentum < 1.0:
            raise ValueError(f"prototype_momentum must be in [0, 1), got {prototype_momentum}")
        if similarity not in ("cosine", "softmax"):
            raise ValueError(f"similarity must be 'cosine' or 'softmax', got {similarity!r}")
        if prototype_temperature <= 0:
            raise ValueError(f"prototype_temperature must be > 0, got {prototype_temperature}")
        if refit_every < 1:
            raise ValueError(f"refit_every must be >= 1, got {refit_every}")
        if not 2 <= min_fill <= size:
            raise ValueError(f"min_fill must be in [2, size={size}], got {min_fill}")
        self.num_classes, self.dim, self.size = num_classes, dim, size
        self.prototype_momentum = prototype_momentum
        self.similarity = similarity
        self.prototype_temperature = prototype_temperature
        self.refit_every = refit_every
        self.min_fill = min_fill
        self.gather = gather
        self.gmm = gmm if gmm is not None else GaussianMixture1D()
        self.register_buffer("prototypes", torch.zeros(num_classes, dim))
        self.register_buffer("prototype_seen", torch.zeros(num_classes, dtype=torch.bool))
        self.register_buffer("features", torch.zeros(size, dim))
        self.register_buffer("labels", torch.full((size,), -1, dtype=torch.long))
        self.register_buffer("confidence", torch.zeros(size))
        self.register_buffer("similarities", torch.zeros(size))
        self.register_buffer("reliabilities", torch.zeros(size))
        self.register_buffer("valid", torch.zeros(size, dtype=torch.bool))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self._host: dict[str, int] | None = None  # mirrors of ptr / filled / steps

    # -- host mirrors -----------------------------------------------------------------------
    def _counters(self) -> dict[str, int]:
        if self._host is None:  # read once after construction or a load
            self._host = {"ptr": int(self.ptr), "filled": int(self.filled), "steps": int(self.steps)}
        return self._host

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self._host = None

    @property
    def num_filled(self) -> int:
        """Valid entries (host value, no device sync)."""
        return self._counters()["filled"]

    # -- prototypes -------------------------------------------------------------------------
    @torch.no_grad()
    def update_prototypes(self, embeddings: Tensor, labels: Tensor) -> None:
        """Momentum update from labelled embeddings ``[B, dim]`` and labels ``[B]`` (this rank's;
        gathered here)."""
        z, y = self._gather_rows(F.normalize(embeddings.detach().float(), dim=1), labels)
        y = y.long()
        k = self.num_classes
        sums = torch.zeros(k, self.dim, device=z.device, dtype=z.dtype).index_add_(0, y, z)
        counts = torch.bincount(y, minlength=k).to(z.dtype)
        present = counts > 0
        mean = F.normalize(sums / counts.clamp_min(1)[:, None], dim=1)
        m = self.prototype_momentum
        old = self.prototypes
        mixed = F.normalize(m * old + (1 - m) * mean, dim=1)
        new = torch.where(self.prototype_seen[:, None], mixed, mean)
        self.prototypes.copy_(torch.where(present[:, None], new, old))
        self.prototype_seen |= present

    # -- similarity and reliability ----------------------------------------------------------
    @torch.no_grad()
    def prototype_similarity(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """The GMM statistic of embeddings ``[N, dim]`` with (pseudo-)labels ``[N]``."""
        z = F.normalize(embeddings.detach().float(), dim=1)
        labels = labels.long().clamp_min(0)
        if self.similarity == "cosine":
            return (z * self.prototypes[labels]).sum(dim=1)
        logits = z @ self.prototypes.t() / self.prototype_temperature
        return logits.softmax(dim=1).gather(1, labels[:, None]).squeeze(1)

    @torch.no_grad()
    def reliability(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """Reliability ``[N]`` in [0, 1] of embeddings with (pseudo-)labels under the current GMM."""
        return self.gmm.reliability(self.prototype_similarity(embeddings, labels))

    # -- bank -------------------------------------------------------------------------------
    @torch.no_grad()
    def enqueue(self, embeddings: Tensor, labels: Tensor, confidence: Tensor) -> None:
        """Write teacher embeddings ``[B, dim]``, pseudo-labels ``[B]`` and confidences ``[B]``
        (this rank's; gathered here) over the oldest entries."""
        z = F.normalize(embeddings.detach().float(), dim=1)
        rows = torch.cat([z, labels.detach().float()[:, None], confidence.detach().float()[:, None]], dim=1)
        rows = gather_no_grad(rows) if self.gather else rows
        if rows.shape[0] > self.size:  # more than the bank holds: keep the newest
            rows = rows[-self.size :]
        z, y, c = rows[:, : self.dim], rows[:, self.dim].round().long(), rows[:, self.dim + 1]
        n = rows.shape[0]
        host = self._counters()
        idx = (torch.arange(n, device=z.device) + host["ptr"]) % self.size
        sim = self.prototype_similarity(z, y)
        self.features.index_copy_(0, idx, z)
        self.labels.index_copy_(0, idx, y)
        self.confidence.index_copy_(0, idx, c)
        self.similarities.index_copy_(0, idx, sim)
        self.reliabilities.index_copy_(0, idx, self.gmm.reliability(sim))
        self.valid.index_fill_(0, idx, True)
        host["ptr"] = (host["ptr"] + n) % self.size
        host["filled"] = min(self.size, host["filled"] + n)
        self.ptr.fill_(host["ptr"])
        self.filled.fill_(host["filled"])

    @torch.no_grad()
    def refit(self) -> None:
        """Recompute every entry's similarity with the current prototypes, fit the GMM on the
        valid entries, and recompute every reliability."""
        self.similarities.copy_(self.prototype_similarity(self.features, self.labels))
        self.gmm.fit(self.similarities, self.valid.float())
        self.reliabilities.copy_(self.gmm.reliability(self.similarities) * self.valid)

    @torch.no_grad()
    def maybe_refit(self) -> bool:
        """Count one step; refit when it is due (every ``refit_every`` steps, once ``min_fill``
        entries are in). Returns whether it refitted (host value)."""
        host = self._counters()
        host["steps"] += 1
        self.steps.fill_(host["steps"])
        due = host["filled"] >= self.min_fill and (host["steps"] % self.refit_every == 0 or not self.gmm.fitted)
        if due:
            self.refit()
        return due

    def step(
        self,
        labelled: Tensor,
        labels: Tensor,
        teacher: Tensor,
        pseudo_labels: Tensor,
        confidence: Tensor,
        anchors: Tensor | None = None,
        anchor_mask: Tensor | None = None,
        temperature: float = 0.1,
        reliability_threshold: float = 0.5,
        weight_negatives: bool = True,
    ) -> BankStep:
        """One training step of the bank, in the order of the class docstring:

        1. prototypes from the labelled embeddings ``labelled [B_l, dim]`` with ``labels``;
        2. one step counted, the GMM refitted when due;
        3. the reliability ``r [B]`` of the teacher embeddings ``teacher [B, dim]`` with their
           ``pseudo_labels``; with ``anchors`` (student embeddings ``[B, dim]`` of the same clips),
           :func:`adaptive_contrastive_loss` against the bank as it is *before* this batch, with
           anchor weights ``r`` (times ``anchor_mask [B]`` when given, e.g. the confident ones);
        4. the teacher embeddings, pseudo-labels and ``confidence`` enqueued.

        Every input is this rank's (gathered inside); every rank must call it. Returns a
        :class:`BankStep` (the loss keeps its gradient to ``anchors``).
        """
        self.update_prototypes(labelled, labels)
        refitted = self.maybe_refit()
        r = self.reliability(teacher, pseudo_labels)
        loss: Tensor | None = None
        stats: dict[str, Tensor] = {}
        if anchors is not None:
            weights = r * anchor_mask if anchor_mask is not None else r
            loss, stats = adaptive_contrastive_loss(
                anchors, pseudo_labels, weights, self, temperature, reliability_threshold, weight_negatives
            )
        self.enqueue(teacher, pseudo_labels, confidence)  # after the loss (MoCo order)
        return BankStep(loss, r, refitted, stats)

    def _gather_rows(self, z: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        if not self.gather:
            return z, y
        rows = gather_no_grad(torch.cat([z, y.float()[:, None]], dim=1))  # one collective
        return rows[:, : self.dim], rows[:, self.dim].round().long()


@dataclass
class BankStep:
    """What one :meth:`PrototypeBank.step` did."""

    loss: Tensor | None  # adaptive contrastive loss of the anchors (None without anchors)
    reliability: Tensor  # [B] reliability of the teacher embeddings under the GMM of this step
    refitted: bool  # whether the GMM was refitted in this step
    stats: dict[str, Tensor] = field(default_factory=dict)  # the loss's statistics (detached)


def adaptive_contrastive_loss(
    anchors: Tensor,
    pseudo_labels: Tensor,
    anchor_weights: Tensor,
    bank: PrototypeBank,
    temperature: float = 0.1,
    reliability_threshold: float = 0.5,
    weight_negatives: bool = True,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Reliability-adaptive supervised contrastive loss of ``anchors`` against the bank.

    For anchor ``i`` (student embedding of a strong view, L2-normalised here) with pseudo-label
    ``y_i``, over the bank entries ``j`` that are valid and reliable (``r_j >= threshold``):

    * positives ``P(i)``: ``y_j = y_i``, weighted ``r_j / sum_{p in P(i)} r_p``;
    * negatives ``N(i)``: ``y_j != y_i``, each counted ``r_j`` times in the denominator when
      ``weight_negatives`` (a doubtful negative may be a same-class sample), else once;

    ``L_i = - sum_{j in P(i)} w_ij log( exp(s_ij) / sum_{a in P(i) u N(i)} v_a exp(s_ia) )``,
    ``s = z . b / temperature``, and ``L = sum_i a_i L_i / B`` with ``a_i`` the anchor weight (its
    own reliability, times the caller's mask), zero for anchors without positives. Normalised by
    the whole local batch ``B`` (as the pseudo-label loss), so a bank with few reliable entries
    gives a small loss, not a noisy large one.

    Returns the loss and detached statistics for logging (mean positives and negatives per
    anchor, share of anchors with a positive).
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if anchors.dim() != 2 or anchors.shape[1] != bank.dim:
        raise ValueError(f"anchors must be [B, {bank.dim}], got {tuple(anchors.shape)}")
    z = F.normalize(anchors.float(), dim=1)
    # A snapshot of the entries: the backward needs them after the caller enqueues in place.
    feats, labels, rel = bank.features.clone(), bank.labels, bank.reliabilities.clone()
    selected = bank.valid & (rel >= reliability_threshold)  # [N]
    same = pseudo_labels.long()[:, None] == labels[None, :]  # [B, N]
    pos = same & selected[None]
    neg = ~same & selected[None]
    pos_w = pos.float() * rel[None]
    n_pos_w = pos_w.sum(dim=1)
    has_pos = n_pos_w > 0
    pos_w = pos_w / n_pos_w.clamp_min(1e-12)[:, None]
    neg_v = rel[None].expand_as(neg) if weight_negatives else torch.ones_like(pos_w)
    denom_w = pos.float() + neg.float() * neg_v
    logits = z @ feats.t() / temperature  # [B, N]
    # log sum_a v_a exp(s_a); excluded entries get a large finite negative (no NaN for empty rows).
    log_denom = (logits + denom_w.clamp_min(1e-30).log().masked_fill(denom_w <= 0, -1e4)).logsumexp(dim=1)
    per_anchor = -(pos_w * (logits - log_denom[:, None])).sum(dim=1)
    a = anchor_weights.float() * has_pos.float()
    loss = (a * per_anchor).sum() / max(1, anchors.shape[0])
    stats = {
        "positives": pos.float().sum(dim=1).mean().detach(),
        "negatives": neg.float().sum(dim=1).mean().detach(),
        "anchors_with_positive": has_pos.float().mean().detach(),
    }
    return loss, stats
