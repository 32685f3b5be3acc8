"""Mean Teacher (Tarvainen & Valpola, NeurIPS 2017) for video clips (docs/methods/mean_teacher.md).

Per iteration:

1. supervised cross-entropy on weakly augmented labelled clips (the base class);
2. the EMA teacher predicts class probabilities on the weak view of each unlabelled clip;
3. the student predicts on the strong view (same frames and crop, RandAugment on top);
4. consistency loss: squared error between the two probability vectors (summed over classes,
   averaged over the batch), weighted by ``consistency_weight`` times a sigmoid ramp-up
   ``exp(-5 (1 - t)^2)`` over ``rampup_steps``;
5. after the optimiser step the teacher becomes ``d * teacher + (1 - d) * student``.

With ``joint_forward=True`` the labelled clips and the strong views go through the student in
one batch (BatchNorm sees one mixed batch, as in FixMatch's reference code); default: two passes.
"""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from torch import nn

from ssvar.components.ema import EMATeacher
from ssvar.components.pseudo_label import PseudoLabeler
from ssvar.components.schedules import WeightSchedule
from ssvar.data.dataset import ViewSpec
from ssvar.methods.base import SemiSupervisedModule
from ssvar.methods.step import LabeledViews, StepOutput, UnlabeledViews


class MeanTeacher(SemiSupervisedModule):
    """Student trained to agree with its EMA teacher on unlabelled clips.

    Args:
        backbone, num_classes: see :class:`SemiSupervisedModule`.
        teacher: the EMA teacher; default ``EMATeacher(decay=0.99, schedule="rampup")`` (the
            paper's warm-up of the decay; 0.99 as SVFormer's EMA — our choice for short runs).
        consistency_weight: maximum weight of the consistency loss.
        rampup_steps: sigmoid ramp-up length in iterations (a float in (0, 1) is a fraction of
            the total; the paper ramps up over the first part of training).
        consistency: ``"mse"`` on probabilities (the paper) or ``"kl"`` (teacher || student).
            The MSE is summed over classes: K times the reference code's term (which also
            averages over classes) at the same weight; use ``consistency_weight = w / K`` for
            a reference weight ``w``.
        monitor_threshold: confidence level at which the teacher's predictions count as
            confident in the pseudo-label quality logs (no effect on the loss).
        joint_forward: labelled clips and strong views in one student pass rather than two.
        **kwargs: :class:`SemiSupervisedModule` arguments.
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        teacher: EMATeacher | None = None,
        consistency_weight: float = 10.0,
        rampup_steps: float = 0.3,
        consistency: Literal["mse", "kl"] = "mse",
        monitor_threshold: float = 0.95,
        joint_forward: bool = False,
        **kwargs,
    ):
        super().__init__(backbone, num_classes, **kwargs)
        if consistency not in ("mse", "kl"):
            raise ValueError(f"consistency must be 'mse' or 'kl', got {consistency!r}")
        self.teacher = (teacher or EMATeacher(decay=0.99, schedule="rampup")).attach(self.classifier())
        self.consistency_weight = consistency_weight
        self.rampup = WeightSchedule(rampup=rampup_steps, shape="sigmoid")
        self.consistency = consistency
        self._monitor = PseudoLabeler(threshold=monitor_threshold)
        self.joint_forward = joint_forward

    def views(self) -> dict[str, dict[str, ViewSpec]]:
        return {
            "labeled": {"weak": ViewSpec("weak")},
            "unlabeled": {"weak": ViewSpec("weak"), "strong": ViewSpec("strong", same_as="weak")},
        }

    def teachers(self) -> list[tuple[EMATeacher, nn.Module]]:
        return super().teachers() + [(self.teacher, self.classifier())]

    def train_step(self, labeled: LabeledViews, unlabeled: UnlabeledViews) -> StepOutput:
        if not unlabeled:
            return super().train_step(labeled, unlabeled)
        if self.joint_forward:  # 2., then 1. and 3. in one student pass
            teacher_logits = self.teacher(unlabeled["weak"])
            logits, student_logits = self.forward_joint(labeled["weak"], unlabeled["strong"])
        else:
            logits = self(labeled["weak"])
            teacher_logits = self.teacher(unlabeled["weak"])
            student_logits = self(unlabeled["strong"])
        # 4. the ramped-up consistency between student (strong) and teacher (weak)
        target = teacher_logits.softmax(dim=1)
        if self.consistency == "mse":
            consistency = (student_logits.softmax(dim=1) - target).pow(2).sum(dim=1).mean()
        else:
            consistency = F.kl_div(student_logits.log_softmax(dim=1), target, reduction="batchmean")
        weight = self.consistency_weight * self.rampup(self.global_step, self.total_steps())
        return StepOutput(
            {"supervised": self.supervised_loss(logits, labeled["label"]), "consistency": weight * consistency},
            logits,
            pseudo_labels=self._monitor(teacher_logits),  # monitoring only: no effect on the loss
            logs={"consistency_weight": weight},
        )
