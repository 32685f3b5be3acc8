"""Smoke test of benchmarks/data_throughput.py on a tiny generated video tree (seconds)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av")
pytest.importorskip("pytorchvideo")

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "data_throughput.py"


def _load():
    spec = importlib.util.spec_from_file_location("data_throughput_bench", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _write_video(path: Path, frames: int, width: int, height: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=25, options={"preset": "ultrafast", "x264-params": "keyint=8"})
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.codec_context.thread_count = 1
        base = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        for t in range(frames):
            img = np.roll(base, 2 * t, axis=1)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_data_throughput_smoke(tmp_path, capsys):
    root = tmp_path / "videos"
    for k, (cls, frames, w, h) in enumerate([("a", 40, 64, 48), ("a", 12, 48, 64), ("b", 30, 80, 48)]):
        (root / cls).mkdir(parents=True, exist_ok=True)
        _write_video(root / cls / f"v{k}.mp4", frames, w, h, seed=k)
    results = tmp_path / "RESULTS.md"
    bench = _load()
    figures = bench.main(
        ["--root", str(root), "--limit", "2", "--repeats", "1", "--warmup", "1", "--frames", "4", "--stride", "4",
         "--crop", "32", "--short-side", "40", "--no-progress", "--write", "--results", str(results)]
    )
    assert isinstance(figures, dict)
    assert figures["videos"] == 2 and figures["repeats"] == 1
    for name in ("ssvar", "pytorchvideo", "decode_bound"):
        assert figures[name]["samples_per_s"] > 0
        assert figures[name]["cpu_ms_per_sample"] >= 0
        assert len(figures[name]["pass_seconds"]) == 1
    assert figures["ratio_vs_pytorchvideo"] > 0 and figures["ratio_vs_bound"] > 0
    assert isinstance(figures["target_vs_bound_met"], bool)
    out = capsys.readouterr().out
    assert "| pipeline |" in out and "targets" in out
    # --write creates the section, and a second write replaces the generated block only.
    text = results.read_text()
    assert "## Data pipeline throughput" in text and bench.BEGIN in text
    results.write_text(text + "\nnotes kept\n")
    bench.write_results(results, "new block")
    text = results.read_text()
    assert text.count(bench.BEGIN) == 1 and "new block" in text and "notes kept" in text
    assert "| pipeline |" not in text
