"""Pseudo-labelling: confident predictions on a weak view become targets for another view.

``PseudoLabeler(logits_weak, step)`` returns :class:`PseudoLabels` (targets, confidence mask,
threshold); ``PseudoLabeler.loss(logits_strong, pl)`` is the masked cross-entropy. By default the
loss is divided by the whole unlabelled batch, not by the number of confident samples, as the
reference FixMatch/LTG/SVFormer code does (so a batch with few confident samples contributes a
small loss rather than a noisy large one).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class PseudoLabels:
    """Targets from the weak view; all tensors are detached."""

    probs: torch.Tensor  # [B, K] softmax of the (temperature-scaled) weak logits
    targets: torch.Tensor  # [B] hard labels, or [B, K] soft targets
    mask: torch.Tensor  # [B] float, 1 where confident
    confidence: torch.Tensor  # [B] max probability
    threshold: float

    @property
    def hard(self) -> torch.Tensor:
        return self.probs.argmax(dim=1)

    @classmethod
    def from_probs(cls, probs: torch.Tensor) -> PseudoLabels:
        """Every clip's argmax as its (unthresholded) pseudo-label: for monitoring a target
        distribution that is not thresholded (e.g. a distillation target)."""
        probs = probs.detach()
        confidence, hard = probs.max(dim=1)
        return cls(probs, hard, torch.ones_like(confidence), confidence, 0.0)


class PseudoLabeler(nn.Module):
    """Thresholded pseudo-labels and their loss.

    Args:
        threshold: confidence threshold τ (the starting value when scheduled).
        final_threshold: value reached after ``schedule_steps`` (``None``: fixed threshold).
        schedule: ``"linear"`` or ``"cosine"`` interpolation from ``threshold`` to ``final_threshold``.
        schedule_steps: length of the threshold schedule in iterations.
        targets: ``"hard"`` (one-hot argmax) or ``"soft"`` (the sharpened distribution).
        temperature: softmax temperature of the weak logits (soft targets are sharpened by it).
        normalize: ``"batch"`` divides the masked loss by the unlabelled batch size (reference
            code); ``"mask"`` by the number of confident samples.
        distribution_alignment: rescale each prediction by ``uniform / p_model`` and renormalise
            (ReMixMatch, Berthelot et al. ICLR 2020, section 3.2; a uniform target, our choice:
            ssvar's labelled sets are class-balanced), with ``p_model`` the running mean of the
            predictions (momentum ``ema_momentum``). A model that favours a few classes then
            hands out pseudo-labels of the others too. Off by default.
        adaptive_threshold: ``"freematch"``: class-wise self-adaptive thresholds (FreeMatch, Wang
            et al. ICLR 2023, eq. 6-10): a global level ``tau_t``, the running mean of the
            batches' mean top confidence, times ``p_t(c) / max p_t``, the running mean class
            probabilities normalised by their maximum; both start at ``1 / K``, so early in
            training most clips pass, and the bar rises with the model's confidence. ``threshold``
            and its schedule are then unused. (FreeMatch's fairness loss is not included.)
            ``"none"`` (default): the fixed or scheduled ``threshold``.
        ema_momentum: momentum of the running statistics of both options (USB's 0.999).

    The running statistics are buffers (saved in checkpoints, so resuming is exact) and, under
    DDP, are updated with the mean over the global batch, so every rank holds the same values.
    They exist only when an option is on, so the default's state dict has no keys.
    """

    def __init__(
        self,
        threshold: float = 0.95,
        final_threshold: float | None = None,
        schedule: Literal["linear", "cosine"] = "linear",
        schedule_steps: int = 0,
        targets: Literal["hard", "soft"] = "hard",
        temperature: float = 1.0,
        normalize: Literal["batch", "mask"] = "batch",
        distribution_alignment: bool = False,
        adaptive_threshold: Literal["none", "freematch"] = "none",
        ema_momentum: float = 0.999,
    ):
        super().__init__()
        if adaptive_threshold not in ("none", "freematch"):
            raise ValueError(f"adaptive_threshold must be 'none' or 'freematch', got {adaptive_threshold!r}")
        if not 0.0 <= ema_momentum < 1.0:
            raise ValueError(f"ema_momentum must be in [0, 1), got {ema_momentum}")
        if not 0.0 <= threshold <= 1.0 or (final_threshold is not None and not 0.0 <= final_threshold <= 1.0):
            raise ValueError(f"thresholds must be in [0, 1], got {threshold}, {final_threshold}")
        if targets not in ("hard", "soft"):
            raise ValueError(f"targets must be 'hard' or 'soft', got {targets!r}")
        if normalize not in ("batch", "mask"):
            raise ValueError(f"normalize must be 'batch' or 'mask', got {normalize!r}")
        if schedule not in ("linear", "cosine"):
            raise ValueError(f"schedule must be 'linear' or 'cosine', got {schedule!r}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.threshold = threshold
        self.final_threshold = final_threshold
        self.schedule = schedule
        self.schedule_steps = schedule_steps
        self.targets = targets
        self.temperature = temperature
        self.normalize = normalize
        self.distribution_alignment = distribution_alignment
        self.adaptive_threshold = adaptive_threshold
        self.ema_momentum = ema_momentum
        # Sized [K] at the first batch (the class count is the logits'); empty until then.
        if distribution_alignment:
            self.register_buffer("p_model", torch.empty(0))
        if adaptive_threshold == "freematch":
            self.register_buffer("class_level", torch.empty(0))  # FreeMatch's p_t(c)
            self.register_buffer("global_level", torch.empty(0))  # FreeMatch's tau_t

    def current_threshold(self, step: int) -> float:
        if self.final_threshold is None or self.schedule_steps <= 0:
            return self.threshold
        p = min(1.0, step / self.schedule_steps)
        if self.schedule == "cosine":
            p = (1 - math.cos(math.pi * p)) / 2
        return self.threshold + (self.final_threshold - self.threshold) * p

    @torch.no_grad()
    def forward(self, logits_weak: torch.Tensor, step: int = 0) -> PseudoLabels:
        probs = (logits_weak.detach().float() / self.temperature).softmax(dim=1)
        if self.distribution_alignment:
            # p_model follows the raw predictions; the aligned ones are what the targets use
            self._ema("p_model", _global_mean(probs), 1.0 / probs.shape[1])
            probs = probs / self.p_model.clamp_min(1e-12)
            probs = probs / probs.sum(dim=1, keepdim=True)
        confidence, hard = probs.max(dim=1)
        if self.adaptive_threshold == "freematch":
            self._ema("global_level", _global_mean(confidence[:, None]), 1.0 / probs.shape[1])
            self._ema("class_level", _global_mean(probs), 1.0 / probs.shape[1])
            per_class = self.global_level * self.class_level / self.class_level.max()
            mask = (confidence >= per_class[hard]).float()
            tau = float(per_class.mean())
        else:
            tau = self.current_threshold(step)
            mask = (confidence >= tau).float()
        targets = hard if self.targets == "hard" else probs
        return PseudoLabels(probs=probs, targets=targets, mask=mask, confidence=confidence, threshold=tau)

    def _ema(self, name: str, value: torch.Tensor, start: float) -> None:
        """Running mean of a statistic, starting from ``start`` (``1 / K``, as FreeMatch and USB)."""
        buf = self._buffers[name]
        if buf.shape != value.shape:
            buf = torch.full_like(value, start)
        self._buffers[name] = buf * self.ema_momentum + (1.0 - self.ema_momentum) * value

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # The running statistics are sized at the first batch: take the stored size.
        for name in ("p_model", "class_level", "global_level"):
            key = prefix + name
            if name in self._buffers and key in state_dict:
                self._buffers[name] = torch.empty_like(state_dict[key])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def loss(self, logits: torch.Tensor, pl: PseudoLabels) -> torch.Tensor:
        """Masked cross-entropy of ``logits`` (the strong view) against the pseudo-labels."""
        if pl.targets.dim() == 1:
            per_sample = F.cross_entropy(logits, pl.targets, reduction="none")
        else:
            per_sample = -(pl.targets * logits.log_softmax(dim=1)).sum(dim=1)
        total = (per_sample * pl.mask).sum()
        denom = logits.shape[0] if self.normalize == "batch" else pl.mask.sum().clamp_min(1.0)
        return total / denom


def _global_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean over the rows of ``x`` ``[B, K]`` across every DDP rank (the global batch)."""
    total, count = x.sum(dim=0), torch.tensor(float(x.shape[0]), device=x.device)
    if (
        torch.distributed.is_available()
        and torch.distributed.is_initialized()
        and torch.distributed.get_world_size() > 1
    ):
        torch.distributed.all_reduce(total)
        torch.distributed.all_reduce(count)
    return total / count
