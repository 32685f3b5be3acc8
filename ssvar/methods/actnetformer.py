"""ActNetFormer: cross-architecture pseudo-labelling and contrastive learning (Dass et al., ICPR 2024,
arXiv 2404.06243;
docs/methods/actnetformer.md).

A 3D-CNN primary model Z (3D-ResNet-50) and a video-transformer auxiliary model A (TimeSformer
ViT-S) label each other's unlabelled clips. Z sees clips at the data module's frame rate, A the
same moment of the video at a higher frame rate (stride / ``aux_stride_divisor``), both decoded
in one pass around one centre and cropped alike. Per iteration:

1. one forward of Z over ``[labelled, weak, strong]`` clips and one of A over the same videos at
   its frame rate (without the contrastive term, the weak clips go through without gradient);
2. supervised cross-entropy of both models on the labelled clips: ``L_s^Z + L_s^A``;
3. cross pseudo-labels: A's confident (``max q^A >= threshold``) prediction on the weak clip is the
   target of Z's strong clip (``L_u^Z``) and Z's is the target of A's (``L_u^A``); targets carry no
   gradient; each loss is divided by the whole unlabelled batch;
4. cross-architecture contrastive ``L_ca`` on the weak unlabelled clips: NT-Xent between the
   projected Z and A embeddings, positives = the two models' embeddings of the same video,
   negatives = the other videos from both models, gathered across DDP ranks;
5. ``L = (L_s^Z + L_s^A) + gamma (L_u^Z + L_u^A) + beta L_ca``; one SGD step updates both models
   (one optimiser, a parameter group per model).

Only Z is used for validation, testing and prediction: a trained model costs what a plain
3D-ResNet-50 costs, and the checkpoint's ``backbone.*`` / ``head.*`` weights alone reproduce it.
"""

from __future__ import annotations

import torch
from torch import nn

from ssvar.components.co_training import CrossPseudoLabeler, forward_parts
from ssvar.components.contrastive import PairedContrastive
from ssvar.components.pseudo_label import PseudoLabeler
from ssvar.components.schedules import WeightSchedule
from ssvar.components.weights import load_weights
from ssvar.data.dataset import ViewSpec
from ssvar.methods.base import SemiSupervisedModule
from ssvar.methods.step import LabeledViews, Network, StepOutput, UnlabeledViews
from ssvar.models.backbones import check_backbone
from ssvar.models.heads import Classifier, ClassifierHead


class ActNetFormer(SemiSupervisedModule):
    """Cross-architecture pseudo-labelling (+ contrastive learning) of a primary and an auxiliary model.

    Args:
        backbone: the primary model Z (paper: 3D-ResNet-50, ``ssvar.models.SlowOnlyR50``); used
            alone at inference.
        num_classes: number of classes.
        aux_backbone: the auxiliary model A (paper: TimeSformer ViT-S, 384-d, 6 heads, 12 layers,
            divided space-time attention); default ``TimeSformer("vit_s")``.
        threshold: confidence threshold tau of both models' pseudo-labels (paper: 0.8). Ignored
            when ``pseudo_labeler`` is given.
        gamma: weight of the cross pseudo-label losses ``L_u^Z + L_u^A`` (paper: 2).
        beta: weight of the contrastive loss ``L_ca`` (paper: 2).
        contrastive: switch the contrastive term on/off (the paper's two result rows; off builds
            no projection heads).
        temperature: NT-Xent temperature (not given by the paper; our choice 0.1, SimCLR/TCL-style).
        proj_dim, proj_hidden_dim, proj_layers: projection heads of both models to the shared
            embedding (not given by the paper; our choice: 2-layer MLP 512 -> 128, SimCLR-style).
        contrastive_on_labeled: also contrast the labelled clips (paper: unlabelled weak clips only).
        aux_lr: peak learning rate of A's parameter group (``None``: ``lr``). The paper gives one
            optimiser and no per-model rates.
        aux_stride_divisor: A's frame stride is the data module's stride divided by this (paper:
            "the primary model operates at a lower frame rate, the auxiliary model at a higher
            one", factor not given; our choice 2, e.g. 8x8 clips for Z, 8x4 for A).
        aux_num_frames: A's clip length (``None``: the data module's ``num_frames``).
        aux_dropout: dropout before A's linear head (``None``: ``dropout``).
        init_aux_backbone_from: a checkpoint of A's backbone architecture (e.g. a ClipContrastive
            pretraining run of it) to start A from; ``init_backbone_from`` starts only Z. From a
            start for Z alone, A's pseudo-labels come from random weights (benchmarks/RESULTS.md).
        pseudo_labeler: full control of the pseudo-labels (both directions).
        unsup_warmup_steps: iterations before ``L_u`` starts (paper: none); a float in (0, 1) is
            a fraction of the total.
        momentum, nesterov, weight_decay: SGD settings (paper: momentum 0.9, weight decay 1e-3;
            Nesterov not mentioned, so off).
        **kwargs: :class:`SemiSupervisedModule` arguments (``lr`` is not given by the paper).

    The labelled : unlabelled batch ratio (paper: 1 : 5) is the data module's ``mu``.
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        aux_backbone: nn.Module | None = None,
        threshold: float = 0.8,
        gamma: float = 2.0,
        beta: float = 2.0,
        contrastive: bool = True,
        temperature: float = 0.1,
        proj_dim: int = 128,
        proj_hidden_dim: int = 512,
        proj_layers: int = 2,
        contrastive_on_labeled: bool = False,
        aux_lr: float | None = None,
        aux_stride_divisor: int = 2,
        aux_num_frames: int | None = None,
        aux_dropout: float | None = None,
        init_aux_backbone_from: str | None = None,
        pseudo_labeler: PseudoLabeler | None = None,
        unsup_warmup_steps: float = 0,
        momentum: float = 0.9,
        nesterov: bool = False,
        weight_decay: float = 1e-3,
        **kwargs,
    ):
        super().__init__(
            backbone, num_classes, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay, **kwargs
        )
        if aux_backbone is None:
            from ssvar.models import TimeSformer

            aux_backbone = TimeSformer("vit_s")
        check_backbone(aux_backbone, "aux_backbone", "ActNetFormer")
        for name, value in (("gamma", gamma), ("beta", beta)):
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        if aux_stride_divisor < 1:
            raise ValueError(f"aux_stride_divisor must be >= 1, got {aux_stride_divisor}")
        if aux_num_frames is not None and aux_num_frames < 1:
            raise ValueError(f"aux_num_frames must be >= 1, got {aux_num_frames}")
        if aux_lr is not None and aux_lr <= 0:
            raise ValueError(f"aux_lr must be > 0, got {aux_lr}")
        self.aux_backbone = aux_backbone
        self.init_aux_backbone_from = init_aux_backbone_from
        drop = self.hparams.dropout if aux_dropout is None else aux_dropout
        self.aux_head = ClassifierHead(aux_backbone.feature_dim, num_classes, drop)
        self.cross_pl = CrossPseudoLabeler(threshold, pseudo_labeler)
        # Off: no heads at all, so DDP finds no unused parameters.
        self.contrastive = (
            PairedContrastive(
                backbone.feature_dim, aux_backbone.feature_dim, proj_dim=proj_dim, hidden_dim=proj_hidden_dim,
                num_layers=proj_layers, temperature=temperature, loss="nt_xent",
            )
            if contrastive and beta > 0
            else None
        )
        self.gamma, self.beta = gamma, beta
        self.contrastive_on_labeled = contrastive_on_labeled
        self.aux_lr = aux_lr
        self.aux_stride_divisor, self.aux_num_frames = aux_stride_divisor, aux_num_frames
        self.unsup_schedule = WeightSchedule(start=unsup_warmup_steps)

    def load_initial_weights(self) -> None:
        super().load_initial_weights()  # the primary model, from init_backbone_from
        if self.init_aux_backbone_from:
            load_weights(self.aux_backbone, self.init_aux_backbone_from, "backbone.")

    # -- data: two frame rates from one decode ---------------------------------------------
    def views(self) -> dict[str, dict[str, ViewSpec]]:
        # A's clips: same centre and crop as Z's (same_as), higher frame rate; decoded in the same pass.
        fast = dict(stride_divisor=self.aux_stride_divisor, num_frames=self.aux_num_frames)
        return {
            "labeled": {"weak": ViewSpec("weak"), "weak_aux": ViewSpec("weak", same_as="weak", **fast)},
            "unlabeled": {
                "weak": ViewSpec("weak"),
                "strong": ViewSpec("strong", same_as="weak"),
                "weak_aux": ViewSpec("weak", same_as="weak", **fast),
                "strong_aux": ViewSpec("strong", same_as="weak", **fast),
            },
        }

    def networks(self) -> dict[str, Network]:
        # Z is deployed; A reads the higher-frame-rate clips. Each trains with its projection
        # head, in its own parameter groups.
        lr = self.aux_lr if self.aux_lr is not None else self.hparams.lr
        proj_z, proj_a = (
            ((self.contrastive.head_a,), (self.contrastive.head_b,)) if self.contrastive is not None else ((), ())
        )
        return {
            "primary": Network(Classifier(self.backbone, self.head), lr=self.hparams.lr, trains_with=proj_z),
            "auxiliary": Network(
                Classifier(self.aux_backbone, self.aux_head), view="weak_aux", lr=lr, trains_with=proj_a
            ),
        }

    # -- the iteration --------------------------------------------------------------------
    def train_step(self, labeled: LabeledViews, unlabeled: UnlabeledViews) -> StepOutput:
        y = labeled["label"]
        aux = self.networks()["auxiliary"].model
        if not unlabeled:  # no unlabelled loader: both models learn the labels only
            z_l, a_l = self(labeled["weak"]), aux(labeled["weak_aux"])
            return StepOutput({"supervised": self.supervised_loss(z_l, y) + self.supervised_loss(a_l, y)}, z_l)
        # 1. one forward per model over all its clips (BatchNorm sees the whole iteration); without
        #    the contrastive term the weak clips only give targets: no gradient, as in FixMatch
        if self.contrastive is not None:
            (f_zl, f_zw, _), (z_l, z_w, z_s) = forward_parts(
                self.backbone, self.head, [labeled["weak"], unlabeled["weak"], unlabeled["strong"]]
            )
            (f_al, f_aw, _), (a_l, a_w, a_s) = forward_parts(
                self.aux_backbone, self.aux_head, [labeled["weak_aux"], unlabeled["weak_aux"], unlabeled["strong_aux"]]
            )
        else:
            _, (z_l, z_s) = forward_parts(self.backbone, self.head, [labeled["weak"], unlabeled["strong"]])
            _, (a_l, a_s) = forward_parts(
                self.aux_backbone, self.aux_head, [labeled["weak_aux"], unlabeled["strong_aux"]]
            )
            with torch.no_grad():
                z_w, a_w = self(unlabeled["weak"]), aux(unlabeled["weak_aux"])
        # 2. supervised, both models
        ls_z, ls_a = self.supervised_loss(z_l, y), self.supervised_loss(a_l, y)
        # 3. cross pseudo-labels (targets detached inside)
        cross = self.cross_pl(z_w, a_w, z_s, a_s, self.global_step)
        weight = self.gamma * self.unsup_schedule(self.global_step, self.total_steps())
        losses = {"supervised": ls_z + ls_a, "unsupervised": weight * (cross.loss_a + cross.loss_b)}
        # 4. cross-architecture contrastive on the weak clips
        if self.contrastive is not None:
            fz, fa = (torch.cat([f_zl, f_zw]), torch.cat([f_al, f_aw])) if self.contrastive_on_labeled else (f_zw, f_aw)
            losses["contrastive"] = self.beta * self.contrastive(fz, fa)
        logs = {
            "loss_supervised_primary": ls_z, "loss_supervised_aux": ls_a, "loss_unsupervised_primary": cross.loss_a,
            "loss_unsupervised_aux": cross.loss_b, "acc1_labeled_aux": (a_l.argmax(1) == y).float().mean(),
        }
        # A's labels are what the deployed model Z learns
        return StepOutput(
            losses, z_l, pseudo_labels=cross.from_b, extra_pseudo_labels={"from_primary": cross.from_a}, logs=logs
        )
