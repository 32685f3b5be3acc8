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
        f = figures[name]
        assert len(f["pass_seconds"]) == len(f["pass_cpu_seconds"]) == 1
        # The per-sample figures are the measured pass times over the videos (one repeat: no median to take).
        assert (
            f["cpu_ms_per_sample"] == pytest.approx(1000 * f["pass_cpu_seconds"][0] / 2) and f["cpu_ms_per_sample"] > 0
        )
        assert f["ms_per_sample"] == pytest.approx(1000 * f["pass_seconds"][0] / 2)
    assert figures["ratio_vs_pytorchvideo"] > 0 and figures["ratio_vs_bound"] > 0
    cpu = {name: figures[name]["cpu_samples_per_s"] for name in ("ssvar", "pytorchvideo", "decode_bound")}
    assert figures["cpu_ratio_vs_bound"] == pytest.approx(cpu["ssvar"] / cpu["decode_bound"])
    # The targets are judged on the CPU-time ratios, against the thresholds the script states.
    assert figures["target_vs_bound_met"] == (figures["cpu_ratio_vs_bound"] >= bench.TARGET_VS_BOUND)
    assert figures["target_vs_pytorchvideo_met"] == (
        figures["cpu_ratio_vs_pytorchvideo"] >= bench.TARGET_VS_PYTORCHVIDEO
    )
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
