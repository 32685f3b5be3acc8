"""Supervised, FixMatch and Mean Teacher on SyntheticActions on one GPU, with bf16 autocast.

The CPU evidence runs (``benchmarks/RESULTS.md``) use a few hundred to 2000 steps; on a GPU this
runs each method at ten times the CPU steps (``--steps``, default 3000 = 10 x 300), from the same
seeds, labelled draws and configs, and prints the results table and the training throughput
(clips per second: labelled plus unlabelled clips through the student per optimiser step). It
must finish within 8 minutes: a 30-step probe of the slowest method measures the step time first,
and if the full runs would not fit ``--budget-s``, every method gets the same smaller step count
(said in the output; the comparison stays at equal steps).

    python benchmarks/gpu_evidence.py                     # on the GPU machine
    python benchmarks/gpu_evidence.py --accelerator cpu --precision 32-true --steps 6 --probe-steps 2   # a dry run

Outputs: ``benchmarks/results/label_efficiency_gpu_<device>.{json,md,png}`` (via
``benchmarks/label_efficiency.py``, which this script drives) and
``benchmarks/results/gpu_evidence_<device>.json`` (device, precision, steps, clips/s per method).
Record the printed table in RESULTS.md with the device named.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(REPO) not in sys.path[:1]:
    sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

import label_efficiency as LE  # noqa: E402

CONFIG = REPO / "ssvar" / "configs" / "demo.yaml"
METHODS = ["supervised", "fixmatch", "mean_teacher"]


def _device_name(accelerator: str) -> str:
    import torch

    if accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return "cpu"


def _clips_per_step(batch_size: int, mu: int, method: str) -> int:
    """Clips through the student per optimiser step: the labelled batch, plus weak and strong
    views of ``mu`` times as many unlabelled clips for the semi-supervised methods."""
    return batch_size + (0 if method == "supervised" else 2 * mu * batch_size)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=3000, help="optimiser steps per run (10 x the CPU runs' 300)")
    p.add_argument(
        "--budget-s", type=float, default=420.0, help="time for the full runs (the 8-minute limit minus setup)"
    )
    p.add_argument("--probe-steps", type=int, default=30)
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--labels-per-class", nargs="+", type=int, default=[4])
    p.add_argument("--accelerator", default="gpu")
    p.add_argument("--precision", default="bf16-mixed")
    p.add_argument(
        "--batch-size", type=int, default=None, help="labelled batch (default: the demo config's, as on the CPU)"
    )
    p.add_argument(
        "--mu", type=int, default=None, help="unlabelled : labelled batch ratio (default: the demo config's)"
    )
    p.add_argument("--num-workers", type=int, default=8)
    p.add_argument("--out-dir", default=str(HERE / "results"))
    args = p.parse_args(argv)

    device = _device_name(args.accelerator)
    tag = re.sub(r"[^a-z0-9]+", "_", device.lower()).strip("_")
    import yaml

    data_args = (yaml.safe_load(CONFIG.read_text()).get("data") or {}).get("init_args") or {}
    sets = [
        f"trainer.accelerator={args.accelerator}",
        f"trainer.precision={args.precision}",
        f"data.init_args.num_workers={args.num_workers}",
        "data.init_args.val_fraction=0.1",
    ]
    if args.batch_size is not None:
        sets.append(f"data.init_args.batch_size={args.batch_size}")
    if args.mu is not None:
        sets.append(f"data.init_args.mu={args.mu}")
    batch_size = args.batch_size or int(data_args.get("batch_size", 8))
    mu = args.mu or int(data_args.get("mu", 1))
    method_configs = [str(REPO / "ssvar" / "configs" / "methods" / f"{m}.yaml") for m in METHODS]
    common = ["--config", str(CONFIG), "--no-progress", "--out-dir", args.out_dir]
    for s in sets:
        common += ["--set", s]

    # 1. probe: the slowest method (FixMatch: three student/teacher passes) for a few steps
    t0 = time.perf_counter()
    probe = LE.main(
        [
            "--name",
            f"gpu_probe_{tag}",
            "--methods",
            method_configs[1],
            "--labels-per-class",
            str(args.labels_per_class[0]),
            "--seeds",
            str(args.seeds[0]),
            "--max-steps",
            str(args.probe_steps),
            "--rerun",
            *common,
        ]
    )
    probe_run = probe["data"]["runs"][-1]
    sec_per_step = probe_run["fit_s"] / args.probe_steps
    overhead = probe_run["wall_s"] - probe_run["fit_s"] + 5.0  # test + setup per run
    n_runs = len(METHODS) * len(args.seeds) * len(args.labels_per_class)
    fit_steps = int((args.budget_s - n_runs * overhead) / (n_runs * sec_per_step * 1.15))
    steps = max(args.probe_steps, min(args.steps, fit_steps // 50 * 50 if fit_steps >= 100 else fit_steps))
    if steps < args.steps:
        print(f"[gpu_evidence] {args.steps} steps per run would not fit {args.budget_s:.0f} s "
              f"({sec_per_step * 1000:.1f} ms/step measured): every method runs {steps} steps instead")

    # 2. the comparison at equal steps
    out = LE.main(
        ["--name", f"gpu_{tag}", "--methods", *method_configs, "--labels-per-class", *map(str, args.labels_per_class),
         "--seeds", *map(str, args.seeds), "--max-steps", str(steps), *common]
    )
    runs = [r for r in out["data"]["runs"] if r["max_steps"] == steps]
    throughput = {}
    for r in runs:
        clips = _clips_per_step(batch_size, mu, r["method"]) * r["steps"]
        throughput.setdefault(r["method"], []).append(clips / r["fit_s"])
    summary = {
        "device": device,
        "precision": args.precision,
        "steps": steps,
        "requested_steps": args.steps,
        "probe_ms_per_step": round(sec_per_step * 1000, 2),
        "clips_per_s": {m: round(sum(v) / len(v), 1) for m, v in throughput.items()},
        "total_s": round(time.perf_counter() - t0, 1),
        "ssvar_commit": out["data"].get("machine", {}).get("ssvar_commit", "?"),
    }
    Path(args.out_dir, f"gpu_evidence_{tag}.json").write_text(json.dumps(summary, indent=2))
    md = Path(args.out_dir, f"label_efficiency_gpu_{tag}.md")
    print(md.read_text() if md.exists() else "")
    print(f"device: {device}, precision {args.precision}, {steps} steps per run, total {summary['total_s']} s")
    for m, v in summary["clips_per_s"].items():
        print(f"  {m}: {v} clips/s (training)")
    return summary


if __name__ == "__main__":
    main()
