"""Smoke test of benchmarks/knn_probe.py: a pretraining checkpoint against random features on a
tiny SyntheticActions set (the probe must read a pretraining module's backbone, which has no
classifier and no inference network)."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from synth import load_benchmark, tiny_data_args, tiny_datamodule, tiny_trainer

pytest.importorskip("av")
pytest.importorskip("sklearn")


def test_knn_probe_on_a_pretrained_clip_contrastive_checkpoint(tmp_path):
    from ssvar.methods import ClipContrastive
    from ssvar.models import Tiny3D

    root = tmp_path / "synth"
    dm = tiny_datamodule(str(root), labeled_in_unlabeled=True, batch_size=4)
    torch.manual_seed(0)
    small = dict(num_frames=4, proj_dim=8, proj_hidden_dim=16)
    pre = ClipContrastive(Tiny3D(width=4), dm.num_classes, foreground_merge=True, **small)
    trainer = tiny_trainer(tmp_path, max_steps=2)
    trainer.fit(pre, datamodule=dm)
    ckpt = tmp_path / "pre.ckpt"
    trainer.save_checkpoint(ckpt)
    config = {
        "trainer": {"accelerator": "cpu", "logger": False, "enable_progress_bar": False},
        "model": {"class_path": "ssvar.methods.ClipContrastive", "init_args": {
            "backbone": {"class_path": "ssvar.models.Tiny3D", "init_args": {"width": 4}}, **small}},
        "data": {"class_path": "ssvar.data.SyntheticActionsDataModule", "init_args": tiny_data_args(root)},
    }
    cfg = tmp_path / "probe.yaml"
    cfg.write_text(yaml.safe_dump(config))
    out = tmp_path / "probe.json"
    load_benchmark("knn_probe").main(["--config", str(cfg), "--ckpt", f"pre={ckpt}", "--labels-per-class", "1",
                                      "--seeds", "0", "--val-fraction", "0.25", "--out", str(out)])
    rows = json.loads(out.read_text())["rows"]
    assert [r["backbone"] for r in rows] == ["random", "pre"]
    for r in rows:
        for key in ("val_knn1", "val_linear", "test_knn1", "test_linear"):
            assert 0.0 <= r[key] <= 100.0
