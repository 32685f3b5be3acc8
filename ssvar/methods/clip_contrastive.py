"""Clip-contrastive pretraining with temporal hard negatives: a self-supervised start for any method.

Semi-supervised video papers rarely start from random weights (TimeBalance starts from TCLR
pretraining, SVFormer from an image model). This module pretrains a backbone on unlabelled videos
alone, and every method (Supervised included) then starts from it with
``--model.init_args.init_backbone_from <checkpoint>``. Labels are never loaded.

Per iteration, for each video of the batch:

1. two clips: an ``anchor`` and a ``positive`` from another random temporal window of the same
   video (``positive_window="other"``; ``"same"`` takes the anchor's frames), each with its own
   augmentation draw;
2. **temporal variants** of the positive (``variants_of="positive"``) or of the anchor: the clip
   played backwards (``reverse_negative``) and the same centre at twice the stride, i.e. played
   twice as fast (``speed_negative``). For the latter the source clip is decoded at twice the
   length in one pass and augmented once: its middle ``num_frames`` are the clip, every second
   frame is the faster version, so both share crop and colours exactly;
3. losses, temperature ``temperature``, embeddings from one projection MLP:

   * ``L_inst`` instance contrast (temporally invariant): NT-Xent between anchor and positive,
     the other videos of the global batch as negatives (gathered across ranks with gradients);
   * ``L_time`` temporal contrast (temporally distinctive): for each anchor, the positive must
     score above its reversed and sped-up versions (or the anchor's own), a cross-entropy over
     ``[positive, reversed, faster]``. With the positive's variants, the candidates share frames,
     crop and colours and differ only in time, so a time-symmetric embedding scores exactly
     ``log 3``: only direction and speed can lower the loss.

4. ``L = L_inst + time_weight * L_time``.

With ``foreground_merge`` (FAME, Ding et al., CVPR 2022), the anchor's moving part is first pasted
onto the static background of another video of the batch (:func:`ssvar.components.foreground_merge`):
the anchor then shares its background with a *negative*, so the background stops being the
shortcut to the positive and the features have to describe what moves.

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
from ssvar.components.foreground import foreground_merge
from ssvar.data.dataset import ViewSpec
from ssvar.methods.base import SelfSupervisedPretraining


def temporal_contrast(
    anchor: torch.Tensor, positive: torch.Tensor, variants: list[torch.Tensor], temperature: float
) -> torch.Tensor:
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


class ClipContrastive(SelfSupervisedPretraining):
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
        variants_of: whose reversed / faster versions are the temporal negatives: ``"positive"``
            (they differ from the target only in time) or ``"anchor"``.
        num_frames: frames per clip (the data module's ``stride`` applies).
        augmentation: ``"strong"`` (crop + flip + RandAugment; the data module's
            ``randaugment_exclude`` still applies, so label-defining colours can be kept) or
            ``"weak"`` (crop + flip).
        proj_dim, proj_hidden_dim: projection MLP ``Linear-BN-ReLU-Linear-BN``.
        gather: gather the instance negatives across ranks.
        foreground_merge: paste the anchor's foreground onto another video's static background
            (FAME; the previous video of the per-device batch, which must hold at least 2 videos).
            Off by default (the original objective); for static cameras.
        fg_ratio: the fraction of pixels that count as foreground (the ones that move most).
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
        variants_of: Literal["positive", "anchor"] = "positive",
        num_frames: int = 8,
        augmentation: Literal["weak", "strong"] = "strong",
        proj_dim: int = 128,
        proj_hidden_dim: int = 512,
        gather: bool = True,
        foreground_merge: bool = False,
        fg_ratio: float = 0.2,
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
        if variants_of not in ("positive", "anchor"):
            raise ValueError(f"variants_of must be 'positive' or 'anchor', got {variants_of!r}")
        if augmentation not in ("weak", "strong"):
            raise ValueError(f"augmentation must be 'weak' or 'strong', got {augmentation!r}")
        if num_frames < 2 or num_frames % 2:
            raise ValueError(f"num_frames must be even and >= 2, got {num_frames}")
        if not 0.0 < fg_ratio <= 1.0:
            raise ValueError(f"fg_ratio must be in (0, 1], got {fg_ratio}")
        self.projector = ProjectionHead(
            backbone.feature_dim, proj_hidden_dim, proj_dim, num_layers=2, last_bn_affine=True
        )
        self.temperature = temperature
        self.time_weight = time_weight
        self.reverse_negative = reverse_negative and time_weight > 0
        self.speed_negative = speed_negative and time_weight > 0
        self.positive_window = positive_window
        self.variants_of = variants_of
        self.num_frames = num_frames
        self.augmentation = augmentation
        self.gather = gather
        self.foreground_merge = foreground_merge
        self.fg_ratio = fg_ratio

    # -- data -----------------------------------------------------------------------------
    def views(self) -> dict[str, dict[str, ViewSpec]]:
        window = "own" if self.positive_window == "other" else "shared"
        t = self.num_frames
        # the variants' source is decoded twice as long when the faster version is needed
        long = 2 * t if self.speed_negative else t
        views = {
            "anchor": ViewSpec(self.augmentation, num_frames=long if self.variants_of == "anchor" else t),
            "positive": ViewSpec(
                self.augmentation, num_frames=long if self.variants_of == "positive" else t, window=window
            ),
        }
        return {"labeled": {}, "unlabeled": views}

    def split_long(self, clip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(clip, faster)`` from a ``[B, C, T', H, W]`` view: with the speed negative, T' is
        ``2 * num_frames``; the clip is its middle ``num_frames`` frames and the faster version
        every second frame (the same centre, twice the stride)."""
        if not self.speed_negative:
            return clip, None
        t = self.num_frames
        return clip[:, :, t // 2 : t // 2 + t], clip[:, :, ::2]

    # -- model ----------------------------------------------------------------------------
    def embed(self, *clips: torch.Tensor) -> list[torch.Tensor]:
        """Projected embeddings of several clip batches ``[B, C, T, H, W]``, in one forward."""
        z = self.projector(self.backbone(torch.cat(clips)))
        return list(z.split([c.shape[0] for c in clips]))

    # -- the iteration --------------------------------------------------------------------
    def pretext_losses(self, views: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The weighted loss terms of one batch of normalised views."""
        anchor, positive = views["anchor"], views["positive"]
        if self.foreground_merge:  # before the split: the anchor's own variants share its background
            anchor = foreground_merge(anchor, self.fg_ratio)
        if self.variants_of == "anchor":
            anchor, faster = self.split_long(anchor)
            source = anchor
        else:
            positive, faster = self.split_long(positive)
            source = positive
        clips = [anchor, positive]
        if self.reverse_negative:
            clips.append(source.flip(2))  # [B, C, T, H, W]: time reversed
        if faster is not None:
            clips.append(faster)
        z_anchor, z_pos, *variants = self.embed(*clips)
        losses = {"instance": nt_xent(z_anchor, z_pos, self.temperature, self.gather)}
        if self.time_weight:
            losses["temporal"] = self.time_weight * temporal_contrast(z_anchor, z_pos, variants, self.temperature)
        return losses
