"""Smoke test of benchmarks/loader_scaling.py on a tiny generated tree (seconds)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("av")

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "loader_scaling.py"


def _load():
    spec = importlib.util.spec_from_file_location("loader_scaling_bench", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_loader_scaling_smoke(video_factory, tmp_path, capsys):
    for c in ("a", "b"):
        for i in range(8):
            video_factory(f"tree/{c}/{c}{i}.mp4", num_frames=24, width=40, height=32)
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n")
    rows = _load().main([
        "--root", str(tmp_path / "tree"), "--prepared-root", str(tmp_path / "tree"), "--workers", "0", "1",
        "--batch-size", "1", "--mu", "2", "--labeled-per-class", "1", "--frames", "4", "--stride", "2",
        "--crop", "24", "--short-side", "28", "--write", "--results", str(results),
    ])
    assert [(r["footage"], r["workers"]) for r in rows] == [
        ("original", 0),
        ("original", 1),
        ("prepared", 0),
        ("prepared", 1),
    ]
    for r in rows:
        assert r["steps"] >= 1 and r["videos"] == r["steps"] * 3 and r["cpu_ms_per_video"] > 0
    text = results.read_text()
    assert "loader cores on original footage" in text and "loader cores on prepared footage" in text
    assert "| original | 1 |" in text
