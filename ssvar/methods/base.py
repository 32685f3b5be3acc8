"""The bases every ssvar method builds on.

* :class:`VideoModule`: what every ssvar LightningModule shares: the backbone, normalisation on
  the device, counting undecodable videos, the optimiser (SGD/AdamW, warm-up + cosine in
  iterations), initial weights from a previous stage (``init_backbone_from``), EMA teachers
  declared by :meth:`~VideoModule.teachers`, and resumable checkpoints.
* :class:`SemiSupervisedModule`: a classifier: a head, the supervised loss, the per-iteration
  contract (:meth:`~SemiSupervisedModule.train_step` returns a :class:`~ssvar.methods.step.StepOutput`),
  pseudo-label monitoring against the hidden labels, single-view validation, multi-view testing
  with honest metric names, and prediction.
* :class:`SelfSupervisedPretraining`: no classifier: one method to write,
  :meth:`~SelfSupervisedPretraining.pretext_losses`.

A semi-supervised method declares what it needs from each sample (:meth:`views`), writes one
iteration (:meth:`train_step`), and, if it has them, declares its EMA teachers (:meth:`teachers`)
and its classifiers (:meth:`networks`). ``docs/adding_a_method.md`` walks through one.
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import Any, Literal, cast

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from ssvar.components.calibration import CalibrationBins, reliability
from ssvar.components.co_training import co_training_param_groups
from ssvar.components.ema import EMATeacher
from ssvar.components.pseudo_label import PseudoLabels
from ssvar.components.weights import load_weights
from ssvar.data.datamodule import SemiSupervisedDataModule
from ssvar.data.dataset import ViewSpec
from ssvar.data.transforms import IMAGENET_MEAN, IMAGENET_STD, normalize_video
from ssvar.methods.step import LabeledViews, Network, StepOutput, TrainBatch, UnlabeledViews
from ssvar.models.backbones import check_backbone
from ssvar.models.heads import Classifier, ClassifierHead

__all__ = ["Classifier", "SelfSupervisedPretraining", "SemiSupervisedModule", "VideoModule", "warmup_cosine"]

log = logging.getLogger(__name__)

# Normalising in the module (not the data module) is deliberate: the module owns mean/std.
# Counting skipped videos on the host (on_before_batch_transfer) is deliberate too.
warnings.filterwarnings("ignore", message=".*overridden `on_(before|after)_batch_transfer` in `LightningModule`.*")
# A deprecation inside Lightning's own pytree helper (torch >= 2.10): nothing for the user to do.
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*", category=FutureWarning)
# EMA teachers and frozen teachers are in eval mode on purpose.
warnings.filterwarnings("ignore", message=".*module\\(s\\) in eval mode at the start of training.*")


class VideoModule(L.LightningModule):
    """What every ssvar LightningModule shares (classifiers and self-supervised pretraining).

    Args:
        backbone: a video backbone (``ssvar.models``) with a ``feature_dim`` attribute.
        num_classes: number of classes; the CLI links it from the data module.
        lr: peak learning rate.
        optimizer: ``"sgd"`` or ``"adamw"``.
        momentum, nesterov: SGD settings.
        weight_decay: L2 / decoupled weight decay.
        decay_norm_and_bias: also apply weight decay to norm weights and biases (MMAction2 and
            so LTG do; default off: our choice, the common practice for BatchNorm networks).
        warmup_steps: linear warm-up length in iterations (a float in (0, 1) is a fraction of
            the total).
        warmup_start_ratio: the warm-up starts at this fraction of ``lr`` (MMCV's linear
            ``warmup_ratio``; LTG: 0.1) and rises linearly to ``lr``; 0 starts from (almost) 0.
        min_lr_ratio: final learning rate of the cosine decay, as a fraction of ``lr``.
        mean, std: normalisation applied on the device.
        init_backbone_from: a checkpoint file (a previous stage's Lightning checkpoint, or any
            state dict) whose ``init_backbone_prefix`` tensors initialise the backbone when
            fitting starts (a resumed checkpoint then overrides them). Loading is strict: any
            missing, unexpected or mis-shaped key is an error naming the file.
        init_backbone_prefix: key prefix of the backbone in that file (``"backbone."`` for every
            ssvar method, pretraining included).
        stop_on_nonfinite_loss: stop training with a ``FloatingPointError`` naming the step and
            the non-finite loss terms when the training loss is NaN or infinite. Checked at the
            logging steps only (``log_every_n_steps``), where the value is read for the logs
            anyway, and decided jointly by all DDP ranks. ``False``: train on (the run's weights
            are then NaN and its accuracy is chance).
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        lr: float = 0.05,
        optimizer: Literal["sgd", "adamw"] = "sgd",
        momentum: float = 0.9,
        nesterov: bool = True,
        weight_decay: float = 5e-4,
        warmup_steps: float = 0.05,
        min_lr_ratio: float = 0.0,
        warmup_start_ratio: float = 0.0,
        decay_norm_and_bias: bool = False,
        mean: tuple[float, float, float] = IMAGENET_MEAN,
        std: tuple[float, float, float] = IMAGENET_STD,
        init_backbone_from: str | None = None,
        init_backbone_prefix: str = "backbone.",
        stop_on_nonfinite_loss: bool = True,
    ):
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        check_backbone(backbone, "backbone", type(self).__name__)
        if optimizer not in ("sgd", "adamw"):
            raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {optimizer!r}")
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
        if not 0 <= warmup_start_ratio <= 1:
            raise ValueError(f"warmup_start_ratio must be in [0, 1], got {warmup_start_ratio}")
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*is an instance of `nn.Module`.*")
            # Under LightningCLI the backbone is a plain {class_path, init_args} config: keep it,
            # so a checkpoint rebuilds its model alone (`ssvar predict`, `load_from_checkpoint`).
            # A backbone given as a module is not stored (the state dict has its weights).
            self.save_hyperparameters(ignore=[] if _backbone_config_given() else ["backbone"])
        # Modules (backbone, teacher, parts) live in the state dict, not in the hyperparameters.
        for k in [k for k, v in self.hparams.items() if isinstance(v, nn.Module)]:
            del self.hparams[k]
        self.backbone = backbone
        self.num_classes = num_classes
        self.class_names: list[str] = [str(i) for i in range(num_classes)]
        # How the data module cut clips (frames, stride, crop, views), saved in checkpoints so
        # `ssvar predict` decodes new videos the same way; empty until a data module is attached.
        self.clip_settings: dict[str, int] = {}
        self.decode_failures = 0
        # Initial weights (init_backbone_from) are read when the first fit starts, unless a
        # checkpoint was restored: it already holds every weight.
        self._initial_weights_loaded = False
        self._initial_weights_pending = False

    # -- what a method declares -------------------------------------------------------------
    def views(self) -> dict[str, dict[str, ViewSpec]]:
        """Views of labelled and unlabelled training samples. An empty ``"unlabeled"`` dict
        means the method needs no unlabelled loader."""
        return {"labeled": {"weak": ViewSpec("weak")}, "unlabeled": {}}

    def teachers(self) -> list[tuple[EMATeacher, nn.Module]]:
        """The EMA teachers and the student each follows, ``[(teacher, student), ...]``: the
        base moves them after every optimiser step. Default: none; a method with teachers
        returns ``super().teachers() + [...]``."""
        return []

    def precise_bn_forward(self, batch: TrainBatch) -> None:
        """What :class:`~ssvar.callbacks.PreciseBN` forwards (in training mode, no gradient) to
        re-estimate the BatchNorm statistics of a training batch."""
        raise NotImplementedError(f"{type(self).__name__} does not say what Precise-BN forwards")

    # -- EMA teachers ---------------------------------------------------------------------
    def update_teachers(self) -> None:
        """After a real optimiser step: move every EMA teacher (:meth:`teachers`). Idempotent for
        one ``global_step`` (it may be called twice)."""
        for teacher, student in self.teachers():
            teacher.update(student, self.trainer.global_step, self.total_steps())

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        # Idempotent per optimiser step: ResumeCheckpoints calls it before a mid-epoch save (the
        # callbacks' `on_train_batch_end` runs before this one), so the checkpoint holds the moved
        # teachers and this call is then a no-op.
        self.update_teachers()

    def total_steps(self) -> int:
        """The run's optimiser steps (1 without a trainer or with an unknown length)."""
        try:
            return max(1, int(self.trainer.estimated_stepping_batches))
        except Exception:  # no trainer attached or unknown length
            return 1

    # -- batches --------------------------------------------------------------------------
    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        # Count skipped videos while the batch is still on the host: no device sync per step.
        parts = [batch.get("labeled"), batch.get("unlabeled"), batch] if isinstance(batch, dict) else []
        for p in parts:
            if isinstance(p, dict) and isinstance(p.get("decode_failures"), torch.Tensor):
                self.decode_failures += int(p["decode_failures"].sum())
        return batch

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        # Workers ship uint8; convert and normalise here, on the device.
        return _normalize_tree(batch, self.hparams.mean, self.hparams.std)

    def _log_train(self, loss: torch.Tensor, losses: dict[str, torch.Tensor], bs: int) -> None:
        """The logs every training step writes: each term, the total, the learning rate(s),
        decode failures and the EMA decay."""
        self._check_finite(loss, losses)
        for k, v in losses.items():
            self.log(f"train/loss_{k}", v, batch_size=bs)
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        groups = self.trainer.optimizers[0].param_groups if self.trainer.optimizers else []
        self.log("train/lr", groups[0]["lr"] if groups else 0.0, batch_size=bs)
        for g in groups[1:]:  # networks with their own groups: train/lr_<network>
            name = g.get("name", "")
            if name and not name.endswith("_no_decay") and name != groups[0].get("name"):
                self.log(f"train/lr_{name}", g["lr"], batch_size=bs)
        self.log("data/decode_failures", float(self.decode_failures), batch_size=bs, reduce_fx="max")
        teachers = self.teachers()
        if teachers:
            self.log("train/ema_decay", teachers[0][0].last_decay, batch_size=bs)

    def _check_finite(self, loss: torch.Tensor, losses: dict[str, torch.Tensor]) -> None:
        """Stop a diverged run (``stop_on_nonfinite_loss``) instead of training NaN weights for
        hours and reporting chance accuracy. Only at logging steps: no extra sync per step."""
        if not self.hparams.get("stop_on_nonfinite_loss", True):
            return
        every = max(1, int(getattr(self.trainer, "log_every_n_steps", 1) or 1))
        if self.global_step % every:
            return
        finite = bool(torch.isfinite(loss.detach()).all())
        # Every rank reaches this step: decide together, so no rank waits on one that stopped.
        if self.trainer.strategy.reduce_boolean_decision(finite, all=True):
            return
        bad = [k for k, v in losses.items() if not bool(torch.isfinite(v.detach()).all())]
        raise FloatingPointError(
            f"{type(self).__name__}: non-finite training loss at step {self.global_step} "
            f"(loss {loss.detach().float().mean().item()}; non-finite terms on this rank: {bad or 'none'}). "
            "Lower the learning rate or a loss weight, or set stop_on_nonfinite_loss: false to train on."
        )

    # -- weights from a previous stage ------------------------------------------------------
    def load_initial_weights(self) -> None:
        """Load the weights other runs produced (``init_backbone_from``). Called when the first
        fit of this module starts (``on_fit_start``), unless a checkpoint was restored: a resumed
        run, or a model loaded from a checkpoint, already holds every weight and never needs those
        files again. Methods with more networks (frozen teachers) extend it."""
        if self.hparams.get("init_backbone_from"):
            load_weights(self.backbone, self.hparams.init_backbone_from, self.hparams.init_backbone_prefix)

    def on_fit_start(self) -> None:
        # After any checkpoint restore (which happens between `setup` and here).
        if self._initial_weights_pending:
            self.load_initial_weights()
            self._initial_weights_loaded = True
            self._initial_weights_pending = False

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path, *args, **kwargs):
        """Lightning's ``load_from_checkpoint``, without reading the backbone's initial weights
        file (``checkpoint:``) again: the trained checkpoint holds every weight."""
        from ssvar.models.backbones import restoring_trained_weights

        with restoring_trained_weights():
            return super().load_from_checkpoint(checkpoint_path, *args, **kwargs)

    def configure_callbacks(self) -> list[L.Callback]:
        """A resumable ``last.ckpt`` (epoch ends, every 500 steps, on SIGINT/SIGTERM) written
        atomically, and the global RNG states in every checkpoint, unless the trainer already has
        a :class:`~ssvar.checkpointing.ResumeCheckpoints` / :class:`~ssvar.checkpointing.GlobalRNGState`
        (configure it there to change the interval)."""
        from ssvar.checkpointing import GlobalRNGState, ResumeCheckpoints

        return self._missing_callbacks([ResumeCheckpoints(), GlobalRNGState()])

    def _missing_callbacks(self, wanted: list[L.Callback]) -> list[L.Callback]:
        have = self.trainer.callbacks if self._trainer is not None else []
        return [c for c in wanted if not any(isinstance(h, type(c)) for h in have)]

    # -- data module hand-over, checkpoints ---------------------------------------------------
    def setup(self, stage: str) -> None:
        if stage == "fit" and not self._initial_weights_loaded:
            self._initial_weights_pending = True  # loaded in on_fit_start unless a checkpoint is restored
        dm = self.trainer.datamodule if self._trainer is not None else None
        if isinstance(dm, SemiSupervisedDataModule):
            names = dm.classes
            if names and len(names) != self.num_classes:
                raise ValueError(
                    f"the data has {len(names)} classes but the model was built for num_classes={self.num_classes}"
                )
            if names:
                self.class_names = list(names)
            self.clip_settings = dm.clip_settings()

    def view_name(self, stage: str) -> str:
        """Metric suffix saying how many views were averaged: ``1view`` or ``{clips}x{crops}``
        (the data module's test views; from the checkpoint's clip settings without one)."""
        dm = self.trainer.datamodule if self._trainer is not None else None
        if isinstance(dm, SemiSupervisedDataModule):
            return dm.view_name(stage)
        if stage == "test" and self.clip_settings:
            return f"{self.clip_settings['test_clips']}x{self.clip_settings['test_crops']}"
        return "1view"

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["ssvar_class_names"] = list(self.class_names)
        checkpoint["ssvar_clip_settings"] = dict(self.clip_settings)
        checkpoint["ssvar_method_class"] = f"{type(self).__module__}.{type(self).__qualname__}"
        checkpoint["ssvar_decode_failures"] = self.decode_failures

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # The checkpoint holds every weight: the initial weights files are not read again.
        self._initial_weights_loaded, self._initial_weights_pending = True, False
        self.class_names = checkpoint.get("ssvar_class_names", self.class_names)
        self.clip_settings = checkpoint.get("ssvar_clip_settings", self.clip_settings)
        self.decode_failures = checkpoint.get("ssvar_decode_failures", 0)

    # -- optimisation ---------------------------------------------------------------------
    def parameter_groups(self) -> list[dict]:
        """The optimiser's parameter groups: weight decay on weights, none on norms and biases
        (``decay_norm_and_bias=True``: on everything, as MMAction2). A group's own ``lr`` is
        scaled by the schedule like the default one."""
        decay: list[nn.Parameter] = []
        no_decay: list[nn.Parameter] = []
        for _, p in self.named_parameters():
            if not p.requires_grad:
                continue
            (no_decay if p.ndim <= 1 and not self.hparams.get("decay_norm_and_bias", False) else decay).append(p)
        return [{"params": decay, "weight_decay": self.hparams.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]

    def configure_optimizers(self):
        hp = self.hparams
        groups = self.parameter_groups()
        if hp.optimizer == "sgd":
            opt = torch.optim.SGD(groups, lr=hp.lr, momentum=hp.momentum, nesterov=hp.nesterov and hp.momentum > 0)
        else:
            opt = torch.optim.AdamW(groups, lr=hp.lr)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warm = int(hp.warmup_steps * total) if hp.warmup_steps < 1 else int(hp.warmup_steps)
        start = hp.get("warmup_start_ratio", 0.0)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(warm, total, hp.min_lr_ratio, start))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


class SemiSupervisedModule(VideoModule):
    """Base of every ssvar classifier (the semi-supervised methods and Supervised).

    A method overrides :meth:`views` (what it needs from each sample) and :meth:`train_step`
    (one iteration, returning a :class:`~ssvar.methods.step.StepOutput`); methods with EMA
    teachers declare them in :meth:`teachers`, methods with several classifiers in
    :meth:`networks`. Everything else is inherited.

    Args:
        dropout: dropout before the linear head.
        label_smoothing: label smoothing of the supervised cross-entropy.
        test_average: average ``"prob"`` (softmax) or ``"logit"`` scores over test views.
        **kwargs: :class:`VideoModule` arguments (backbone, num_classes, optimiser, schedule,
            normalisation, ``init_backbone_from``).
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        dropout: float = 0.5,
        label_smoothing: float = 0.0,
        test_average: Literal["prob", "logit"] = "prob",
        **kwargs,
    ):
        if test_average not in ("prob", "logit"):
            raise ValueError(f"test_average must be 'prob' or 'logit', got {test_average!r}")
        super().__init__(backbone, num_classes, **kwargs)
        self.head = ClassifierHead(backbone.feature_dim, num_classes, dropout)
        # Confident pseudo-labels per class over the current epoch (monitoring only).
        self.register_buffer("pl_class_counts", torch.zeros(num_classes), persistent=False)
        # Pseudo-label accuracy by confidence bin over the current epoch (reliability diagram;
        # read by ssvar.callbacks.PseudoLabelReliability, summarised as train/pl_ece).
        self.pl_calibration = CalibrationBins(10)
        self._skipped_videos: dict[str, list[str]] = {}  # evaluation videos left out, per stage
        self.confusion_matrix: torch.Tensor | None = None
        self.test_figure_paths: list[str] = []
        self.val_metrics = self._metrics("val")
        self.test_metrics = self._metrics("test")
        self.test_confusion = MulticlassConfusionMatrix(num_classes)

    # -- what a method declares -------------------------------------------------------------
    def train_step(self, labeled: LabeledViews, unlabeled: UnlabeledViews) -> StepOutput:
        """One training iteration: the loss terms and what they were computed from.

        ``labeled`` holds the labelled views and ``label``; ``unlabeled`` the unlabelled views,
        never their labels (empty when the method loads no unlabelled data). Default: the
        supervised cross-entropy of the weak labelled view (Supervised)."""
        logits = self(labeled["weak"])
        return StepOutput({"supervised": self.supervised_loss(logits, labeled["label"])}, logits)

    def networks(self) -> dict[str, Network]:
        """The classifiers this method trains, by name; ``"primary"`` is the one used at test
        and prediction time. Default: the backbone and head. The base forwards each network's
        view for Precise-BN and, when a network sets its own ``lr``, gives each its own
        parameter groups."""
        return {"primary": Network(Classifier(self.backbone, self.head))}

    # -- shared pieces a method's step uses ---------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of a normalised clip batch ``[B, C, T, H, W]``."""
        return self.head(self.backbone(x))

    def supervised_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the labelled clips (with the configured label smoothing)."""
        return F.cross_entropy(logits, labels, label_smoothing=self.hparams.label_smoothing)

    def forward_joint(self, *clips: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """One forward pass of several clip batches concatenated, logits split back.

        BatchNorm then normalises labelled and unlabelled clips with the statistics of the one
        mixed batch and its running statistics see that mix, as in the reference FixMatch code
        (separate passes give each view its own batch statistics); one pass is also cheaper."""
        return self(torch.cat(clips)).split([c.shape[0] for c in clips])

    def classifier(self) -> Classifier:
        """The student as one module sharing this method's backbone and head (not registered)."""
        return Classifier(self.backbone, self.head)

    def inference_model(self) -> nn.Module:
        """The network used at test and prediction time (``networks()["primary"]``)."""
        return self.networks()["primary"].model

    @torch.no_grad()
    def precise_bn_forward(self, batch: TrainBatch) -> None:
        """Each network of :meth:`networks` (with ``precise_bn``) on its view of the labelled and
        unlabelled clips."""
        for net in self.networks().values():
            if not net.precise_bn:
                continue
            for part in ("labeled", "unlabeled"):
                views = batch.get(part) or {}
                if net.view in views:
                    net.model(views[net.view])

    # -- training -------------------------------------------------------------------------
    def training_step(self, batch: TrainBatch, batch_idx: int) -> torch.Tensor:
        labeled, unlabeled = batch["labeled"], batch.get("unlabeled") or {}
        y = labeled["label"]
        # The method sees the unlabelled batch without its true labels.
        out = self.train_step(labeled, _without_hidden(unlabeled) if unlabeled else {})
        loss = cast(torch.Tensor, sum(out.losses.values()))
        bs = y.shape[0]
        self._log_train(loss, out.losses, bs)
        self.log("train/acc1_labeled", (out.logits.argmax(1) == y).float().mean(), batch_size=bs)
        hidden = unlabeled.get("hidden_label")
        if out.pseudo_labels is not None:
            self._log_pseudo_label_quality(out.pseudo_labels, hidden)
        for tag, pl in out.extra_pseudo_labels.items():
            self._log_pseudo_label_quality(pl, hidden, tag)
        for name, value in out.logs.items():
            self.log(name if "/" in name else f"train/{name}", value, batch_size=bs)
        return loss

    @torch.no_grad()
    def _log_pseudo_label_quality(self, pl: PseudoLabels, hidden: torch.Tensor | None, tag: str = "") -> None:
        bs = pl.mask.shape[0]
        pre = f"train/pl_{tag}_" if tag else "train/pl_"
        self.log(pre + "mask_rate", pl.mask.mean(), batch_size=bs, prog_bar=not tag)
        self.log(pre + "threshold", float(pl.threshold), batch_size=bs)
        self.log(pre + "confidence", pl.confidence.mean(), batch_size=bs)
        hard = pl.hard
        if not tag:
            # Weighted bincount: no boolean indexing, so no device-to-host sync in the hot path.
            self.pl_class_counts += torch.bincount(hard, weights=pl.mask, minlength=self.num_classes)
        if hidden is None:
            return
        # Hidden labels may be unknown (-1) for truly unlabelled data. The counts below cost one
        # small device-to-host sync per step, for logging only.
        known = hidden >= 0
        n_known = int(known.sum())
        if not tag:
            self.pl_calibration.update(pl.confidence, hard == hidden, known)
        if n_known:
            correct = (hard == hidden).float()
            self.log(pre + "acc", correct[known].mean(), batch_size=n_known)
            ck = known & (pl.mask > 0)
            n_ck = int(ck.sum())
            if n_ck:
                self.log(pre + "acc_confident", correct[ck].mean(), batch_size=n_ck)

    def on_train_epoch_start(self) -> None:
        # Reset at the start, not the end, so callbacks can read the finished epoch at its end.
        self.pl_calibration.reset()

    def on_train_epoch_end(self) -> None:
        sums = self.trainer.strategy.reduce(self.pl_calibration.sums.clone(), reduce_op="sum")
        if sums[0].sum() > 0:
            self.log("train/pl_ece", reliability(sums)["ece"].float())
        counts = self.pl_class_counts
        if counts.sum() > 0:
            if self.num_classes <= 20:
                for i, c in enumerate(counts.tolist()):
                    self.log(f"pl_count/{self.class_names[i]}", c, sync_dist=True, reduce_fx="sum")
            share = counts.float() / counts.sum()
            self.log("train/pl_class_share_max", share.max(), sync_dist=True)
            self.log("train/pl_classes_covered", (counts > 0).float().sum(), sync_dist=True, reduce_fx="max")
        counts.zero_()

    # -- optimisation ---------------------------------------------------------------------
    def parameter_groups(self) -> list[dict]:
        """Default groups (:meth:`VideoModule.parameter_groups`), or, when a network of
        :meth:`networks` sets its own ``lr``, two groups per network (``<name>`` and
        ``<name>_no_decay``) with that network's learning rate."""
        nets = self.networks()
        if all(n.lr is None for n in nets.values()):
            return super().parameter_groups()
        lr = self.hparams.lr
        return co_training_param_groups(
            self,
            {name: [n.model, *n.trains_with] for name, n in nets.items()},
            {name: n.lr if n.lr is not None else lr for name, n in nets.items()},
            self.hparams.weight_decay,
        )

    def configure_callbacks(self) -> list[L.Callback]:
        """:meth:`VideoModule.configure_callbacks` and the test figures
        (:class:`~ssvar.callbacks.TestFigures`)."""
        from ssvar.callbacks import TestFigures

        return super().configure_callbacks() + self._missing_callbacks([TestFigures()])

    # -- evaluation -----------------------------------------------------------------------
    def _metrics(self, stage: str) -> MetricCollection:
        m = {
            "acc1": MulticlassAccuracy(self.num_classes, top_k=1, average="micro"),
            "mean_class_acc": MulticlassAccuracy(self.num_classes, average="macro"),
        }
        if self.num_classes > 5:
            m["acc5"] = MulticlassAccuracy(self.num_classes, top_k=5, average="micro")
        # No compute groups: torchmetrics merges metrics whose states are equal after the first
        # update, and top-5 (micro) and mean class accuracy (macro) have states of one shape, so a
        # degenerate first batch made mean class accuracy report top-5 for the whole run.
        return MetricCollection(m, compute_groups=False)

    def _view_logits(self, video: torch.Tensor) -> torch.Tensor:
        """Scores of ``[B, C, T, H, W]`` or ``[B, V, C, T, H, W]`` averaged over the V views."""
        if video.dim() == 5:
            return self(video).softmax(1) if self.hparams.test_average == "prob" else self(video)
        b, v = video.shape[:2]
        out = self(video.flatten(0, 1)).view(b, v, -1)
        if self.hparams.test_average == "prob":
            out = out.softmax(-1)
        return out.mean(1)

    def _note_skipped(self, stage: str, batch: dict) -> bool:
        """Record the videos an evaluation batch left out (undecodable; never substituted).
        Returns whether the batch still holds a video to score."""
        self._skipped_videos.setdefault(stage, []).extend(batch.get("skipped") or [])
        return batch["label"].shape[0] > 0

    def _log_skipped(self, stage: str) -> None:
        """``<stage>/skipped_videos`` next to the metrics (summed over ranks), names in the log."""
        skipped = self._skipped_videos.pop(stage, [])
        self.log(f"{stage}/skipped_videos", float(len(skipped)), sync_dist=True, reduce_fx="sum")
        if skipped:
            log.warning(
                "%s: %d unreadable video(s) left out; the metrics are over the videos scored. Left out: %s",
                stage, len(skipped), ", ".join(skipped),
            )

    def on_validation_epoch_start(self) -> None:
        self._skipped_videos["val"] = []

    def on_test_epoch_start(self) -> None:
        self._skipped_videos["test"] = []

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        if not self._note_skipped("val", batch):
            return
        scores = self._view_logits(batch["video"])
        y = batch["label"]
        self.val_metrics.update(scores, y)
        loss = (
            F.nll_loss(scores.clamp_min(1e-8).log(), y)
            if self.hparams.test_average == "prob"
            else F.cross_entropy(scores, y)
        )
        self.log("val/loss", loss, batch_size=y.shape[0], sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        self._log_skipped("val")
        name = self.view_name("val")
        for k, v in self.val_metrics.compute().items():
            self.log(f"val/{k}_{name}", v, prog_bar=(k == "acc1"), sync_dist=False)
        self.val_metrics.reset()

    def test_step(self, batch: dict, batch_idx: int) -> None:
        if not self._note_skipped("test", batch):
            return
        scores = self._view_logits(batch["video"])
        self.test_metrics.update(scores, batch["label"])
        self.test_confusion.update(scores, batch["label"])

    def on_test_epoch_end(self) -> None:
        self._log_skipped("test")
        name = self.view_name("test")
        for k, v in self.test_metrics.compute().items():
            self.log(f"test/{k}_{name}", v, sync_dist=False)
        self.confusion_matrix = self.test_confusion.compute().cpu()  # drawn by TestFigures
        self.test_metrics.reset()
        self.test_confusion.reset()

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        skipped = list(batch.get("skipped") or [])
        if batch["label"].shape[0] == 0:
            return {"index": batch["index"], "probs": torch.empty(0, self.num_classes), "skipped": skipped}
        scores = self._view_logits(batch["video"])
        probs = scores if self.hparams.test_average == "prob" else scores.softmax(-1)
        return {"index": batch["index"], "probs": probs, "skipped": skipped}


class SelfSupervisedPretraining(VideoModule):
    """Base of the self-supervised pretraining stages (:class:`~ssvar.methods.TimeBalancePretrain`,
    :class:`~ssvar.methods.ClipContrastive`): no classifier, unlabelled views only, and one
    method to write, :meth:`pretext_losses`. Validation does nothing and testing is an error:
    a pretrained backbone is evaluated by starting a method from it (``init_backbone_from``).

    Args:
        **kwargs: :class:`VideoModule` arguments. ``dropout``, ``label_smoothing`` and
            ``test_average`` (classifier settings that checkpoints of ssvar 0.1 stored for
            pretraining runs too) are accepted and ignored, so those checkpoints keep loading.
    """

    def __init__(self, backbone: nn.Module, num_classes: int, **kwargs):
        for legacy in ("dropout", "label_smoothing", "test_average"):
            kwargs.pop(legacy, None)
        super().__init__(backbone, num_classes, **kwargs)

    def pretext_losses(self, views: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The weighted loss terms of one batch of normalised unlabelled views."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled backbone features (there is no classifier in pretraining)."""
        return self.backbone(x)

    def training_step(self, batch: TrainBatch, batch_idx: int) -> torch.Tensor:
        views: dict[str, torch.Tensor] = dict(batch["unlabeled"])  # type: ignore[arg-type]
        losses = self.pretext_losses(views)
        loss = cast(torch.Tensor, sum(losses.values()))
        self._log_train(loss, losses, next(iter(views.values())).shape[0])
        return loss

    # No classifier: nothing to validate, test or predict.
    def validation_step(self, batch: dict, batch_idx: int) -> None:
        return None

    def test_step(self, batch: dict, batch_idx: int) -> None:
        raise RuntimeError(
            f"{type(self).__name__} has no classifier to test: start a method from it with "
            "init_backbone_from (TimeBalance: fine-tune a teacher, stage 2)"
        )

    @torch.no_grad()
    def precise_bn_forward(self, batch: TrainBatch) -> None:
        self.pretext_losses(batch["unlabeled"])


def _backbone_config_given() -> bool:
    """True while LightningCLI instantiates the model with a plain-config backbone."""
    try:
        from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters
    except ImportError:  # a Lightning without it: the backbone is simply not stored
        return False
    given = _given_hyperparameters.get()
    return isinstance(given, dict) and isinstance(given.get("backbone"), dict)


def warmup_cosine(warmup: int, total: int, min_ratio: float = 0.0, start_ratio: float = 0.0):
    """LR multiplier: linear warm-up over ``warmup`` steps from ``start_ratio`` (MMCV's
    ``warmup_ratio``) to 1, then cosine to ``min_ratio``. (MMCV runs its cosine from step 0 and
    multiplies the warm-up onto it; here the cosine starts after the warm-up: our choice.)"""

    def f(step: int) -> float:
        if step < warmup:
            return start_ratio + (1 - start_ratio) * (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return f


def _normalize_tree(obj: Any, mean, std) -> Any:
    if isinstance(obj, torch.Tensor) and obj.dtype == torch.uint8 and obj.dim() >= 4:
        return normalize_video(obj, mean, std)
    if isinstance(obj, dict):
        return {k: _normalize_tree(v, mean, std) for k, v in obj.items()}
    return obj


def _without_hidden(unlabeled: dict) -> dict:
    """The unlabelled batch as losses may see it: the true labels are removed."""
    return {k: v for k, v in unlabeled.items() if k not in ("hidden_label", "label")}
