"""Label efficiency of TimeBalance: all three stages, the last one at EQUAL steps with the others.

TimeBalance is a pipeline (research/methods.md section 4), so one row costs more than one fit:

1. stage 1, self-supervised pretraining on the unlabelled pool (every training video, no
   labels), three runs of :class:`~ssvar.methods.TimeBalancePretrain`: invariant teacher
   (instance loss), distinctive teacher (temporal losses), student init (all three);
   ``--pretrain-steps`` each. Labels are never used, so by default the three runs are made once
   (with ``--pretrain-seed``) and shared by every labelled split and seed, like a pretrained
   checkpoint; ``--pretrain-per-seed`` makes them per seed;
2. stage 2, each teacher fine-tuned on the labelled split with ``methods/supervised.yaml``
   (``init_backbone_from`` = its stage-1 checkpoint), ``--finetune-steps`` each;
3. stage 3, ``methods/timebalance.yaml`` (student from the stage-1 student init, teachers from
   stage 2) for exactly ``--max-steps`` steps, run and tested by ``label_efficiency.run_one``,
   the harness's own code, with the base config's data and trainer: the same protocol as the
   stored Supervised / FixMatch rows.

The harness's JSON/Markdown/PNG come out under ``label_efficiency_<name>.*``; each stage-3
record carries the wall time of the stages it used (``stage_costs``), and the Markdown lists
them. With ``--start CKPT`` (a self-supervised start such as ``pretrain_tiny3d_synthetic.yaml``'s
checkpoint, so TimeBalance is compared with the other methods from the same start), stage 1 is
not trained from random weights: the student init and the invariant teacher's stage 1 are the
start itself (its objective is clip-level instance contrast), and the distinctive teacher's stage 1
continues from the start with the temporal losses only (``--pretrain-steps``), so the two teachers
still differ in what their pretraining rewarded (our choice; the paper pretrains each from scratch
for 400 epochs). Checkpoints of stages 1 and 2 are kept in ``runs/label_efficiency/<name>/stages`` and
reused when present (an interrupted benchmark resumes).

    python benchmarks/timebalance_label_efficiency.py --name synthetic_timebalance \\
        --config examples/configs/demo.yaml --labels-per-class 2 1 --seeds 0 1 2 \\
        --max-steps 200 --pretrain-steps 50 --finetune-steps 200 \\
        --pretrain-set data.init_args.crop_size=32 --pretrain-set data.init_args.short_side=36 --no-progress
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
for p in (str(HERE), str(REPO)):
    if p not in sys.path[:2]:
        sys.path.insert(0, p)

import label_efficiency as LE  # noqa: E402

PRETRAIN = REPO / "examples" / "configs" / "methods" / "timebalance_pretrain.yaml"
FINETUNE = REPO / "examples" / "configs" / "methods" / "supervised.yaml"
DISTILL = REPO / "examples" / "configs" / "methods" / "timebalance.yaml"
# Stage-1 loss switches: (instance, local-local, global-local), official configs.
VARIANTS = {"inv": (1, 0, 0), "dist": (0, 1, 1), "tclr": (1, 1, 1)}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--name", required=True)
    p.add_argument("--config", required=True, help="base config: data + trainer (its model section is dropped)")
    p.add_argument("--labels-per-class", nargs="+", type=int, required=True)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--max-steps", type=int, required=True, help="stage-3 steps (equal to the other methods' rows)")
    p.add_argument("--pretrain-steps", type=int, default=50)
    p.add_argument("--finetune-steps", type=int, default=200)
    p.add_argument("--pretrain-seed", type=int, default=0)
    p.add_argument("--pretrain-per-seed", action="store_true")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override for every run of every stage"
    )
    p.add_argument(
        "--pretrain-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override for the stage-1 runs only, e.g. data.init_args.crop_size=32 (cheaper pretraining)",
    )
    p.add_argument(
        "--start",
        default=None,
        metavar="CKPT",
        help="a self-supervised start: student init and invariant stage 1 = CKPT, distinctive stage 1 "
        "continues from it (see the module docstring)",
    )
    p.add_argument("--out-dir", default=str(HERE / "results"))
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def fit_and_save(spec: dict, ckpt: Path) -> float:
    """Fit one stage through the CLI (the harness's arguments) and save its checkpoint; seconds."""
    import logging
    import warnings

    from ssvar.cli import run_cli

    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    Path(spec["run_dir"]).mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    argv, sys.argv = sys.argv, sys.argv[:1]
    try:
        cli = run_cli(LE.cli_args(spec), run=False)
    finally:
        sys.argv = argv
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    if int(cli.trainer.global_step) != spec["max_steps"]:
        raise RuntimeError(f"{spec['run_dir']}: {cli.trainer.global_step} steps, not {spec['max_steps']}")
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    cli.trainer.save_checkpoint(str(ckpt))
    return round(time.perf_counter() - t0, 2)


def main(argv=None) -> dict:
    args = parse_args(argv)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    runs_dir = Path("runs") / "label_efficiency" / args.name
    stages_dir = runs_dir / "stages"
    base = LE.strip_model(args.config, runs_dir / "base_config.yaml")
    costs_path = stages_dir / "costs.json"
    costs = json.loads(costs_path.read_text()) if costs_path.exists() else {}

    def stage(key: str, method_config: Path, seed: int, k: int, steps: int, sets: list[str]) -> str:
        ckpt = stages_dir / f"{key}.ckpt"
        if not ckpt.exists():
            spec = {
                "config": LE._rel(args.config),
                "method_config": LE._rel(method_config),
                "config_path": str(base.resolve()),
                "method_config_path": str(method_config),
                "seed": seed,
                "labels_per_class": k,
                "max_steps": steps,
                "sets": list(args.set) + sets,
                "run_dir": str(stages_dir / key),
            }
            costs[key] = fit_and_save(spec, ckpt)
            costs_path.write_text(json.dumps(costs, indent=1))
            print(f"{key}: {costs[key]:.0f} s", flush=True)
        return str(ckpt)  # relative to the repository root: no machine paths in the results

    json_path = out_dir / f"label_efficiency_{args.name}.json"
    data = json.loads(json_path.read_text()) if json_path.exists() else {"name": args.name, "runs": []}
    # Paths do not enter the settings id; the stage lengths do.
    stage_sets = [
        f"pretrain_steps={args.pretrain_steps}",
        f"finetune_steps={args.finetune_steps}",
        f"pretrain_per_seed={args.pretrain_per_seed}",
        *(f"pretrain:{s}" for s in args.pretrain_set),
    ]
    if args.start:
        stage_sets.append("stage1_from_start=true")
    sid = LE._settings_id(str(base), str(DISTILL), args.max_steps, list(args.set) + stage_sets)
    plan_keys = set()
    for k in args.labels_per_class:
        for seed in args.seeds:
            pseed = seed if args.pretrain_per_seed else args.pretrain_seed
            pre = {}
            for v, (ic, ll, gl) in VARIANTS.items():
                if args.start and v in ("inv", "tclr"):
                    pre[v] = args.start
                    continue
                from_start = [f"model.init_args.init_backbone_from={args.start}"] if args.start else []
                pre[v] = stage(
                    f"pretrain_{v}_s{pseed}" + ("_from_start" if args.start else ""),
                    PRETRAIN,
                    pseed,
                    args.labels_per_class[0],
                    args.pretrain_steps,
                    [
                        *args.pretrain_set,
                        "data.init_args.labeled_in_unlabeled=true",  # the whole training pool, no labels
                        f"model.init_args.instance_weight={ic}",
                        f"model.init_args.local_local_weight={ll}",
                        f"model.init_args.global_local_weight={gl}",
                        *from_start,
                    ],
                )
            ft = {
                v: stage(
                    f"finetune_{v}_k{k}_s{seed}",
                    FINETUNE,
                    seed,
                    k,
                    args.finetune_steps,
                    [f"model.init_args.init_backbone_from={pre[v]}"],
                )
                for v in ("inv", "dist")
            }
            key = ("timebalance", k, seed, sid)
            plan_keys.add(key)
            if key in {LE._run_key(r) for r in data["runs"]}:
                continue
            spec = {
                "method": "timebalance",
                "method_class": "TimeBalance",
                "method_config": LE._rel(DISTILL),
                "config": LE._rel(args.config),
                "method_config_path": str(DISTILL),
                "config_path": str(base.resolve()),
                "labels_per_class": k,
                "seed": seed,
                "max_steps": args.max_steps,
                "sets": list(args.set)
                + [
                    f"model.init_args.init_backbone_from={pre['tclr']}",
                    f"model.init_args.invariant_teacher={ft['inv']}",
                    f"model.init_args.distinctive_teacher={ft['dist']}",
                ],
                "settings_id": sid,
                "run_dir": str(runs_dir / f"timebalance_k{k}_s{seed}"),
            }
            rec = LE.run_one(spec)
            used = [
                f"pretrain_{v}_s{pseed}" + ("_from_start" if args.start else "")
                for v in VARIANTS
                if not (args.start and v in ("inv", "tclr"))
            ] + [f"finetune_{v}_k{k}_s{seed}" for v in ("inv", "dist")]
            rec["stage_costs"] = {u: costs.get(u) for u in used}
            rec["stage_settings"] = stage_sets
            data["runs"] = [r for r in data["runs"] if LE._run_key(r) != key] + [rec]
            data.setdefault("commands", [])
            cmd = LE._command(argv).replace("label_efficiency.py", Path(__file__).name, 1)
            if cmd not in data["commands"]:
                data["commands"].append(cmd)
            data.update(
                config=LE._rel(args.config),
                sets=list(args.set),
                method_configs={"timebalance": LE._rel(DISTILL) + " + stages: " + ", ".join(stage_sets)},
            )
            data["machine"] = LE._machine()
            data.setdefault("loadavg", LE._loadavg())
            json_path.write_text(json.dumps(data, indent=1))
            print(
                f"timebalance k={k} seed={seed}: top-1 {100 * rec['acc1']:.1f}, mean class "
                f"{100 * rec['mean_class_acc']:.1f}, "
                f"stage 3 {rec['wall_s']:.0f} s",
                flush=True,
            )
    shown = dict(data, runs=[r for r in data["runs"] if LE._run_key(r) in plan_keys])
    outs = LE.write_outputs(shown, out_dir, None)
    print(outs["markdown"])
    print("stage costs (s):", json.dumps(costs, indent=1))
    return outs


if __name__ == "__main__":
    main()
