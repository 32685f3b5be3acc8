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
    ):
        super().__init__()
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
        confidence, hard = probs.max(dim=1)
        tau = self.current_threshold(step)
        mask = (confidence >= tau).float()
        targets = hard if self.targets == "hard" else probs
        return PseudoLabels(probs=probs, targets=targets, mask=mask, confidence=confidence, threshold=tau)

    def loss(self, logits: torch.Tensor, pl: PseudoLabels) -> torch.Tensor:
        """Masked cross-entropy of ``logits`` (the strong view) against the pseudo-labels."""
        if pl.targets.dim() == 1:
            per_sample = F.cross_entropy(logits, pl.targets, reduction="none")
        else:
            per_sample = -(pl.targets * logits.log_softmax(dim=1)).sum(dim=1)
        total = (per_sample * pl.mask).sum()
        denom = logits.shape[0] if self.normalize == "batch" else pl.mask.sum().clamp_min(1.0)
        return total / denom
