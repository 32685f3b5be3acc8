"""Losses that pull one network's outputs towards another's (the target never gets a gradient).

* :func:`feature_alignment_loss`: multi-level feature alignment, ``1 - cos`` between the feature
  maps of two networks at every stage (LTG, Xiao et al. CVPR 2022: the RGB network aligns its
  features with the temporal-gradient network's; ``docs/methods/tg_fixmatch.md``).
* :func:`distillation_loss`: a student's class distribution against a soft target (TimeBalance,
  Dave et al. CVPR 2023: the student against the reweighted combination of two teachers; mean
  squared error of the probabilities as the official default, or KL; ``docs/methods/timebalance.md``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch.nn.functional as F
from torch import Tensor

__all__ = ["distillation_loss", "feature_alignment_loss"]


def feature_alignment_loss(features: Sequence[Tensor], targets: Sequence[Tensor]) -> Tensor:
    """Sum over stages of ``1 - mean cos(F, sg(F_target))``.

    ``features[i]`` and ``targets[i]`` are the stage-``i`` feature maps ``[B, C_i, ...]`` of the
    two networks (same shapes). The cosine is over channels (dim 1) at each position (``t, h, w``
    for video feature maps), the mean over positions and samples. The targets are detached: only
    the first network is pulled (LTG: the TG network gets no gradient from the alignment).
    """
    if len(features) != len(targets) or not features:
        raise ValueError(
            f"feature_alignment_loss needs the same non-zero number of stages, got {len(features)} and {len(targets)}"
        )
    total = features[0].new_zeros(())
    for i, (f, t) in enumerate(zip(features, targets)):
        if f.shape != t.shape:
            raise ValueError(f"stage {i}: feature maps differ in shape, {tuple(f.shape)} vs {tuple(t.shape)}")
        total = total + (1.0 - F.cosine_similarity(f, t.detach(), dim=1).mean())
    return total


def distillation_loss(student_logits: Tensor, target: Tensor, kind: Literal["mse", "kl"] = "mse") -> Tensor:
    """Distance of the student's distribution ``softmax(student_logits)`` (``[B, K]``) to the
    soft target ``target`` (``[B, K]``, rows summing to 1, no gradient expected).

    ``"mse"``: mean over batch x classes of ``(softmax(S) - P_T)^2`` (TimeBalance's official
    ``l2``); ``"kl"``: element-mean of ``P_T * (log P_T - log softmax(S))`` (its ``kld`` option's
    reduction: ``KL(P_T || softmax S)`` divided by ``B * K``). Computed in float32 at least.
    """
    if student_logits.dim() != 2 or student_logits.shape != target.shape:
        raise ValueError(
            "student_logits and target must both be [B, K], got "
            f"{tuple(student_logits.shape)} and {tuple(target.shape)}"
        )
    if kind == "mse":
        return F.mse_loss(student_logits.float().softmax(1), target)
    if kind == "kl":
        log_p = student_logits.float().log_softmax(1)
        return (target * (target.clamp_min(1e-12).log() - log_p)).mean()
    raise ValueError(f"kind must be 'mse' or 'kl', got {kind!r}")
