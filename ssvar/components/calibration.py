"""Pseudo-label calibration: how often a pseudo-label is right at each confidence.

A reliability diagram bins pseudo-labels by their confidence (the teacher's max probability) and
compares, per bin, the share that matches the hidden true label with the bin's mean confidence.
A well-calibrated teacher lies on the diagonal; a teacher whose confident pseudo-labels are no
more accurate than its unconfident ones draws a flat line, and a threshold then filters nothing
useful. Monitoring only: the hidden labels never reach a loss.
"""

from __future__ import annotations

import torch
from torch import nn


class CalibrationBins(nn.Module):
    """Running per-bin sums over ``num_bins`` equal-width confidence bins on ``[0, 1]``.

    ``sums`` is ``[3, num_bins]``: count, correct count and summed confidence per bin. It is a
    non-persistent buffer (monitoring, not training state), updated without host syncs.
    """

    def __init__(self, num_bins: int = 10):
        super().__init__()
        if num_bins < 2:
            raise ValueError(f"num_bins must be >= 2, got {num_bins}")
        self.num_bins = num_bins
        self.register_buffer("sums", torch.zeros(3, num_bins), persistent=False)

    @torch.no_grad()
    def update(self, confidence: torch.Tensor, correct: torch.Tensor, known: torch.Tensor) -> None:
        """Add pseudo-labels with ``confidence`` [B], ``correct`` [B] (0/1) and ``known`` [B]
        (0/1: the hidden label exists); unknown ones are weighted 0."""
        b = (confidence.float() * self.num_bins).long().clamp_(0, self.num_bins - 1)
        w = known.float()
        for row, weights in enumerate((w, w * correct.float(), w * confidence.float())):
            self.sums[row] += torch.bincount(b, weights=weights, minlength=self.num_bins)

    def reset(self) -> None:
        self.sums.zero_()


def reliability(sums: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-bin ``count``, ``accuracy`` and mean ``confidence`` (NaN in empty bins) and the
    expected calibration error ``ece`` = sum over bins of (count share x |accuracy - confidence|)."""
    sums = sums.double()
    count, correct, conf = sums
    safe = count.clamp(min=1)
    acc = torch.where(count > 0, correct / safe, torch.nan)
    mean_conf = torch.where(count > 0, conf / safe, torch.nan)
    n = count.sum()
    gap = torch.nan_to_num((acc - mean_conf).abs())
    ece = (count / n * gap).sum() if n > 0 else torch.tensor(float("nan"), dtype=torch.float64)
    return {"count": count, "accuracy": acc, "confidence": mean_conf, "ece": ece}
