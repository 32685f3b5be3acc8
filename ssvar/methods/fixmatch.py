"""FixMatch for video (Sohn et al., NeurIPS 2020; the video form of LTG's code,
docs/methods/fixmatch.md).

Per iteration:

1. supervised cross-entropy on weakly augmented labelled clips (the base class);
2. pseudo-labels from the weak view of each unlabelled clip: the model itself (no gradient), or
   an EMA teacher (``teacher=EMATeacher(...)``: "FixMatch-EMA");
3. cross-entropy of the strong view (RandAugment on the same frames and crop) against the
   confident pseudo-labels, summed over the batch and divided by the whole unlabelled batch;
4. ``L = L_s + lambda_u * L_u``, with ``L_u`` switched off for the first ``unsup_warmup_steps``.

With ``joint_forward=True`` the labelled clips and the strong views go through the student in
one batch, as in the reference FixMatch code (BatchNorm sees one mixed batch). The default is
two passes: the joint form scored lower in our short CPU runs (benchmarks/RESULTS.md).
"""

from __future__ import annotations

import torch
from torch import nn

from ssvar.components.ema import EMATeacher
from ssvar.components.pseudo_label import PseudoLabeler, PseudoLabels
from ssvar.components.schedules import WeightSchedule
from ssvar.data.dataset import ViewSpec
from ssvar.methods.base import SemiSupervisedModule
from ssvar.methods.step import LabeledViews, StepOutput, UnlabeledViews


class FixMatch(SemiSupervisedModule):
    """FixMatch on video clips.

    Args:
        backbone, num_classes: see :class:`SemiSupervisedModule`.
        threshold: confidence threshold τ (0.95 as in FixMatch; LTG's K400 baselines use 0.3).
            Ignored when ``pseudo_labeler`` is given.
        lambda_u: weight of the unlabelled loss (1 in FixMatch and LTG).
        pseudo_labeler: full control of the pseudo-labels (scheduled threshold, soft targets,
            normalisation); default ``PseudoLabeler(threshold)``.
        teacher: an :class:`EMATeacher` to produce the pseudo-labels; ``None``: the model itself.
        unsup_warmup_steps: iterations before the unlabelled loss is switched on (LTG's
            ``warmup_epoch``); a float in (0, 1) is a fraction of the total iterations.
        joint_forward: labelled clips and strong views in one student pass (reference FixMatch
            code) rather than two passes with separate BatchNorm batch statistics.
        **kwargs: :class:`SemiSupervisedModule` arguments (optimiser, schedule, ...).
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        threshold: float = 0.95,
        lambda_u: float = 1.0,
        pseudo_labeler: PseudoLabeler | None = None,
        teacher: EMATeacher | None = None,
        unsup_warmup_steps: float = 0,
        joint_forward: bool = False,
        **kwargs,
    ):
        super().__init__(backbone, num_classes, **kwargs)
        self.pseudo_labeler = pseudo_labeler or PseudoLabeler(threshold=threshold)
        self.teacher = teacher.attach(self.classifier()) if teacher is not None else None
        self.lambda_u = lambda_u
        self.unsup_schedule = WeightSchedule(start=unsup_warmup_steps)
        self.joint_forward = joint_forward

    def views(self) -> dict[str, dict[str, ViewSpec]]:
        return {
            "labeled": {"weak": ViewSpec("weak")},
            "unlabeled": {"weak": ViewSpec("weak"), "strong": ViewSpec("strong", same_as="weak")},
        }

    def teachers(self) -> list[tuple[EMATeacher, nn.Module]]:
        return super().teachers() + ([(self.teacher, self.classifier())] if self.teacher is not None else [])

    def train_step(self, labeled: LabeledViews, unlabeled: UnlabeledViews) -> StepOutput:
        if not unlabeled:
            return super().train_step(labeled, unlabeled)
        if self.joint_forward:  # 2., then 1. and 3. in one student pass
            pl = self.pseudo_labels(unlabeled["weak"])
            logits, logits_strong = self.forward_joint(labeled["weak"], unlabeled["strong"])
        else:  # 1., 2., 3.: the student's two passes around the pseudo-labels
            logits = self(labeled["weak"])
            pl = self.pseudo_labels(unlabeled["weak"])
            logits_strong = self(unlabeled["strong"])
        # 4. L = L_s + lambda_u * L_u, with L_u off during the warm-up
        weight = self.lambda_u * self.unsup_schedule(self.global_step, self.total_steps())
        losses = {
            "supervised": self.supervised_loss(logits, labeled["label"]),
            "unsupervised": weight * self.pseudo_labeler.loss(logits_strong, pl),
        }
        return StepOutput(losses, logits, pseudo_labels=pl)

    def pseudo_labels(self, weak: torch.Tensor) -> PseudoLabels:
        """Step 2: targets from the weak view (teacher or the model itself), never with gradients."""
        with torch.no_grad():
            logits_weak = self.teacher(weak) if self.teacher is not None else self(weak)
        return self.pseudo_labeler(logits_weak, self.global_step)
