"""CMPL: cross-model pseudo-labelling (Xu et al., CVPR 2022, arXiv 2112.09690;
docs/methods/cmpl.md).

A primary model F (3D-ResNet-50) and a small, low-capacity auxiliary 3D-CNN A are trained together;
each one's confident prediction on the weak view of an unlabelled clip is the pseudo-label of the
*other* one's strong view (cross-model FixMatch). Both models see the same clips. Per iteration:

1. one forward of F and one of A over ``[labelled, strong]`` clips, and one without gradient over
   the weak clips (they only give targets);
2. supervised cross-entropy of both models: ``L_s^F + L_s^A``;
3. ``L_u^F``: CE of F's strong logits against A's confident weak-view pseudo-labels, and ``L_u^A``
   symmetrically (targets carry no gradient; divided by the whole unlabelled batch);
4. ``L = (L_s^F + L_s^A) + lambda_u (L_u^F + L_u^A)``; one optimiser, a parameter group per model.

Only F is used for validation, testing and prediction.

Which auxiliary: the sources disagree (docs/methods/cmpl.md). SeFAR's table and CMPL's project page
("a tiny model using a lower channel capacity") read it as a 3D-ResNet-50 with 1/4 of the channels
("R50-1/4"); ActNetFormer's table lists "3D-ResNet50 + 3D-ResNet18". ssvar defaults to the
former, ``SlowOnlyR50(width_multiplier=0.25)`` (~2.0M parameters, 512-d features); pass
``aux_backbone: ssvar.models.R3D18`` for the other reading.
"""

from __future__ import annotations

import torch
from torch import nn

from ssvar.components.co_training import CrossPseudoLabeler, forward_parts
from ssvar.components.pseudo_label import PseudoLabeler
from ssvar.components.schedules import WeightSchedule
from ssvar.components.weights import load_weights
from ssvar.data.dataset import ViewSpec
from ssvar.methods.base import SemiSupervisedModule
from ssvar.methods.step import LabeledViews, Network, StepOutput, UnlabeledViews
from ssvar.models.backbones import check_backbone
from ssvar.models.heads import Classifier, ClassifierHead


class CMPL(SemiSupervisedModule):
    """Cross-model pseudo-labelling of a primary and a small auxiliary 3D-CNN.

    CMPL's own hyperparameters could not be read (docs/methods/cmpl.md); the defaults are those of
    ActNetFormer, which follows CMPL's protocol (assumption): threshold 0.8, ``lambda_u`` 2,
    labelled : unlabelled 1 : 5 (the data module's ``mu``), SGD momentum 0.9, weight decay 1e-3.

    Args:
        backbone: the primary model F (3D-ResNet-50: ``ssvar.models.SlowOnlyR50``).
        num_classes: number of classes.
        aux_backbone: the auxiliary model A; default ``SlowOnlyR50(width_multiplier=0.25)``
            (the "R50-1/4" reading, see the module docstring).
        threshold: confidence threshold of both models' pseudo-labels. Ignored when
            ``pseudo_labeler`` is given.
        lambda_u: weight of ``L_u^F + L_u^A``.
        aux_lr: peak learning rate of A's parameter group (``None``: ``lr``).
        aux_dropout: dropout before A's linear head (``None``: ``dropout``).
        init_aux_backbone_from: a checkpoint of A's backbone architecture (e.g. a ClipContrastive
            pretraining run of it) to start A from; ``init_backbone_from`` starts only F. From a
            start for F alone, A's pseudo-labels come from random weights (benchmarks/RESULTS.md).
        pseudo_labeler: full control of the pseudo-labels (both directions).
        unsup_warmup_steps: iterations before ``L_u`` starts; a float in (0, 1) is a fraction of
            the total.
        momentum, nesterov, weight_decay: SGD settings.
        **kwargs: :class:`SemiSupervisedModule` arguments.
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        aux_backbone: nn.Module | None = None,
        threshold: float = 0.8,
        lambda_u: float = 2.0,
        aux_lr: float | None = None,
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
            from ssvar.models import SlowOnlyR50

            aux_backbone = SlowOnlyR50(width_multiplier=0.25)
        check_backbone(aux_backbone, "aux_backbone", "CMPL")
        if lambda_u < 0:
            raise ValueError(f"lambda_u must be >= 0, got {lambda_u}")
        if aux_lr is not None and aux_lr <= 0:
            raise ValueError(f"aux_lr must be > 0, got {aux_lr}")
        self.aux_backbone = aux_backbone
        self.init_aux_backbone_from = init_aux_backbone_from
        drop = self.hparams.dropout if aux_dropout is None else aux_dropout
        self.aux_head = ClassifierHead(aux_backbone.feature_dim, num_classes, drop)
        self.cross_pl = CrossPseudoLabeler(threshold, pseudo_labeler)
        self.lambda_u = lambda_u
        self.aux_lr = aux_lr
        self.unsup_schedule = WeightSchedule(start=unsup_warmup_steps)

    def load_initial_weights(self) -> None:
        super().load_initial_weights()  # the primary model, from init_backbone_from
        if self.init_aux_backbone_from:
            load_weights(self.aux_backbone, self.init_aux_backbone_from, "backbone.")

    def views(self) -> dict[str, dict[str, ViewSpec]]:
        return {
            "labeled": {"weak": ViewSpec("weak")},
            "unlabeled": {"weak": ViewSpec("weak"), "strong": ViewSpec("strong", same_as="weak")},
        }

    def networks(self) -> dict[str, Network]:
        # F is deployed; A has its own parameter groups (and learning rate).
        lr = self.aux_lr if self.aux_lr is not None else self.hparams.lr
        return {
            "primary": Network(Classifier(self.backbone, self.head), lr=self.hparams.lr),
            "auxiliary": Network(Classifier(self.aux_backbone, self.aux_head), lr=lr),
        }

    def train_step(self, labeled: LabeledViews, unlabeled: UnlabeledViews) -> StepOutput:
        y = labeled["label"]
        aux = self.networks()["auxiliary"].model
        parts = [labeled["weak"]] + ([unlabeled["strong"]] if unlabeled else [])
        # 1. one forward per model over the clips that get gradients; the weak clips only give
        #    targets, so they go through both models without gradient (as in FixMatch)
        _, zf = forward_parts(self.backbone, self.head, parts)
        _, za = forward_parts(self.aux_backbone, self.aux_head, parts)
        # 2. supervised, both models
        ls_f, ls_a = self.supervised_loss(zf[0], y), self.supervised_loss(za[0], y)
        out = StepOutput(
            {"supervised": ls_f + ls_a}, zf[0],
            logs={"loss_supervised_aux": ls_a, "acc1_labeled_aux": (za[0].argmax(1) == y).float().mean()},
        )
        if unlabeled:
            with torch.no_grad():
                wf, wa = self(unlabeled["weak"]), aux(unlabeled["weak"])
            # 3. each model labels the other's strong clip
            cross = self.cross_pl(wf, wa, zf[1], za[1], self.global_step)
            # 4. L = L_s + lambda_u (L_u^F + L_u^A)
            weight = self.lambda_u * self.unsup_schedule(self.global_step, self.total_steps())
            out.losses["unsupervised"] = weight * (cross.loss_a + cross.loss_b)
            out.pseudo_labels = cross.from_b  # A's labels, which the deployed model F learns
            out.extra_pseudo_labels["from_primary"] = cross.from_a
        return out
