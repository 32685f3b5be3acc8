"""Smoke test of benchmarks/knn_probe.py: a pretraining checkpoint against random features on a
tiny SyntheticActions set (the probe must read a pretraining module's backbone, which has no
classifier and no inference network)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
import yaml
from synth import tiny_datamodule, tiny_trainer

pytest.importorskip("av")
pytest.importorskip("sklearn")

REPO = Path(__file__).resolve().parents[2]


def _load():
    spec = importlib.util.spec_from_file_location("knn_probe_bench", REPO / "benchmarks" / "knn_probe.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_knn_probe_on_a_pretrained_clip_contrastive_checkpoint(tmp_path):
    from synth import TINY

    from ssvar.methods import ClipContrastive
    from ssvar.models import Tiny3D

    root = tmp_path / "synth"
    dm = tiny_datamodule(str(root), labeled_in_unlabeled=True, batch_size=4)
    torch.manual_seed(0)
    pre = ClipContrastive(Tiny3D(width=4), dm.num_classes, num_frames=4, proj_dim=8, proj_hidden_dim=16,
                          foreground_merge=True)
    trainer = tiny_trainer(tmp_path, max_steps=2)
    trainer.fit(pre, datamodule=dm)
    ckpt = tmp_path / "pre.ckpt"
    trainer.save_checkpoint(ckpt)
    data = dict(TINY, root=str(root), test_fraction=0.34, batch_size=2, num_workers=0, num_frames=4, stride=2,
                crop_size=24, short_side=28, test_clips=2, test_crops=1, labeled_per_class=1)
    config = {
        "trainer": {"accelerator": "cpu", "logger": False, "enable_progress_bar": False},
        "model": {"class_path": "ssvar.methods.ClipContrastive", "init_args": {
            "backbone": {"class_path": "ssvar.models.Tiny3D", "init_args": {"width": 4}},
            "num_frames": 4, "proj_dim": 8, "proj_hidden_dim": 16}},
        "data": {"class_path": "ssvar.data.SyntheticActionsDataModule", "init_args": data},
    }
    cfg = tmp_path / "probe.yaml"
    cfg.write_text(yaml.safe_dump(config))
    out = tmp_path / "probe.json"
    _load().main(["--config", str(cfg), "--ckpt", f"pre={ckpt}", "--labels-per-class", "1", "--seeds", "0",
                  "--val-fraction", "0.25", "--out", str(out)])
    rows = json.loads(out.read_text())["rows"]
    assert [r["backbone"] for r in rows] == ["random", "pre"]
    for r in rows:
        for key in ("val_knn1", "val_linear", "test_knn1", "test_linear"):
            assert 0.0 <= r[key] <= 100.0
