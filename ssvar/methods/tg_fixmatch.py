"""TG-FixMatch: learning from temporal gradient (Xiao et al., CVPR 2022; docs/methods/tg_fixmatch.md).

Two networks of the same architecture, one on RGB clips and one on their temporal gradient (TG,
computed on the device from the decoded frames). Per iteration:

1. forward the RGB network on ``[labelled, weak, strong]`` RGB clips and the TG network on the
   same clips' TG, keeping the feature maps of every stage;
2. supervised cross-entropy for both modalities on the labelled clips (0.5 each);
3. pseudo-labels from the averaged RGB + TG logits of the weak clips (no gradient), confident
   when the top probability >= ``threshold``;
4. after ``unsup_warmup_steps``: cross-entropy of both modalities' strong clips against the
   confident pseudo-labels, divided by the whole unlabelled batch (0.5 each);
5. feature alignment on labelled + weak clips: at every stage, ``1 - cos`` over channels between
   the RGB feature map and the *detached* TG feature map (the TG network gets no gradient from it);
6. cross-modal contrastive on labelled + weak clips: symmetric InfoNCE between projected pooled
   RGB and TG features, negatives gathered across ranks;
7. ``L = L_sup + L_u + w_align * L_align + w_con * L_con``.

Inference uses the RGB network only, so a trained model costs what a plain RGB model costs.
"""

from __future__ import annotations

import copy
import warnings
from typing import Literal

import torch
from torch import nn

from ssvar.components.contrastive import PairedContrastive
from ssvar.components.distillation import feature_alignment_loss
from ssvar.components.pseudo_label import PseudoLabeler
from ssvar.components.schedules import WeightSchedule
from ssvar.components.temporal_gradient import split_rgb_tg
from ssvar.data.dataset import ViewSpec
from ssvar.methods.base import SemiSupervisedModule
from ssvar.methods.step import LabeledViews, Network, StepOutput, UnlabeledViews
from ssvar.models.backbones import VideoBackbone, check_backbone
from ssvar.models.heads import Classifier, ClassifierHead


def _reinit(module: nn.Module) -> nn.Module:
    """Fresh weights for a copied network (LTG's TG network has the same architecture, new
    weights), drawn by the backbone's own initialiser (``init_weights``), not PyTorch's per-layer
    defaults (which would give R3D18 convs ~0.4x the std and undo SlowOnly-R50's zero-init)."""
    if isinstance(module, VideoBackbone):
        module.init_weights()
        return module
    for m in module.modules():
        if m is not module and hasattr(m, "reset_parameters"):
            m.reset_parameters()
    return module


class TGFixMatch(SemiSupervisedModule):
    """FixMatch on RGB and temporal gradient with feature alignment and cross-modal contrast.

    Args:
        backbone: the RGB network; it must expose ``forward_stages`` (a 3D-CNN).
        num_classes: number of classes.
        tg_backbone: the TG network (same architecture); default: a copy of ``backbone`` with
            freshly initialised weights.
        threshold: confidence threshold of the averaged pseudo-labels (LTG's released configs: 0.3;
            the paper's stated value could not be read, docs/methods/tg_fixmatch.md).
        tg_offset: frame offset of the temporal gradient: 1 = consecutive frames (LTG); the clip
            stride gives the "slow TG" ablation.
        lambda_u: weight of the unlabelled loss.
        align_weight: weight of the feature-alignment loss (LTG: 1 per stage).
        contrastive_weight: weight of the cross-modal InfoNCE (LTG: 1; 0 switches it off, as in
            LTG's Kinetics-400 1 % config, and then no projection heads are built).
        temperature: InfoNCE temperature (LTG: 0.5).
        proj_dim: projection width (LTG: 512).
        unsup_warmup_steps: iterations before the pseudo-label loss starts; a float in (0, 1) is a
            fraction of the total (LTG: 30 of 180 epochs, i.e. 1/6).
        tg_strong_view: how the TG network's strong clip is made. ``"gradient"`` (default, LTG's
            pipeline): the gradient of the weak crop's frames is taken first and its own
            RandAugment draw is applied to the gradient image, so photometric ops change it.
            ``"frames"`` (ssvar 0.1.0): its own draw applied to frames ``t`` and ``t + k``,
            which are then differenced; photometric ops then mostly cancel (a static region
            stays at 127 under Brightness, Equalize, Posterize or Solarize), leaving the
            geometric ones. ``"shared"``: the gradient of the RGB strong clip's frames (one draw
            for both modalities).
        independent_tg_augment: deprecated (ssvar 0.1.0); ``True`` maps to ``tg_strong_view="frames"`` and
            ``False`` to ``"shared"``, with a warning, so old checkpoints and configs keep loading.
        **kwargs: :class:`SemiSupervisedModule` arguments.
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        tg_backbone: nn.Module | None = None,
        threshold: float = 0.3,
        tg_offset: int = 1,
        lambda_u: float = 1.0,
        align_weight: float = 1.0,
        contrastive_weight: float = 1.0,
        temperature: float = 0.5,
        proj_dim: int = 512,
        unsup_warmup_steps: float = 0,
        tg_strong_view: Literal["gradient", "frames", "shared"] = "gradient",
        independent_tg_augment: bool | None = None,
        **kwargs,
    ):
        if independent_tg_augment is not None:
            # Checkpoints and configs from before tg_strong_view keep loading, and keep training
            # what they trained: their own draw on the frames (True) or the RGB draw (False).
            tg_strong_view = "frames" if independent_tg_augment else "shared"
            warnings.warn(
                f"independent_tg_augment is deprecated: use tg_strong_view={tg_strong_view!r} (what it meant), or "
                "'gradient', LTG's form and the default now",
                DeprecationWarning,
                stacklevel=2,
            )
        super().__init__(backbone, num_classes, **kwargs)
        # TGFixMatch aligns the two networks' features at every stage (forward_stages)
        check_backbone(backbone, "backbone", "TGFixMatch", needs=("stage_features",))
        self.tg_backbone = tg_backbone if tg_backbone is not None else _reinit(copy.deepcopy(backbone))
        check_backbone(self.tg_backbone, "tg_backbone", "TGFixMatch", needs=("stage_features",))
        if list(self.tg_backbone.stage_dims) != list(backbone.stage_dims):
            raise ValueError(
                f"RGB and TG networks must have the same stages: {backbone.stage_dims} vs {self.tg_backbone.stage_dims}"
            )
        self.tg_head = ClassifierHead(self.tg_backbone.feature_dim, num_classes, self.hparams.dropout)
        self.pseudo_labeler = PseudoLabeler(threshold=threshold)
        # Projection heads only when the contrastive term is on: unused parameters stop DDP
        # (without find_unused_parameters) at its second step.
        self.contrastive = (
            PairedContrastive(
                backbone.feature_dim,
                self.tg_backbone.feature_dim,
                proj_dim=proj_dim,
                hidden_dim=proj_dim,
                num_layers=3,
                temperature=temperature,
                loss="info_nce",
                last_bn=True,
            )
            if contrastive_weight > 0
            else None
        )
        self.tg_offset = tg_offset
        self.lambda_u = lambda_u
        self.align_weight = align_weight
        self.contrastive_weight = contrastive_weight
        self.unsup_schedule = WeightSchedule(start=unsup_warmup_steps)
        if tg_strong_view not in ("gradient", "frames", "shared"):
            raise ValueError(f"tg_strong_view must be 'gradient', 'frames' or 'shared', got {tg_strong_view!r}")
        self.tg_strong_view = tg_strong_view

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        if self.contrastive is None:
            # Before heads were built only when used, contrastive_weight=0 runs saved unused
            # projection heads: drop them so those checkpoints keep loading strictly.
            state = checkpoint.get("state_dict", {})
            for k in [k for k in state if k.startswith("contrastive.")]:
                del state[k]

    # -- data -----------------------------------------------------------------------------
    def views(self) -> dict[str, dict[str, ViewSpec]]:
        nxt = self.tg_offset
        unlabeled = {
            "weak": ViewSpec("weak", next_offset=nxt),
            "strong": ViewSpec("strong", same_as="weak", next_offset=nxt),
        }
        if self.tg_strong_view != "shared":  # its own RandAugment draw, for the TG network only
            unlabeled["strong_tg"] = ViewSpec(
                "strong", same_as="weak", next_offset=nxt, gradient=self.tg_strong_view == "gradient"
            )
        return {"labeled": {"weak": ViewSpec("weak", next_offset=nxt)}, "unlabeled": unlabeled}

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        # Training views carry frames t and t + offset: split them into RGB and TG (uint8), then
        # the base normalises both. Evaluation views are plain RGB clips.
        if isinstance(batch, dict) and "labeled" in batch:
            for part in ("labeled", "unlabeled"):
                views = batch.get(part)
                if not views:
                    continue
                split = {}
                for name in ("weak", "strong"):
                    if name in views:
                        split[name] = split_rgb_tg(views.pop(name))
                if self.tg_strong_view == "frames" and "strong_tg" in views:
                    views["strong_tg"] = split_rgb_tg(views["strong_tg"])[1]
                # with "gradient" the worker already delivers the augmented gradient image
                for name, (rgb, tg) in split.items():
                    views[name] = rgb
                    views.setdefault(name + "_tg", tg)
        return super().on_after_batch_transfer(batch, dataloader_idx)

    def networks(self) -> dict[str, Network]:
        # LTG re-estimates the RGB network only (its PreciseBN hook wraps the RGB model); the TG
        # network keeps its running statistics. LTG feeds the val pipeline (a centre crop); we
        # use the weak training clips (a random crop and flip): our choice.
        return {
            "primary": Network(Classifier(self.backbone, self.head)),
            "tg": Network(Classifier(self.tg_backbone, self.tg_head), view="weak_tg", precise_bn=False),
        }

    # -- the iteration --------------------------------------------------------------------
    def _run(self, net: nn.Module, head: nn.Module, x: torch.Tensor):
        stages = net.forward_stages(x)
        pooled = stages[-1].mean(dim=(2, 3, 4))
        return stages, pooled, head(pooled)

    def train_step(self, labeled: LabeledViews, unlabeled: UnlabeledViews) -> StepOutput:
        y = labeled["label"]
        bl = y.shape[0]
        rgb_parts, tg_parts = [labeled["weak"]], [labeled["weak_tg"]]
        if unlabeled:
            bu = unlabeled["weak"].shape[0]
            rgb_parts += [unlabeled["weak"], unlabeled["strong"]]
            tg_parts += [unlabeled["weak_tg"], unlabeled["strong_tg"]]
        # 1. one forward per network over all clips (BatchNorm sees the whole iteration)
        rgb_stages, rgb_pooled, z_rgb = self._run(self.backbone, self.head, torch.cat(rgb_parts))
        tg_stages, tg_pooled, z_tg = self._run(self.tg_backbone, self.tg_head, torch.cat(tg_parts))

        # 2. supervised, both modalities
        losses = {
            "supervised": 0.5 * self.supervised_loss(z_rgb[:bl], y)
            + 0.5 * self.supervised_loss(z_tg[:bl], y),
        }
        n_align = bl  # clips used by alignment and contrast: labelled (+ weak unlabelled)
        out = StepOutput(losses, z_rgb[:bl])
        if unlabeled:
            n_align = bl + bu
            weak, strong = slice(bl, bl + bu), slice(bl + bu, bl + 2 * bu)
            # 3. pseudo-labels from the averaged logits of the weak clips
            pl = out.pseudo_labels = self.pseudo_labeler(((z_rgb[weak] + z_tg[weak]) / 2).detach(), self.global_step)
            # 4. both strong clips learn them, after the warm-up
            weight = self.lambda_u * self.unsup_schedule(self.global_step, self.total_steps())
            losses["unsupervised"] = weight * 0.5 * (
                self.pseudo_labeler.loss(z_rgb[strong], pl) + self.pseudo_labeler.loss(z_tg[strong], pl)
            )
        # 5. multi-level feature alignment (TG detached)
        if self.align_weight:
            losses["align"] = self.align_weight * feature_alignment_loss(
                [f[:n_align] for f in rgb_stages], [f[:n_align] for f in tg_stages]
            )
        # 6. cross-modal contrastive
        if self.contrastive is not None:
            losses["contrastive"] = self.contrastive_weight * self.contrastive(
                rgb_pooled[:n_align], tg_pooled[:n_align]
            )
            out.logs["contrastive_negatives"] = float(self.contrastive.last_num_negatives)
        return out
