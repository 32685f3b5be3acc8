"""Smoke test of benchmarks/label_efficiency.py: 2 methods (one a named variant with its own
override) x 1 label count x 1 seed x 2 steps on a tiny SyntheticActions set, in-process (~10 s)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from synth import TINY

pytest.importorskip("av")
pytest.importorskip("matplotlib")

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "label_efficiency.py"
METHODS = REPO / "examples" / "configs" / "methods"


def _load():
    spec = importlib.util.spec_from_file_location("label_efficiency_bench", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _tiny_sets(root: Path) -> list[str]:
    kw = dict(TINY, root=root, test_fraction=0.34, batch_size=2, num_workers=0, num_frames=4, stride=2,
              crop_size=24, short_side=28, test_clips=2, test_crops=1)
    out = []
    for k, v in kw.items():
        out += ["--set", f"data.init_args.{k}={v}"]
    return out


def test_label_efficiency_smoke(tmp_path, monkeypatch):
    bench = _load()
    out_dir, runs_dir = tmp_path / "out", tmp_path / "runs"
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n\n## Data pipeline throughput\n\nkept\n")
    argv = [
        "--name", "tiny",
        "--config", str(REPO / "examples" / "configs" / "demo.yaml"),
        "--methods", str(METHODS / "supervised.yaml"), f"fixmatch_self={METHODS / 'fixmatch.yaml'}",
        "--method-set", "fixmatch_self:model.init_args.teacher=null",
        "--labels-per-class", "1", "--seeds", "0", "--max-steps", "2",
        "--out-dir", str(out_dir), "--runs-dir", str(runs_dir), "--no-progress",
        "--write", "--results", str(results),
        *_tiny_sets(tmp_path / "data"),
        "--set", "data.init_args.val_fraction=0.3",  # each run is also validated on a split of its own
    ]
    outs = bench.main(argv)
    for kind in ("json", "md", "png"):
        assert outs[kind].is_file() and outs[kind].stat().st_size > 0, kind
    assert outs["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    data = json.loads(outs["json"].read_text())
    assert len(data["runs"]) == 2
    assert {r["method_class"] for r in data["runs"]} == {"Supervised", "FixMatch"}
    assert {r["method"] for r in data["runs"]} == {"supervised", "fixmatch_self"}
    assert "model.init_args.teacher=null" in next(r for r in data["runs"] if r["method"] == "fixmatch_self")["sets"]
    for r in data["runs"]:
        assert r["steps"] == 2 and r["labels_per_class"] == 1 and r["seed"] == 0
        assert 0.0 <= r["acc1"] <= 1.0 and 0.0 <= r["mean_class_acc"] <= 1.0
        assert r["views"] == "2x1" and r["wall_s"] > 0
        assert any(k.startswith("val/acc1") for k in r["val"]), r["val"]
    fixmatch = next(r for r in data["runs"] if r["method_class"] == "FixMatch")
    assert "pl_mask_rate" in fixmatch["train"]  # pseudo-label diagnostics are kept

    md = outs["md"].read_text()
    assert "| method |" in md and "Supervised" in md and "FixMatch" in md and "2 optimiser steps" in md
    assert "--max-steps 2" in md and "CPUs" in md and "**" in md
    text = results.read_text()
    assert "kept" in text and bench.BEGIN in text and bench.END in text and "Supervised" in text

    # Resume: the stored runs are not run again; --from-json regenerates the outputs.
    def boom(spec):
        raise AssertionError(f"ran {spec['method']} again")

    monkeypatch.setattr(bench, "run_one", boom)
    outs["md"].unlink()
    bench.main(argv)
    assert outs["md"].is_file()
    outs["png"].unlink()
    bench.main(["--name", "tiny", "--from-json", "--out-dir", str(out_dir)])
    assert outs["png"].is_file()
    assert len(json.loads(outs["json"].read_text())["runs"]) == 2


def test_init_backbone_from_is_a_setting_of_every_run(tmp_path):
    bench = _load()
    base = ["--name", "x", "--config", "c.yaml", "--methods", "m.yaml", "--labels-per-class", "2", "--max-steps", "5"]
    with pytest.raises(SystemExit):
        bench.parse_args([*base, "--init-backbone-from", str(tmp_path / "missing.ckpt")])
    ckpt = tmp_path / "pre.ckpt"
    ckpt.write_bytes(b"x")
    args = bench.parse_args([*base, "--init-backbone-from", str(ckpt)])
    assert f"model.init_args.init_backbone_from={ckpt}" in args.set  # part of every run's settings id


def test_a_diverged_run_is_recorded_as_diverged(tmp_path):
    bench = _load()
    argv = [
        "--name", "tiny_diverged",
        "--config", str(REPO / "examples" / "configs" / "demo.yaml"),
        "--methods", f"sup_huge_lr={METHODS / 'supervised.yaml'}",
        "--method-set", "sup_huge_lr:model.init_args.lr=1e30",  # overflows within a few steps
        "--labels-per-class", "1", "--seeds", "0", "--max-steps", "4",
        "--out-dir", str(tmp_path / "out"), "--runs-dir", str(tmp_path / "runs"), "--no-progress",
        *_tiny_sets(tmp_path / "data"),
        "--set", "trainer.log_every_n_steps=1",
    ]
    outs = bench.main(argv)
    (run,) = json.loads(outs["json"].read_text())["runs"]
    assert "non-finite training loss at step" in run["diverged"]
    assert run["steps"] < 4  # stopped, not trained on NaN weights to the end
    assert "Diverged (stopped at a non-finite training loss" in outs["md"].read_text()
