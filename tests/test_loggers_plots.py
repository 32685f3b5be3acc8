"""Loggers (TensorBoard default, W&B offline, CSV) and the figures: pseudo-label curves, t-SNE."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from test_cli import CONFIG_DIR, REPO, _tiny_synth_args

from ssvar.cli import run_cli
from ssvar.plots import plot_pseudo_label_curves, plot_tsne, read_metrics_csv, read_scalars


def _fit(tmp_path: Path, *extra: str):
    return run_cli(
        [
            "fit",
            "--config",
            str(REPO / "examples/configs/demo.yaml"),
            "--config",
            str(CONFIG_DIR / "methods/fixmatch.yaml"),
            *_tiny_synth_args(tmp_path / "synth"),
            "--trainer.max_epochs",
            "1",
            "--trainer.limit_train_batches",
            "4",
            "--trainer.log_every_n_steps",
            "1",
            "--trainer.check_val_every_n_epoch",
            "1",
            "--trainer.limit_val_batches",
            "1",
            "--trainer.default_root_dir",
            str(tmp_path / "run"),
            "--trainer.enable_progress_bar",
            "false",
            "--trainer.enable_model_summary",
            "false",
            "--trainer.enable_checkpointing",
            "false",
            *extra,
        ],
    )


def test_default_logger_is_tensorboard_and_figures_are_written(tmp_path):
    cli = _fit(tmp_path, "--config", str(CONFIG_DIR / "trainer/plots.yaml"))
    from lightning.pytorch.loggers import TensorBoardLogger

    assert isinstance(cli.trainer.logger, TensorBoardLogger)
    log_dir = Path(cli.trainer.log_dir)
    scalars = read_scalars(str(log_dir))
    assert "train/pl_mask_rate" in scalars and len(scalars["train/pl_mask_rate"][0]) == 4
    names = {p.name for p in log_dir.glob("*.png")}
    # end of fit: the pseudo-label curves; test_after_fit (demo.yaml): confusion matrix, per-class accuracy, t-SNE
    assert {"pseudo_label_curves.png", "pseudo_label_reliability.png", "test_tsne.png"} <= names
    assert "train/pl_ece" in scalars  # the reliability diagram's summary, one point per epoch
    assert any(n.startswith("test_confusion_matrix") for n in names) and any(
        n.startswith("test_per_class_accuracy") for n in names
    )
    # and the figures went to TensorBoard too
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"images": 0})
    acc.Reload()
    assert {"train/pseudo_label_curves", "test/tsne"} <= set(acc.Tags()["images"])


def test_csv_logger_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the config's save_dir (runs/) is relative
    _fit(tmp_path, "--config", str(CONFIG_DIR / "trainer/csv.yaml"), "--test_after_fit", "false")
    csvs = list((tmp_path / "runs" / "csv").rglob("metrics.csv"))
    assert len(csvs) == 1
    m = read_metrics_csv(str(csvs[0]))
    assert len(m["train/loss"][0]) == 4 and "train/pl_acc" in m
    assert list((tmp_path / "runs" / "tensorboard").rglob("events.out.tfevents.*"))


def test_wandb_offline_writes_a_run_directory(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))  # nothing outside the test folder
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb_config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb_cache"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    cli = _fit(tmp_path, "--config", str(CONFIG_DIR / "trainer/wandb.yaml"), "--test_after_fit", "false")
    from lightning.pytorch.loggers import WandbLogger

    assert isinstance(cli.trainer.logger, WandbLogger)
    cli.trainer.logger.experiment.finish()
    runs = list((tmp_path / "runs" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    assert list(runs[0].glob("*.wandb"))  # the run's event log, to `wandb sync` later


def test_plot_tsne_and_curves_write_readable_pngs(tmp_path):
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 16, generator=g) * 4
    labels = torch.arange(3).repeat_interleave(10)
    feats = centres[labels] + torch.randn(30, 16, generator=g)
    fig = plot_tsne(feats, labels, ["a", "b", "c"], str(tmp_path / "tsne.png"), "t-SNE")
    # three well-separated blobs stay three clusters: each point's nearest neighbour has its class
    xy = np.concatenate([c.get_offsets() for c in fig.axes[0].collections])
    lab = np.concatenate([[i] * len(c.get_offsets()) for i, c in enumerate(fig.axes[0].collections)])
    d = ((xy[:, None] - xy[None]) ** 2).sum(-1) + np.eye(len(xy)) * 1e9
    assert (lab[d.argmin(1)] == lab).mean() > 0.9
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["a", "b", "c"]
    with pytest.raises(ValueError, match="features"):
        plot_tsne(feats, labels[:5], ["a", "b", "c"], None, "x")
    steps = list(range(0, 100, 5))
    fig = plot_pseudo_label_curves({"train/pl_mask_rate": (steps, [s / 100 for s in steps]),
                                    "train/pl_acc": (steps, [0.5] * len(steps))}, str(tmp_path / "curves.png"))
    assert len(fig.axes[0].get_legend().get_texts()) == 2
    for name in ("tsne.png", "curves.png"):
        assert (tmp_path / name).stat().st_size > 10_000
