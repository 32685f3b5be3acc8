"""ActNetFormer: cross-architecture pseudo-labelling and contrastive learning (Dass et al., ICPR 2024,
arXiv 2404.06243; methods.md section 5).

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

from ssvar.components.co_training import CrossPseudoLabeler, co_training_param_groups, forward_parts
from ssvar.components.contrastive import PairedContrastive
from ssvar.components.pseudo_label import PseudoLabeler
from ssvar.data.dataset import ViewSpec
from ssvar.methods.base import SemiSupervisedModule


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
        pseudo_labeler: PseudoLabeler | None = None,
        unsup_warmup_steps: float = 0,
        momentum: float = 0.9,
        nesterov: bool = False,
        weight_decay: float = 1e-3,
        **kwargs,
    ):
        super().__init__(backbone, num_classes, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay, **kwargs)
        if aux_backbone is None:
            from ssvar.models import TimeSformer

            aux_backbone = TimeSformer("vit_s")
        if not hasattr(aux_backbone, "feature_dim"):
            raise TypeError(f"aux_backbone {type(aux_backbone).__name__} has no feature_dim attribute; use an ssvar.models backbone")
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
        drop = self.hparams.dropout if aux_dropout is None else aux_dropout
        self.aux_head = nn.Sequential(nn.Dropout(drop), nn.Linear(aux_backbone.feature_dim, num_classes))
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
        self.unsup_warmup_steps = unsup_warmup_steps

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

    def aux_forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the auxiliary model (training and diagnostics only)."""
        return self.aux_head(self.aux_backbone(x))

    @torch.no_grad()
    def precise_bn_forward(self, batch: dict) -> None:
        for part in ("labeled", "unlabeled"):
            views = batch.get(part) or {}
            if "weak" in views:
                self(views["weak"])
                self.aux_forward(views["weak_aux"])

    # -- the iteration --------------------------------------------------------------------
    def compute_losses(self, labeled: dict, unlabeled: dict):
        y = labeled["label"]
        if not unlabeled:  # no unlabelled loader: both models learn the labels only
            z_l, a_l = self(labeled["weak"]), self.aux_forward(labeled["weak_aux"])
            return {"supervised": self.supervised_loss(z_l, y) + self.supervised_loss(a_l, y)}, z_l
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
            _, (a_l, a_s) = forward_parts(self.aux_backbone, self.aux_head, [labeled["weak_aux"], unlabeled["strong_aux"]])
            with torch.no_grad():
                z_w, a_w = self(unlabeled["weak"]), self.aux_forward(unlabeled["weak_aux"])
        # 2. supervised, both models
        ls_z, ls_a = self.supervised_loss(z_l, y), self.supervised_loss(a_l, y)
        # 3. cross pseudo-labels (targets detached inside)
        cross = self.cross_pl(z_w, a_w, z_s, a_s, self.global_step)
        self.monitor_pseudo_labels(cross.from_b)  # A's labels, which the deployed model Z learns
        self.monitor_pseudo_labels(cross.from_a, tag="from_primary")
        on = 1.0 if self.global_step >= self.unsup_warmup_iterations() else 0.0
        losses = {"supervised": ls_z + ls_a, "unsupervised": on * self.gamma * (cross.loss_a + cross.loss_b)}
        # 4. cross-architecture contrastive on the weak clips
        if self.contrastive is not None:
            fz, fa = (torch.cat([f_zl, f_zw]), torch.cat([f_al, f_aw])) if self.contrastive_on_labeled else (f_zw, f_aw)
            losses["contrastive"] = self.beta * self.contrastive(fz, fa)
        self._log_terms(
            y.shape[0], loss_supervised_primary=ls_z, loss_supervised_aux=ls_a, loss_unsupervised_primary=cross.loss_a,
            loss_unsupervised_aux=cross.loss_b, acc1_labeled_aux=(a_l.argmax(1) == y).float().mean(),
        )
        return losses, z_l

    def _log_terms(self, bs: int, **terms: torch.Tensor) -> None:
        if self._trainer is None:  # called outside a fit (tests)
            return
        for k, v in terms.items():
            self.log(f"train/{k}", v, batch_size=bs)
        groups = self.trainer.optimizers[0].param_groups if self.trainer.optimizers else []
        aux = [g["lr"] for g in groups if g.get("name") == "auxiliary"]
        if aux:
            self.log("train/lr_aux", aux[0], batch_size=bs)

    # -- optimisation: one optimiser, a parameter group per model ----------------------------
    def parameter_groups(self) -> list[dict]:
        primary, auxiliary = [self.backbone, self.head], [self.aux_backbone, self.aux_head]
        if self.contrastive is not None:  # each projection head trains with its model
            primary.append(self.contrastive.head_a)
            auxiliary.append(self.contrastive.head_b)
        lr = self.hparams.lr
        return co_training_param_groups(
            self,
            {"primary": primary, "auxiliary": auxiliary},
            {"primary": lr, "auxiliary": self.aux_lr if self.aux_lr is not None else lr},
            self.hparams.weight_decay,
        )
