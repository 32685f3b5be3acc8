"""Smoke test of benchmarks/timebalance_label_efficiency.py with ``--start``: the student and the
invariant teacher's stage 1 are the given start, only the distinctive stage 1 is trained (from
the start), at 2 steps per stage on a tiny SyntheticActions set, in-process."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from synth import tiny_data_args

pytest.importorskip("av")
pytest.importorskip("matplotlib")

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "timebalance_label_efficiency.py"


def _load():
    spec = importlib.util.spec_from_file_location("timebalance_label_efficiency_bench", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_timebalance_from_a_start(tmp_path, monkeypatch):
    from ssvar.models import Tiny3D

    monkeypatch.chdir(tmp_path)  # the harness keeps its stages under ./runs
    torch.manual_seed(0)
    start = Tiny3D(width=16)
    torch.save({f"backbone.{k}": v for k, v in start.state_dict().items()}, tmp_path / "start.pt")
    kw = tiny_data_args(tmp_path / "data")
    kw.pop("labeled_per_class")  # the harness sets it
    sets = [a for k, v in kw.items() for a in ("--set", f"data.init_args.{k}={v}")]
    argv = [
        "--name",
        "tiny_tb",
        "--config",
        str(REPO / "examples" / "configs" / "demo.yaml"),
        "--labels-per-class",
        "1",
        "--seeds",
        "0",
        "--max-steps",
        "2",
        "--pretrain-steps",
        "2",
        "--finetune-steps",
        "2",
        "--start",
        "start.pt",
        "--out-dir",
        str(tmp_path / "out"),
        "--no-progress",
        *sets,
    ]
    _load().main(argv)

    stages = tmp_path / "runs" / "label_efficiency" / "tiny_tb" / "stages"
    trained = sorted(p.name for p in stages.glob("*.ckpt"))
    # No stage-1 run for the invariant teacher or the student: the start stands in for both.
    assert trained == ["finetune_dist_k1_s0.ckpt", "finetune_inv_k1_s0.ckpt", "pretrain_dist_s0_from_start.ckpt"]
    data = json.loads((tmp_path / "out" / "label_efficiency_tiny_tb.json").read_text())
    (rec,) = data["runs"]
    assert "model.init_args.init_backbone_from=start.pt" in rec["sets"]
    assert set(rec["stage_costs"]) == {"pretrain_dist_s0_from_start", "finetune_inv_k1_s0", "finetune_dist_k1_s0"}

    # The distinctive stage 1 continued from the start: its first weights were the start's.
    def hparams(name: str) -> dict:
        return torch.load(stages / f"{name}.ckpt", map_location="cpu", weights_only=False)["hyper_parameters"]

    dist = hparams("pretrain_dist_s0_from_start")
    assert dist["init_backbone_from"] == "start.pt" and dist["instance_weight"] == 0
    assert hparams("finetune_inv_k1_s0")["init_backbone_from"] == "start.pt"
