"""TimeBalance, stage 3: distillation from a temporally-invariant and a temporally-distinctive
teacher (Dave, Rizve, Chen, Shah, CVPR 2023; docs/methods/timebalance.md).

Stages 1 and 2 make the teachers: :class:`~ssvar.methods.TimeBalancePretrain` with the
instance-contrastive loss only (invariant) or the temporal contrastive losses only
(distinctive), each fine-tuned on the labelled set with :class:`~ssvar.methods.Supervised`
(``init_backbone_from=<stage-1 checkpoint>``). The student starts from the stage-1 run with all
three losses (TCLR), via ``init_backbone_from``.

Before training, :class:`~ssvar.components.TemporalSimilarityReweighter` embeds ``num_clips``
clips of every labelled and unlabelled video with both teachers and caches each video's
temporal-similarity score ``s`` (in the checkpoint); an unreadable video gets the pool's mean
score, counted and logged as ``data/unscored_videos``. Per iteration:

1. the labelled and the unlabelled batch: one augmented clip per video, the **same** clip for
   the student and the teachers (no weak/strong split);
2. both teachers (frozen, eval mode, no gradient) give class probabilities ``P_inv``, ``P_dist``;
3. the target ``P_T = s * P_inv + (1 - s) * P_dist`` with each video's cached ``s``;
4. ``L = CE(S(x_l), y) + w_l * D(S(x_l), P_T(x_l)) + w_u * D(S(x_u), P_T(x_u))`` with ``D`` the
   mean squared error between the student's softmax and ``P_T`` (official default, ``w_l = 50``,
   ``w_u = 100``) or ``KL(P_T || softmax S)``.

No EMA: the teachers never change. Testing uses the student alone.
"""

from __future__ import annotations

import copy
from typing import Literal

import torch
from torch import nn
from torch.utils.data import DataLoader

from ssvar.components.distillation import distillation_loss
from ssvar.components.pseudo_label import PseudoLabels
from ssvar.components.temporal_similarity import TemporalSimilarityReweighter
from ssvar.components.weights import FrozenTeacher, load_weights
from ssvar.data.datamodule import SemiSupervisedDataModule
from ssvar.data.dataset import ViewSpec
from ssvar.methods.base import SemiSupervisedModule
from ssvar.methods.step import LabeledViews, StepOutput, UnlabeledViews
from ssvar.models.heads import Classifier, ClassifierHead


class TimeBalance(SemiSupervisedModule):
    """Student distilled from two frozen teachers, combined per video by temporal similarity.

    Args:
        backbone: the student's backbone (initialise it with ``init_backbone_from``).
        num_classes: number of classes.
        invariant_teacher: stage-2 checkpoint (``backbone.*`` and ``head.*`` keys, e.g.
            :class:`~ssvar.methods.Supervised`) of the temporally-invariant teacher; loaded
            strictly when fitting starts.
        distinctive_teacher: the same for the temporally-distinctive teacher.
        teacher_backbone: the teachers' architecture (default: a copy of ``backbone``'s).
        teacher_dropout: dropout of the teachers' heads (inactive in eval mode; it only makes
            the key layout match the stage-2 head).
        reweighter: the :class:`TemporalSimilarityReweighter` (default: 8 clips, off-diagonal
            mean, min-max normalisation; all our choice, see its docstring).
        score_batch_size: videos per batch when the scores are computed (``num_clips`` clips each).
        labeled_distill_weight: weight of ``D`` on labelled clips (official: 50).
        unlabeled_distill_weight: weight of ``D`` on unlabelled clips (official: 100).
        distill_loss: ``"mse"`` (official default ``l2``) or ``"kl"`` (official ``kld``).
        **kwargs: :class:`SemiSupervisedModule` arguments.
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        invariant_teacher: str | None = None,
        distinctive_teacher: str | None = None,
        teacher_backbone: nn.Module | None = None,
        teacher_dropout: float = 0.5,
        reweighter: TemporalSimilarityReweighter | None = None,
        score_batch_size: int = 8,
        labeled_distill_weight: float = 50.0,
        unlabeled_distill_weight: float = 100.0,
        distill_loss: Literal["mse", "kl"] = "mse",
        **kwargs,
    ):
        super().__init__(backbone, num_classes, **kwargs)
        if distill_loss not in ("mse", "kl"):
            raise ValueError(f"distill_loss must be 'mse' or 'kl', got {distill_loss!r}")
        if labeled_distill_weight < 0 or unlabeled_distill_weight < 0:
            raise ValueError("labeled_distill_weight and unlabeled_distill_weight must be >= 0")
        if score_batch_size < 1:
            raise ValueError(f"score_batch_size must be >= 1, got {score_batch_size}")
        arch = teacher_backbone if teacher_backbone is not None else backbone

        def teacher() -> FrozenTeacher:
            net = copy.deepcopy(arch)
            return FrozenTeacher(Classifier(net, ClassifierHead(net.feature_dim, num_classes, teacher_dropout)))

        self.teacher_inv = teacher()
        self.teacher_dist = teacher()
        self.reweighter = reweighter if reweighter is not None else TemporalSimilarityReweighter()
        if set(self.reweighter.sets) != {"labeled", "unlabeled"}:
            raise ValueError(f"the reweighter must score the sets ('labeled', 'unlabeled'), got {self.reweighter.sets}")
        self.invariant_teacher = invariant_teacher
        self.distinctive_teacher = distinctive_teacher
        self.score_batch_size = score_batch_size
        self.labeled_distill_weight = labeled_distill_weight
        self.unlabeled_distill_weight = unlabeled_distill_weight
        self.distill_loss = distill_loss

    # -- data -----------------------------------------------------------------------------
    def views(self) -> dict[str, dict[str, ViewSpec]]:
        return {"labeled": {"weak": ViewSpec("weak")}, "unlabeled": {"weak": ViewSpec("weak")}}

    # -- stage hand-off: teachers and the score cache -------------------------------------
    def load_initial_weights(self) -> None:
        super().load_initial_weights()  # the student, from init_backbone_from
        for name, path, t in (("invariant_teacher", self.invariant_teacher, self.teacher_inv),
                              ("distinctive_teacher", self.distinctive_teacher, self.teacher_dist)):
            if not path:
                raise ValueError(f"{name} is not set: give the stage-2 checkpoint of that teacher")
            load_weights(t.model.backbone, path, "backbone.")
            load_weights(t.model.head, path, "head.")

    def on_fit_start(self) -> None:
        super().on_fit_start()  # the teachers' weights, unless a checkpoint was restored
        if not self.reweighter.ready:  # a resumed checkpoint carries the scores
            self.compute_scores()

    @torch.no_grad()
    def compute_scores(self) -> dict[str, torch.Tensor]:
        """Score every labelled and unlabelled video of the data module (each rank its shard)."""
        from ssvar.data.datamodule import EvalDistributedSampler

        dm = self.trainer.datamodule
        if not isinstance(dm, SemiSupervisedDataModule):
            raise RuntimeError(
                "TimeBalance computes its temporal-similarity scores from an ssvar data module; fit with datamodule=..."
            )
        world, rank = self.trainer.world_size, self.trainer.global_rank
        view = {"video": ViewSpec("test", clips=self.reweighter.num_clips, crops=1)}
        loaders = {}
        for name, index in (("labeled", dm.splits.labeled), ("unlabeled", dm.splits.unlabeled)):
            ds = dm.dataset(index, view, train=False)
            sampler = EvalDistributedSampler(ds, world, rank)
            loaders[name] = (
                DataLoader(ds, batch_size=self.score_batch_size, sampler=sampler, num_workers=dm.num_workers),
                len(ds),
            )

        def prepare(x: torch.Tensor) -> torch.Tensor:
            return self.on_after_batch_transfer(x.to(self.device), 0)

        def features(t: FrozenTeacher):
            return lambda x: t.model.backbone(x)

        return self.reweighter.compute([features(self.teacher_inv), features(self.teacher_dist)], loaders, prepare)

    # -- the iteration --------------------------------------------------------------------
    def train_step(self, labeled: LabeledViews, unlabeled: UnlabeledViews) -> StepOutput:
        y = labeled["label"]
        bl = y.shape[0]
        x = torch.cat([labeled["weak"], unlabeled["weak"]]) if unlabeled else labeled["weak"]
        # 1-2. the same clips through the student and both frozen teachers
        logits = self(x)
        p_inv, p_dist = self.teacher_inv(x).float().softmax(1), self.teacher_dist(x).float().softmax(1)
        # 3. per-video convex combination
        s = self.reweighter("labeled", labeled["index"])
        if unlabeled:
            s = torch.cat([s, self.reweighter("unlabeled", unlabeled["index"])])
        target = s[:, None] * p_inv + (1 - s[:, None]) * p_dist
        # 4. CE on labelled, distillation on both
        losses = {
            "supervised": self.supervised_loss(logits[:bl], y),
            "distill_labeled": self.labeled_distill_weight
            * distillation_loss(logits[:bl], target[:bl], self.distill_loss),
        }
        out = StepOutput(losses, logits[:bl])
        if unlabeled:
            losses["distill_unlabeled"] = self.unlabeled_distill_weight * distillation_loss(
                logits[bl:], target[bl:], self.distill_loss
            )
            # Monitoring only: how good the combined teacher target is on unlabelled clips.
            out.pseudo_labels = PseudoLabels.from_probs(target[bl:])
        out.logs.update({
            "score_s_mean": s.mean(),
            # videos that could not be scored (unreadable) and got the pool's mean score
            "data/unscored_videos": float(sum(self.reweighter.unscored.values())),
            "teacher_agreement": (p_inv.argmax(1) == p_dist.argmax(1)).float().mean(),
        })
        return out
