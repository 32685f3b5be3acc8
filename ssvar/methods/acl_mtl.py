"""ACL + MTL: learning discriminative spatio-temporal representations (Wang, Zhou, Xia, Wang;
arXiv 2404.16416; docs/methods/acl_mtl.md).

An EMA teacher labels the unlabelled clips (FixMatch-style), plus two modules:
Adaptive Contrastive Learning (ACL: class prototypes from labelled data, a momentum memory bank
of pseudo-labelled teacher embeddings, GMM reliabilities that select and weight positives and
negatives) and Multi-scale Temporal Learning (MTL: long clips at several temporal scales, a
cross-scale temporal calibration, an alignment of the short clip with the calibrated long-term
representation). Only the paper's abstract and figure captions could be read: the steps below
follow them, and every detail they do not give is our assumption (``docs/methods/acl_mtl.md``).

Per iteration:

1. teacher (EMA of backbone + head + projector; eval, no gradient) on the weak short clips:
   logits ``p_w``, embeddings ``e_w``; with MTL also on the long clips at scales ``s_1..s_K``
   (same crop, strides ``s_k`` times the short stride, same centre): per-time-step features;
2. student on ``[labelled weak, unlabelled strong]`` in one forward: pooled features ``h``,
   logits, embeddings ``z`` (projection head);
3. supervised cross-entropy on the labelled clips;
4. pseudo-labels ``y^ = argmax p_w``, confident where ``max p_w >= threshold``; cross-entropy of
   the strong clips against the confident ones, divided by the unlabelled batch;
5. ACL: prototypes <- momentum mean of the labelled embeddings per class (gathered over ranks);
   every ``refit_every`` steps the GMM is refitted on the bank's prototype similarities;
   anchor reliability ``r_i`` = GMM posterior of ``cos(e_w,i, c_{y^_i})``; adaptive contrastive
   loss of ``z_strong`` against the bank (positives: same pseudo-label, reliable, weighted by
   reliability; negatives: other pseudo-labels); then ``(e_w, y^, confidence)`` of the global
   batch are enqueued;
6. MTL: calibrated long-term representation ``g = Calib(h^T_w, long time steps)`` (attention of
   the teacher's short-clip feature over all long-clip time steps); ``L_cal`` = pseudo-label
   cross-entropy of ``head(g)`` (teaches the calibration which segments are informative);
   ``L_align = 1 - cos(h_strong, sg(g))`` (the short clip absorbs the long-term semantics);
7. ``L = L_sup + lambda_u L_u + w_acl L_acl + w_cal L_cal + w_align L_align`` (unlabelled terms
   off for ``unsup_warmup_steps``); SGD step; EMA update of the teacher.

``use_acl=False`` / ``use_mtl=False`` drop a module entirely (ablations); with both off this is
FixMatch with an EMA teacher and a joint labelled/strong forward. Inference uses backbone + head
on the short clip only.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from ssvar.components.contrastive import ProjectionHead
from ssvar.components.ema import EMATeacher
from ssvar.components.prototype_bank import GaussianMixture1D, PrototypeBank
from ssvar.components.pseudo_label import PseudoLabeler
from ssvar.components.schedules import WeightSchedule
from ssvar.components.temporal_calibration import CrossScaleCalibration, temporal_alignment_loss, time_features
from ssvar.data.dataset import ViewSpec
from ssvar.methods.base import SemiSupervisedModule
from ssvar.methods.step import LabeledViews, StepOutput, UnlabeledViews
from ssvar.models.backbones import check_backbone


class _Student(nn.Module):
    """Backbone + head (+ projector): what the EMA teacher copies. Not registered (it only
    references the method's modules)."""

    def __init__(self, backbone: nn.Module, head: nn.Module, projector: nn.Module | None):
        super().__init__()
        self.backbone, self.head = backbone, head
        self.projector = projector

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


class ACLMTL(SemiSupervisedModule):
    """Adaptive contrastive learning + multi-scale temporal learning on an EMA teacher.

    Args:
        backbone, num_classes: see :class:`SemiSupervisedModule`. MTL needs per-time-step
            features (3D-CNNs with ``forward_stages`` or TimeSformer).
        threshold: pseudo-label confidence threshold (0.95, FixMatch; the paper's is unknown).
        lambda_u: weight of the pseudo-label loss.
        pseudo_labeler: full control of the pseudo-labels; default ``PseudoLabeler(threshold)``.
        teacher: the EMA teacher (decay, schedule, BatchNorm policy); default
            ``EMATeacher(0.99)`` (the paper's decay is unknown; 0.99 as SVFormer's code).
        unsup_warmup_steps: iterations before all unlabelled terms start (a float in (0, 1) is a
            fraction of the total).
        use_acl, use_mtl: switch each module on or off (ablations).
        acl_weight: weight of the adaptive contrastive loss. [assumption: 1]
        proj_dim, proj_hidden_dim, proj_layers: projection head of the ACL embeddings
            (``Linear-BN-ReLU`` layers, no final BN). [assumption: 128, 512, 2]
        bank_size: memory-bank entries. [assumption: 4096]
        prototype_momentum: momentum of the prototypes. [assumption: 0.9]
        prototype_features: ``"student"``: prototypes from the student's labelled embeddings,
            detached (no extra forward); ``"teacher"``: from the teacher's (the bank's encoder;
            one more no-grad forward of the labelled batch). [assumption: student]
        similarity: GMM statistic, ``"cosine"`` to the pseudo-label's prototype or its
            ``"softmax"`` probability over prototypes (see :class:`PrototypeBank`).
        refit_every: GMM refit period in steps. [assumption: 10]
        min_fill: bank entries before the first GMM fit. [assumption: 64]
        gmm_iters: EM iterations per fit (warm-started). [assumption: 10]
        contrastive_temperature: temperature of the contrastive loss. [assumption: 0.1]
        reliability_threshold: bank entries with reliability below it are neither positives nor
            negatives. [assumption: 0.5]
        weight_negatives: weight negatives by reliability in the denominator. [assumption: yes]
        anchors_confident_only: also require the anchor's pseudo-label to be confident
            (threshold); otherwise anchors are weighted by their reliability only.
            [assumption: no]
        mtl_scales: long-clip stride multipliers (of the data module's stride). [assumption:
            (2, 4), i.e. 2x and 4x the short clip's span]
        long_num_frames: frames per long clip (default: the short clip's).
        calibration_weight: weight of the calibration's pseudo-label loss. [assumption: 1]
        align_weight: weight of the short/long alignment. [assumption: 1]
        align_kind: ``"cosine"`` (``1 - cos``) or ``"mse"`` of normalised features.
        align_confident_only: align only samples with a confident pseudo-label (where the
            calibrated representation is trained). [assumption: yes]
        calibration_heads: attention heads of the calibration. [assumption: 1]
        max_time_steps: longest per-clip time axis the calibration accepts.
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
        use_acl: bool = True,
        use_mtl: bool = True,
        # ACL
        acl_weight: float = 1.0,
        proj_dim: int = 128,
        proj_hidden_dim: int = 512,
        proj_layers: int = 2,
        bank_size: int = 4096,
        prototype_momentum: float = 0.9,
        prototype_features: Literal["student", "teacher"] = "student",
        similarity: Literal["cosine", "softmax"] = "cosine",
        refit_every: int = 10,
        min_fill: int = 64,
        gmm_iters: int = 10,
        contrastive_temperature: float = 0.1,
        reliability_threshold: float = 0.5,
        weight_negatives: bool = True,
        anchors_confident_only: bool = False,
        # MTL
        mtl_scales: tuple[int, ...] = (2, 4),
        long_num_frames: int | None = None,
        calibration_weight: float = 1.0,
        align_weight: float = 1.0,
        align_kind: Literal["cosine", "mse"] = "cosine",
        align_confident_only: bool = True,
        calibration_heads: int = 1,
        max_time_steps: int = 16,
        **kwargs,
    ):
        super().__init__(backbone, num_classes, **kwargs)
        if prototype_features not in ("student", "teacher"):
            raise ValueError(f"prototype_features must be 'student' or 'teacher', got {prototype_features!r}")
        if use_mtl:
            if not mtl_scales or any(int(s) < 1 for s in mtl_scales):
                raise ValueError(f"mtl_scales must be a non-empty list of stride multipliers >= 1, got {mtl_scales}")
            check_backbone(backbone, "backbone", "ACLMTL with use_mtl", needs=("time_features",))
            if long_num_frames is not None and long_num_frames < 1:
                raise ValueError(f"long_num_frames must be >= 1, got {long_num_frames}")
        for name, v in (
            ("acl_weight", acl_weight),
            ("calibration_weight", calibration_weight),
            ("align_weight", align_weight),
        ):
            if v < 0:
                raise ValueError(f"{name} must be >= 0, got {v}")
        self.pseudo_labeler = pseudo_labeler or PseudoLabeler(threshold=threshold)
        self.lambda_u = lambda_u
        self.unsup_schedule = WeightSchedule(start=unsup_warmup_steps)
        self.use_acl, self.use_mtl = use_acl, use_mtl
        d = backbone.feature_dim

        self.projector: nn.Module | None = None
        self.bank: PrototypeBank | None = None
        if use_acl:
            self.projector = ProjectionHead(d, proj_hidden_dim, proj_dim, proj_layers, last_bn=False)
            self.bank = PrototypeBank(
                num_classes, proj_dim, size=bank_size, prototype_momentum=prototype_momentum,
                similarity=similarity, refit_every=refit_every, min_fill=min_fill,
                gmm=GaussianMixture1D(iters=gmm_iters),
            )
        self.acl_weight = acl_weight
        self.prototype_features = prototype_features
        self.contrastive_temperature = contrastive_temperature
        self.reliability_threshold = reliability_threshold
        self.weight_negatives = weight_negatives
        self.anchors_confident_only = anchors_confident_only

        self.calibration: CrossScaleCalibration | None = None
        self.mtl_scales = tuple(int(s) for s in mtl_scales)
        if use_mtl:
            self.calibration = CrossScaleCalibration(
                d, len(self.mtl_scales), max_time_steps, num_heads=calibration_heads
            )
        self.long_num_frames = long_num_frames
        self.calibration_weight = calibration_weight
        self.align_weight = align_weight
        self.align_kind = align_kind
        self.align_confident_only = align_confident_only
        if align_kind not in ("cosine", "mse"):
            raise ValueError(f"align_kind must be 'cosine' or 'mse', got {align_kind!r}")

        self.teacher = (teacher if teacher is not None else EMATeacher(0.99)).attach(self._student())

    # -- networks -------------------------------------------------------------------------
    def _student(self) -> _Student:
        return _Student(self.backbone, self.head, self.projector)

    def teachers(self) -> list[tuple[EMATeacher, nn.Module]]:
        return super().teachers() + [(self.teacher, self._student())]

    def views(self) -> dict[str, dict[str, ViewSpec]]:
        unlabeled = {"weak": ViewSpec("weak"), "strong": ViewSpec("strong", same_as="weak")}
        if self.use_mtl:
            # Long clips around the short clip's centre, with its crop: [S, C, T, H, W] per sample.
            # The short clip's position is drawn over the whole video; the long clips are fitted
            # around it (slid inside the video, then a smaller stride when longer than it).
            unlabeled["long"] = ViewSpec(
                "weak", num_frames=self.long_num_frames, scales=self.mtl_scales, same_as="weak", fit_to_centre=True
            )
        return {"labeled": {"weak": ViewSpec("weak")}, "unlabeled": unlabeled}

    @torch.no_grad()
    def _teacher_pass(self, labeled_weak: torch.Tensor, weak: torch.Tensor, long: torch.Tensor | None) -> dict:
        """Teacher outputs: logits and embeddings of the weak clips, pooled short features and
        long-clip time steps ``[B, S, T', D]`` (MTL), labelled embeddings (teacher prototypes)."""
        t = self.teacher.model
        t.eval()
        bu = weak.shape[0]
        parts = [weak]
        if self.bank is not None and self.prototype_features == "teacher":
            parts.insert(0, labeled_weak)
        bl = labeled_weak.shape[0] if len(parts) == 2 else 0
        out: dict[str, torch.Tensor] = {}
        short = torch.cat(parts) if len(parts) > 1 else weak
        if long is not None:
            s = long.shape[1]
            flat = long.flatten(0, 1)
            if flat.shape[2:] == short.shape[2:]:  # same clip shape: one forward for all
                pooled_all, steps = time_features(t.backbone, torch.cat([short, flat]))
                pooled, long_steps = pooled_all[: short.shape[0]], steps[short.shape[0] :]
            else:
                pooled = t.backbone(short)
                long_steps = time_features(t.backbone, flat)[1]
            out["long_steps"] = long_steps.reshape(bu, s, long_steps.shape[1], long_steps.shape[2])
        else:
            pooled = t.backbone(short)
        out["pooled_weak"] = pooled[bl:]
        out["logits_weak"] = t.head(pooled[bl:])
        if self.bank is not None:
            emb = t.projector(pooled)
            out["emb_weak"] = emb[bl:]
            if bl:
                out["emb_labeled"] = emb[:bl]
        return out

    # -- the iteration --------------------------------------------------------------------
    def train_step(self, labeled: LabeledViews, unlabeled: UnlabeledViews) -> StepOutput:
        y = labeled["label"]
        bl = y.shape[0]
        if not unlabeled:
            return super().train_step(labeled, unlabeled)
        step = self.global_step
        on = self.unsup_schedule(step, self.total_steps())

        # 1. teacher on the weak short clips (and the long clips)
        tout = self._teacher_pass(labeled["weak"], unlabeled["weak"], unlabeled.get("long") if self.use_mtl else None)
        # 2. student on labelled + strong clips, one forward
        feats = self.backbone(torch.cat([labeled["weak"], unlabeled["strong"]]))
        logits = self.head(feats)
        # 3. supervised
        losses = {"supervised": self.supervised_loss(logits[:bl], y)}
        # 4. FixMatch-style pseudo-labels from the teacher
        pl = self.pseudo_labeler(tout["logits_weak"], step)
        losses["unsupervised"] = on * self.lambda_u * self.pseudo_labeler.loss(logits[bl:], pl)
        out = StepOutput(losses, logits[:bl], pseudo_labels=pl)
        # 5. adaptive contrastive learning
        if self.bank is not None:
            z = self.projector(feats)
            proto_src = tout["emb_labeled"] if self.prototype_features == "teacher" else z[:bl].detach()
            bank = self.bank.step(
                proto_src, y, tout["emb_weak"], pl.hard, pl.confidence, anchors=z[bl:],
                anchor_mask=pl.mask if self.anchors_confident_only else None,
                temperature=self.contrastive_temperature, reliability_threshold=self.reliability_threshold,
                weight_negatives=self.weight_negatives,
            )
            acl, stats, rel = bank.loss, bank.stats, bank.reliability
            assert acl is not None  # anchors were given
            losses["acl"] = on * self.acl_weight * acl
            out.logs.update(
                acl_reliability=rel.mean(), acl_positives=stats["positives"],
                acl_anchors_with_positive=stats["anchors_with_positive"], bank_filled=float(self.bank.num_filled),
                gmm_mean_high=self.bank.gmm.mean[1].float(), gmm_mean_low=self.bank.gmm.mean[0].float(),
            )
        # 6. multi-scale temporal learning
        if self.calibration is not None:
            g = self.calibration(tout["pooled_weak"], tout["long_steps"])
            losses["mtl_calibration"] = on * self.calibration_weight * self.pseudo_labeler.loss(self.head(g), pl)
            w = pl.mask if self.align_confident_only else None
            losses["mtl_align"] = on * self.align_weight * temporal_alignment_loss(feats[bl:], g, self.align_kind, w)
            if self.calibration.last_attention is not None:
                out.logs["mtl_attention_max"] = self.calibration.last_attention.max(dim=-1).values.mean()
        return out
