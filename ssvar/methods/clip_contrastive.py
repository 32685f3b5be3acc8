"""Clip-contrastive pretraining with temporal hard negatives: a self-supervised start for any method.

Semi-supervised video papers rarely start from random weights (TimeBalance starts from TCLR
pretraining, SVFormer from an image model). This module pretrains a backbone on unlabelled videos
alone, and every method (Supervised included) then starts from it with
``--model.init_args.init_backbone_from <checkpoint>``. Labels are never loaded.

Per iteration, for each video of the batch:

1. two clips: an ``anchor`` and a ``positive`` from another random temporal window of the same
   video (``positive_window="other"``; ``"same"`` takes the anchor's frames), each with its own
   augmentation draw;
2. the anchor's **temporal variants**: the anchor played backwards (``reverse_negative``) and the
   same centre and crop at twice the stride, i.e. played twice as fast (``speed_negative``);
3. losses, temperature ``temperature``, embeddings from one projection MLP:

   * ``L_inst`` instance contrast (temporally invariant): NT-Xent between anchor and positive,
     the other videos of the global batch as negatives (gathered across ranks with gradients);
   * ``L_time`` temporal contrast (temporally distinctive): for each anchor, the positive must
     score above the anchor's own reversed and sped-up versions, a cross-entropy over
     ``[positive, reversed, faster]``.

4. ``L = L_inst + time_weight * L_time``.

Why the temporal negatives: instance contrast alone learns what stays the same across a video's
windows (appearance), which cannot tell "slide left" from "slide right" or "fall slowly" from
"fall fast". The arrow of time (Wei et al., CVPR 2018) and playback speed (SpeedNet, Benaim et
al., CVPR 2020) are standard self-supervised signals, and TCLR (Dave et al., CVIU 2022) argues for
temporally distinctive features in the same way. Docs: ``docs/methods/clip_contrastive.md``.

The module has no classifier: validation and testing do nothing (set ``limit_val_batches: 0``).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ssvar.components.contrastive import ProjectionHead, nt_xent
from ssvar.data.dataset import ViewSpec
from ssvar.methods.base import SemiSupervisedModule


def temporal_contrast(anchor: torch.Tensor, positive: torch.Tensor, variants: list[torch.Tensor], temperature: float) -> torch.Tensor:
    """Cross-entropy that ranks each anchor's ``positive`` above its own temporal ``variants``.

    All inputs are ``[B, D]`` embeddings (L2-normalised here); for anchor i the candidates are
    ``positive[i]`` (the target) and ``variants[k][i]`` for every k. Per-video only: no other
    video takes part, so the term asks for temporal distinctiveness, not instance identity.
    """
    if not variants:
        raise ValueError("temporal_contrast needs at least one temporal variant")
    a = F.normalize(anchor, dim=1)
    cands = torch.stack([F.normalize(c, dim=1) for c in (positive, *variants)], dim=1)  # [B, 1+K, D]
    logits = torch.einsum("bd,bkd->bk", a, cands) / temperature
    return F.cross_entropy(logits, torch.zeros(a.shape[0], dtype=torch.long, device=a.device))


class ClipContrastive(SemiSupervisedModule):
    """Instance contrast between two windows of a video, plus time-reversed and sped-up negatives.

    Args:
        backbone: any ssvar backbone (pooled features ``[B, D]``).
        num_classes: the data's class count (linked by the CLI; no classifier is built).
        temperature: of both losses (SimCLR: 0.1-0.5; our choice 0.1, as TCLR).
        time_weight: weight of ``L_time`` (0: plain SimCLR-style clip contrast).
        reverse_negative: the anchor played backwards is a negative in ``L_time``.
        speed_negative: the anchor at twice the stride (same centre and crop) is a negative.
        positive_window: ``"other"``: the positive is another random window of the video (our
            choice: the representation must hold over time); ``"same"``: the anchor's frames.
        augmentation: ``"strong"`` (crop + flip + RandAugment; the data module's
            ``randaugment_exclude`` still applies, so label-defining colours can be kept) or
            ``"weak"`` (crop + flip).
        proj_dim, proj_hidden_dim: projection MLP ``Linear-BN-ReLU-Linear-BN``.
        gather: gather the instance negatives across ranks.
        **kwargs: :class:`SemiSupervisedModule` arguments (optimiser and schedule).
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        temperature: float = 0.1,
        time_weight: float = 1.0,
        reverse_negative: bool = True,
        speed_negative: bool = True,
        positive_window: Literal["other", "same"] = "other",
        augmentation: Literal["weak", "strong"] = "strong",
        proj_dim: int = 128,
        proj_hidden_dim: int = 512,
        gather: bool = True,
        **kwargs,
    ):
        super().__init__(backbone, num_classes, **kwargs)
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if time_weight < 0:
            raise ValueError(f"time_weight must be >= 0, got {time_weight}")
        if time_weight > 0 and not (reverse_negative or speed_negative):
            raise ValueError("time_weight > 0 needs reverse_negative or speed_negative (or set time_weight=0)")
        if positive_window not in ("other", "same"):
            raise ValueError(f"positive_window must be 'other' or 'same', got {positive_window!r}")
        if augmentation not in ("weak", "strong"):
            raise ValueError(f"augmentation must be 'weak' or 'strong', got {augmentation!r}")
        self.head = None  # no classifier in pretraining; the methods that start from it add theirs
        self.projector = ProjectionHead(backbone.feature_dim, proj_hidden_dim, proj_dim, num_layers=2, last_bn_affine=True)
        self.temperature = temperature
        self.time_weight = time_weight
        self.reverse_negative = reverse_negative and time_weight > 0
        self.speed_negative = speed_negative and time_weight > 0
        self.positive_window = positive_window
        self.augmentation = augmentation
        self.gather = gather

    # -- data -----------------------------------------------------------------------------
    def views(self) -> dict[str, dict[str, ViewSpec]]:
        window = "own" if self.positive_window == "other" else "shared"
        views = {"anchor": ViewSpec(self.augmentation), "positive": ViewSpec(self.augmentation, window=window)}
        if self.speed_negative:
            # same centre and crop as the anchor, twice the stride: the same motion, twice as fast
            views["faster"] = ViewSpec(self.augmentation, stride_factor=2, same_as="anchor")
        return {"labeled": {}, "unlabeled": views}

    # -- model ----------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled backbone features (there is no classifier in this stage)."""
        return self.backbone(x)

    def embed(self, *clips: torch.Tensor) -> list[torch.Tensor]:
        """Projected embeddings of several clip batches ``[B, C, T, H, W]``, in one forward."""
        z = self.projector(self.backbone(torch.cat(clips)))
        return list(z.split([c.shape[0] for c in clips]))

    # -- the iteration --------------------------------------------------------------------
    def pretext_losses(self, views: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The weighted loss terms of one batch of normalised views."""
        clips = [views["anchor"], views["positive"]]
        if self.reverse_negative:
            clips.append(views["anchor"].flip(2))  # [B, C, T, H, W]: time reversed
        if self.speed_negative:
            clips.append(views["faster"])
        z_anchor, z_pos, *variants = self.embed(*clips)
        losses = {"instance": nt_xent(z_anchor, z_pos, self.temperature, self.gather)}
        if self.time_weight:
            losses["temporal"] = self.time_weight * temporal_contrast(z_anchor, z_pos, variants, self.temperature)
        return losses

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        views = batch["unlabeled"]
        losses = self.pretext_losses(views)
        loss = sum(losses.values())
        bs = views["anchor"].shape[0]
        for name, v in losses.items():
            self.log(f"train/loss_{name}", v, batch_size=bs)
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"] if self.trainer.optimizers else 0.0, batch_size=bs)
        self.log("data/decode_failures", float(self.decode_failures), batch_size=bs, reduce_fx="max")
        return loss

    # No classifier: nothing to validate, test or predict.
    def validation_step(self, batch: dict, batch_idx: int) -> None:
        return None

    def on_validation_epoch_end(self) -> None:
        self.val_metrics.reset()

    def test_step(self, batch: dict, batch_idx: int) -> None:
        raise RuntimeError("ClipContrastive has no classifier to test: start a method from it with init_backbone_from")

    def precise_bn_forward(self, batch: dict) -> None:
        with torch.no_grad():
            self.pretext_losses(batch["unlabeled"])
