"""Callbacks that turn what a run logs into figures (PNG next to the logs, and sent to the logger).

* :class:`PseudoLabelCurves`: mask rate and pseudo-label accuracy over the training steps.
* :class:`PseudoLabelReliability`: pseudo-label accuracy against confidence (a reliability
  diagram from the hidden labels), epoch by epoch.
* :class:`FeatureTSNE`: a t-SNE of the test set's pooled backbone features at the end of ``test``.
* :class:`TestFigures`: confusion matrix and per-class accuracy after ``test`` (added by default).
* :class:`PredictionWriter`: ``ssvar predict``'s per-video top-k classes, to CSV or JSON.
* :class:`PreciseBN`: recompute BatchNorm running statistics as exact averages over many batches
  (LTG's recipe), with :func:`recompute_bn_stats`.

Everything a run writes (config, figures, predictions) goes into :func:`run_dir`, the run's own
versioned folder, whatever the logger.

Add them on the command line (``--trainer.callbacks+=ssvar.callbacks.PseudoLabelCurves``) or in a
trainer config (``examples/configs/trainer/plots.yaml``), or pass them to ``L.Trainer``.
"""

from __future__ import annotations

import os
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import CombinedLoader
from torch import nn

from ssvar.components.distributed import all_reduce_sum, world_size
from ssvar.components.ema import EMATeacher
from ssvar.plots import (
    PSEUDO_LABEL_METRICS,
    log_figure,
    plot_pseudo_label_curves,
    plot_pseudo_label_reliability,
    plot_tsne,
)


def run_dir(trainer: L.Trainer) -> str:
    """The run's own versioned folder, for every logger: ``save_dir/name/version`` of the first
    logger (TensorBoard's and CSV's ``log_dir``; for W&B the folder where Lightning also puts the
    run's checkpoints, ``save_dir/project/<run id>``), or ``default_root_dir`` without a logger.

    Lightning's own ``trainer.log_dir`` is the logger's shared ``save_dir`` for W&B, where each
    run would overwrite the last one's files. Call it on the process that writes (rank 0)."""
    if not trainer.loggers:
        return trainer.default_root_dir
    lg = trainer.loggers[0]
    log_dir = getattr(lg, "log_dir", None)
    if log_dir:  # TensorBoard, CSV: save_dir/name/version_N
        return str(log_dir)
    version = lg.version
    version = version if isinstance(version, str) else f"version_{version}"
    return os.path.join(lg.save_dir or trainer.default_root_dir, str(lg.name), version)


def _out_dir(trainer: L.Trainer) -> str:
    d = run_dir(trainer)
    os.makedirs(d, exist_ok=True)
    return d


# -- Precise-BN ----------------------------------------------------------------------------
# Recompute BatchNorm running statistics as true averages over many batches. During training,
# running statistics are an exponential average over recent batches of a moving network; the LTG
# recipe replaces them every few epochs with exact averages over N batches of the current weights
# (Wu & Johnson, "Rethinking BatchNorm"). Only the BatchNorm layers that the method's
# ``precise_bn_forward`` actually runs in training mode are reset and re-estimated: a layer is
# reset when it is first called, so networks that never run forward on these batches, or run in
# eval mode (FrozenTeacher), keep their statistics, and EMA teachers (whose statistics follow the
# student's) are never touched. Under DDP every rank averages over its own batches and the
# results are averaged across ranks, so all ranks end with the same statistics.


def _student_bn_layers(module: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    teachers = {id(m) for t in module.modules() if isinstance(t, EMATeacher) for m in t.modules()}
    return [
        m
        for m in module.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and id(m) not in teachers and m.track_running_stats
    ]


@torch.no_grad()
def recompute_bn_stats(module: L.LightningModule, batches, num_batches: int) -> int:
    """Reset and re-estimate, on ``num_batches`` batches of ``batches`` (training batches, before
    the device transfer), the BatchNorm statistics of the layers that ``precise_bn_forward`` runs
    in training mode; every other layer keeps its statistics. Returns the batches used."""
    candidates = _student_bn_layers(module)
    if not candidates:
        return 0
    momenta: dict[nn.Module, float | None] = {}  # the layers reset so far, in call order

    def reset_on_first_call(m: nn.modules.batchnorm._BatchNorm, args) -> None:
        if m.training and m not in momenta:
            momenta[m] = m.momentum
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the batches below

    hooks = [m.register_forward_pre_hook(reset_on_first_call) for m in candidates]
    was_training = module.training
    module.train()
    used = 0
    trainer = module.trainer
    try:
        for item in batches:
            if used >= num_batches:
                break
            batch = item[0] if isinstance(item, tuple) else item
            batch = trainer.strategy.batch_to_device(batch)
            batch = module.on_after_batch_transfer(batch, 0)
            module.precise_bn_forward(batch)
            used += 1
    finally:
        for h in hooks:
            h.remove()
        for m, mom in momenta.items():
            m.momentum = mom  # type: ignore[assignment]
    # The same layers run on every rank (same code); keep the module's order for the all-reduce.
    world = world_size()
    for m in (m for m in candidates if m in momenta):
        for buf in (m.running_mean, m.running_var):
            all_reduce_sum(buf).div_(world)
    module.train(was_training)
    return used


class PreciseBN(L.Callback):
    """Recompute BatchNorm statistics every ``every_n_epochs`` epochs on ``num_batches``
    training batches (LTG: every 5 epochs, 200 iterations on the unlabelled list), see
    :func:`recompute_bn_stats`.

    The method decides what to forward with ``precise_bn_forward(batch)`` (default: the labelled
    and unlabelled weak views through the student).
    """

    def __init__(self, num_batches: int = 200, every_n_epochs: int = 5):
        if num_batches < 1 or every_n_epochs < 1:
            raise ValueError(f"num_batches and every_n_epochs must be >= 1, got {num_batches}, {every_n_epochs}")
        self.num_batches = num_batches
        self.every_n_epochs = every_n_epochs
        self.last_batches_used = 0

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        loaders = trainer.train_dataloader  # the loaders themselves (a dict for semi-supervised fits)
        if isinstance(loaders, (dict, list, tuple)):
            loaders = CombinedLoader(loaders, mode="min_size")
        self.last_batches_used = recompute_bn_stats(module, loaders, self.num_batches)


class PseudoLabelCurves(L.Callback):
    """Records the ``train/pl_*`` metrics every ``every_n_steps`` optimiser steps and draws them
    at the end of ``fit`` (``pseudo_label_curves.png`` in the log folder; also logged as a figure).

    It reads the values the method already logged (``trainer.callback_metrics``), so it works
    with every logger, the CSV one included, and costs one host sync per recorded step.

    Args:
        every_n_steps: recording interval; ``None`` follows ``Trainer(log_every_n_steps)``.
        smooth: moving-average window of the thick curves (points).
        filename: PNG name in the log folder.
    """

    def __init__(self, every_n_steps: int | None = None, smooth: int = 5, filename: str = "pseudo_label_curves.png"):
        if every_n_steps is not None and every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps}")
        self.every_n_steps = every_n_steps
        self.smooth = smooth
        self.filename = filename
        self.history: dict[str, tuple[list[int], list[float]]] = {}
        self.path: str | None = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        every = self.every_n_steps or trainer.log_every_n_steps or 1
        step = trainer.global_step
        if step % every:
            return
        for key in (*PSEUDO_LABEL_METRICS, "train/acc1_labeled"):
            v = trainer.callback_metrics.get(key)
            if v is not None:
                steps, values = self.history.setdefault(key, ([], []))
                if not steps or steps[-1] != step:
                    steps.append(step)
                    values.append(float(v))

    def on_train_end(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero or not self.history:
            return
        self.path = os.path.join(_out_dir(trainer), self.filename)
        fig = plot_pseudo_label_curves(
            self.history, self.path, title=f"pseudo-label quality ({type(pl_module).__name__})", smooth=self.smooth
        )
        log_figure(trainer.logger, "train/pseudo_label_curves", fig, trainer.global_step)

    def state_dict(self) -> dict[str, Any]:
        return {"history": {k: (list(s), list(v)) for k, (s, v) in self.history.items()}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = {k: (list(s), list(v)) for k, (s, v) in state_dict.get("history", {}).items()}


class PseudoLabelReliability(L.Callback):
    """Pseudo-label accuracy by confidence bin, per training epoch, drawn at the end of ``fit``
    as a reliability diagram (``pseudo_label_reliability.png`` in the log folder; also logged).

    It reads the method's :class:`~ssvar.components.calibration.CalibrationBins` (summed over
    ranks) at each epoch end: if the confident pseudo-labels are no more accurate than the
    unconfident ones, the curve is flat and the figure shows it. Needs hidden labels (known for
    SyntheticActions and for labelled datasets used as unlabelled pools).

    Args:
        every_n_epochs: record every this many epochs.
        filename: PNG name in the log folder.
    """

    def __init__(self, every_n_epochs: int = 1, filename: str = "pseudo_label_reliability.png"):
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be >= 1, got {every_n_epochs}")
        self.every_n_epochs = every_n_epochs
        self.filename = filename
        self.history: list[tuple[int, list[list[float]]]] = []
        self.path: str | None = None

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        # Lightning runs callbacks' epoch-end hooks before the module's, and the module resets
        # its bins at the next epoch's start, so the finished epoch is still there.
        if trainer.current_epoch % self.every_n_epochs:
            return
        sums = trainer.strategy.reduce(pl_module.pl_calibration.sums.clone(), reduce_op="sum")
        if float(sums[0].sum()) > 0:
            self.history.append((trainer.global_step, sums.cpu().tolist()))

    def on_train_end(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero or not self.history:
            return
        self.path = os.path.join(_out_dir(trainer), self.filename)
        threshold = trainer.callback_metrics.get("train/pl_threshold")
        fig = plot_pseudo_label_reliability(
            [(s, torch.tensor(t)) for s, t in self.history],
            self.path,
            threshold=None if threshold is None else float(threshold),
            title=f"pseudo-label reliability ({type(pl_module).__name__})",
        )
        log_figure(trainer.logger, "train/pseudo_label_reliability", fig, trainer.global_step)

    def state_dict(self) -> dict[str, Any]:
        return {"history": [(s, t) for s, t in self.history]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = [(int(s), t) for s, t in state_dict.get("history", [])]


@torch.no_grad()
def extract_features(model, loader, device: str | torch.device = "cpu", max_batches: int | None = None):
    """Pooled backbone features of the inference network (a pretraining module: its backbone),
    averaged over a sample's views, and the labels: ``(features [N, D], labels [N])``. ``loader``
    yields uint8 ``video`` tensors (``[B, C, T, H, W]`` or ``[B, V, C, T, H, W]``) and ``label``,
    as the data modules' val/test loaders do."""
    from ssvar.data.transforms import normalize_video
    from ssvar.methods.base import SemiSupervisedModule

    net = model.inference_model() if isinstance(model, SemiSupervisedModule) else model
    backbone = net.backbone.to(device).eval()
    feats, labels = [], []
    for i, batch in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        x = batch["video"].to(device)
        b = x.shape[0]
        x = normalize_video(x, model.hparams.mean, model.hparams.std)
        f = backbone(x.flatten(0, 1) if x.dim() == 6 else x)
        feats.append(f.view(b, -1, f.shape[-1]).mean(1).cpu())
        labels.append(batch["label"].cpu())
    return torch.cat(feats), torch.cat(labels)


class FeatureTSNE(L.Callback):
    """At the end of ``test``: a t-SNE of the pooled backbone features of the test videos (views
    averaged), coloured by true class (``test_tsne.png``; also logged as a figure).

    Under DDP each rank sees its shard of the test set; rank 0 draws its own shard.

    Args:
        max_samples: keep at most this many test videos (t-SNE is quadratic).
        filename: PNG name in the log folder.
    """

    def __init__(self, max_samples: int = 2000, filename: str = "test_tsne.png"):
        self.max_samples = max_samples
        self.filename = filename
        self.path: str | None = None
        self._feats: list[torch.Tensor] = []
        self._labels: list[torch.Tensor] = []
        self._hook = None

    def on_test_start(self, trainer, pl_module) -> None:
        self._feats, self._labels = [], []
        backbone = pl_module.inference_model().backbone
        self._hook = backbone.register_forward_hook(lambda m, i, o: self._feats.append(o.detach()))

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        b = batch["label"].shape[0]
        if b == 0:  # every video of the batch was unreadable: nothing was forwarded
            return
        f = self._feats.pop()  # the batch's features, [B * V, D] for multi-view samples
        self._feats.append(f.view(b, -1, f.shape[-1]).mean(1).cpu())
        self._labels.append(batch["label"].cpu())

    def on_test_end(self, trainer, pl_module) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        if not trainer.is_global_zero or not self._feats:
            return
        x, y = torch.cat(self._feats)[: self.max_samples], torch.cat(self._labels)[: self.max_samples]
        if len(x) < 3:
            return
        self.path = os.path.join(_out_dir(trainer), self.filename)
        fig = plot_tsne(
            x, y, pl_module.class_names, self.path, title=f"t-SNE of test features ({type(pl_module).__name__})"
        )
        log_figure(trainer.logger, "test/tsne", fig, trainer.global_step)


class PredictionWriter(L.pytorch.callbacks.BasePredictionWriter):
    """Writes ``ssvar predict``'s results: one row per video with its path, its true class where
    the list gives one, and the ``top_k`` classes with probabilities (averaged over the test views).

    ``ssvar predict`` adds one by default (CSV in the run folder, :func:`run_dir`); give your own
    in the trainer's callbacks to change the format or the place. Under DDP each rank writes its
    shard (``predictions_rank<r>.csv``).

    Args:
        path: output file; ``None``: ``predictions.<format>`` in the run folder.
        format: ``"csv"`` or ``"json"``.
        top_k: classes per video.
    """

    def __init__(self, path: str | None = None, format: str = "csv", top_k: int = 5):
        super().__init__(write_interval="epoch")
        if format not in ("csv", "json"):
            raise ValueError(f"format must be 'csv' or 'json', got {format!r}")
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        self.path, self.format, self.top_k = path, format, top_k
        self.written: str | None = None

    def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices) -> None:
        import json

        from ssvar.fileio import atomic_write_text

        batches = predictions[0] if predictions and isinstance(predictions[0], list) else predictions
        loader = trainer.predict_dataloaders
        loader = loader[0] if isinstance(loader, (list, tuple)) else loader
        records = getattr(getattr(getattr(loader, "dataset", None), "index", None), "records", None)
        names = list(getattr(pl_module, "class_names", []) or [])
        rows = []
        for out in batches:
            probs = out["probs"].float().cpu()
            for i, p in zip(out["index"].tolist(), probs):
                rec = records[i] if records is not None else None
                label = getattr(rec, "label", -1) if rec is not None else -1
                q, j = p.topk(min(self.top_k, p.numel()))
                rows.append(
                    {
                        "video": getattr(rec, "path", str(i)),
                        "label": (names[label] if 0 <= label < len(names) else str(label))
                        if label is not None and label >= 0
                        else "",
                        "top": [
                            {"class": names[c] if c < len(names) else str(c), "prob": round(float(v), 6)}
                            for c, v in zip(j.tolist(), q)
                        ],
                    }
                )
        path = self.path or os.path.join(
            _out_dir(trainer) if trainer.is_global_zero else run_dir(trainer), f"predictions.{self.format}"
        )
        if trainer.world_size > 1:
            stem, ext = os.path.splitext(path)
            path = f"{stem}_rank{trainer.global_rank}{ext}"
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        if self.format == "json":
            text = json.dumps(rows, indent=1)
        else:
            import csv
            import io

            buf = io.StringIO()
            w = csv.writer(buf)
            w.writerow(["video", "label", "rank", "class", "prob"])
            for r in rows:
                for k, t in enumerate(r["top"], 1):
                    w.writerow([r["video"], r["label"], k, t["class"], f"{t['prob']:.6f}"])
            text = buf.getvalue()
        atomic_write_text(path, text)
        self.written = path


class TestFigures(L.Callback):
    """The test's confusion matrix and per-class accuracy as PNG in the run folder, and to the
    logger, after every ``test`` (rank 0). Every ssvar classifier adds it by default; the paths
    written are kept in ``paths`` (and in the module's ``test_figure_paths``)."""

    __test__ = False  # not a pytest test class

    def __init__(self, dpi: int = 120):
        self.dpi = dpi
        self.paths: list[str] = []

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from ssvar.plots import plot_confusion_matrix, plot_per_class_accuracy

        matrix = pl_module.confusion_matrix
        if not trainer.is_global_zero or matrix is None:
            return
        views = pl_module.view_name("test")
        out_dir = _out_dir(trainer)
        figs = {
            f"test/confusion_matrix_{views}": plot_confusion_matrix(matrix, pl_module.class_names),
            f"test/per_class_accuracy_{views}": plot_per_class_accuracy(matrix, pl_module.class_names),
        }
        self.paths = []
        for tag, fig in figs.items():
            path = os.path.join(out_dir, tag.replace("/", "_") + ".png")
            fig.savefig(path, dpi=self.dpi, bbox_inches="tight")
            self.paths.append(path)
            log_figure(pl_module.logger, tag, fig, pl_module.global_step)
        pl_module.test_figure_paths = list(self.paths)  # type: ignore[assignment]
