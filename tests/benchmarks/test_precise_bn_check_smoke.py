"""Smoke test of benchmarks/precise_bn_check.py on a tiny FixMatch checkpoint: validation and test
accuracies are reported before and after Precise-BN, and "before" is the checkpoint's own."""

from __future__ import annotations

import pytest
import torch
import yaml
from synth import load_benchmark, tiny_data_args, tiny_datamodule, tiny_trainer

pytest.importorskip("av")


def test_precise_bn_check_on_a_fixmatch_checkpoint(tmp_path, monkeypatch):
    from ssvar.methods import FixMatch
    from ssvar.models import Tiny3D

    root = tmp_path / "synth"
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
        "data": {"class_path": "ssvar.data.SyntheticActionsDataModule",
                 "init_args": tiny_data_args(root, val_fraction=0.25)},
    }
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump(config))
    monkeypatch.chdir(tmp_path / "synth")  # nothing may be written into the working directory
    before = set((tmp_path / "synth").iterdir())
    check = load_benchmark("precise_bn_check")
    out = check.main(["--ckpt", str(ckpt), "--num-batches", "2", "--", "--config", str(cfg)])
    assert out["num_batches_used"] == 2
    assert set((tmp_path / "synth").iterdir()) == before
    for part in ("as_trained", "precise_bn"):
        assert any(k.startswith("val/acc1") for k in out[part]) and any(k.startswith("test/acc1") for k in out[part])
    # as trained, the checkpoint's accuracies are the model's own (same weights, same statistics)
    (own,) = trainer.test(model, datamodule=dm, verbose=False)
    key = next(k for k in own if k.startswith("test/acc1"))
    assert out["as_trained"][key] == pytest.approx(float(own[key]))
