"""Smoke test of benchmarks/precise_bn_check.py on a tiny FixMatch checkpoint: validation and test
accuracies are reported before and after Precise-BN, and "before" is the checkpoint's own."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
import yaml
from synth import TINY, tiny_datamodule, tiny_trainer

pytest.importorskip("av")

REPO = Path(__file__).resolve().parents[2]


def _load():
    spec = importlib.util.spec_from_file_location("precise_bn_check", REPO / "benchmarks" / "precise_bn_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_precise_bn_check_on_a_fixmatch_checkpoint(tmp_path):
    from ssvar.methods import FixMatch
    from ssvar.models import Tiny3D

    root = tmp_path / "synth"
    data = dict(TINY, root=str(root), test_fraction=0.34, batch_size=2, num_workers=0, num_frames=4, stride=2,
                crop_size=24, short_side=28, test_clips=2, test_crops=1, labeled_per_class=1, val_fraction=0.25)
    dm = tiny_datamodule(str(root), val_fraction=0.25)
    torch.manual_seed(0)
    model = FixMatch(Tiny3D(width=4), dm.num_classes, threshold=0.0)
    trainer = tiny_trainer(tmp_path, max_steps=2)
    trainer.fit(model, datamodule=dm)
    ckpt = tmp_path / "fm.ckpt"
    trainer.save_checkpoint(ckpt)
    config = {
        "trainer": {"accelerator": "cpu", "logger": False},
        "model": {"class_path": "ssvar.methods.FixMatch", "init_args": {
            "backbone": {"class_path": "ssvar.models.Tiny3D", "init_args": {"width": 4}}, "threshold": 0.0}},
        "data": {"class_path": "ssvar.data.SyntheticActionsDataModule", "init_args": data},
    }
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump(config))
    out = _load().main(["--ckpt", str(ckpt), "--num-batches", "2", "--", "--config", str(cfg)])
    assert out["num_batches_used"] == 2
    for part in ("as_trained", "precise_bn"):
        assert any(k.startswith("val/acc1") for k in out[part]) and any(k.startswith("test/acc1") for k in out[part])
    # as trained, the checkpoint's accuracies are the model's own (same weights, same statistics)
    trainer.test(model, datamodule=dm, verbose=False)
    (own,) = trainer.test(model, datamodule=dm, verbose=False)
    key = next(k for k in own if k.startswith("test/acc1"))
    assert out["as_trained"][key] == pytest.approx(float(own[key]))
