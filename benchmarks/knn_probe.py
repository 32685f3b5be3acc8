"""Did self-supervised pretraining learn anything? Frozen-feature probes against random features.

For each backbone (``NAME=CHECKPOINT`` with ``--ckpt``; ``random`` is always included: the same
architecture at its seeded random initialisation), the frozen backbone embeds

* the labelled videos (``--labels-per-class`` K per class, drawn with each ``--seeds`` seed),
* the validation videos (the data module's ``val_fraction`` split: choose settings here),
* the test videos (report once, for a configuration chosen on validation),

with the data module's evaluation views (clips x crops averaged), and two probes classify the
validation and test videos from the K labelled ones: cosine 1-NN and a logistic-regression
linear probe on L2-normalised features (scikit-learn, ``C=1``). No label is used to train the
backbone. Output: a Markdown table on stdout and, with ``--out``, a JSON of every figure.

    python benchmarks/knn_probe.py --config examples/configs/pretrain_tiny3d_synthetic.yaml \\
        --ckpt clip_contrastive=runs/pretrain_synthetic/lightning_logs/version_0/checkpoints/last.ckpt \\
        --labels-per-class 2 4 10 --seeds 0 1 2 --out benchmarks/results/knn_probe_synthetic.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(REPO) not in sys.path[:1]:
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402


def _features(model, dm, index) -> tuple[torch.Tensor, torch.Tensor]:
    from ssvar.callbacks import extract_features

    loader = dm._eval_loader(index, dm.test_clips, dm.test_crops)
    feats, labels = extract_features(model, loader)
    return torch.nn.functional.normalize(feats, dim=1), labels


def probe(train_x, train_y, x, y) -> dict[str, float]:
    """Cosine 1-NN and logistic-regression accuracy (%) of ``x`` from ``(train_x, train_y)``."""
    from sklearn.linear_model import LogisticRegression

    nn1 = train_y[(x @ train_x.T).argmax(1)]
    lin = LogisticRegression(C=1.0, max_iter=2000).fit(train_x.numpy(), train_y.numpy())
    return {
        "knn1": 100.0 * float((nn1 == y).float().mean()),
        "linear": 100.0 * float((torch.as_tensor(lin.predict(x.numpy())) == y).float().mean()),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, help="a config with the model (backbone) and data module")
    p.add_argument("--ckpt", nargs="*", default=[], help="NAME=CHECKPOINT of pretrained backbones")
    p.add_argument("--labels-per-class", nargs="+", type=int, default=[2, 4, 10])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="labelled draws")
    p.add_argument("--val-fraction", type=float, default=0.2, help="validation split of the training videos")
    p.add_argument("--init-seed", type=int, default=0, help="seed of the random-feature baseline")
    p.add_argument("--set", nargs="*", default=[], help="extra CLI overrides KEY=VALUE")
    p.add_argument("--out", help="JSON output")
    args = p.parse_args(argv)
    torch.set_num_threads(1)

    import lightning as L

    from ssvar.cli import run_cli
    from ssvar.components.weights import load_weights

    backbones = {"random": None}
    for spec in args.ckpt:
        name, _, path = spec.partition("=")
        if not path:
            p.error(f"--ckpt wants NAME=CHECKPOINT, got {spec!r}")
        backbones[name] = path

    rows = []
    for lpc in args.labels_per_class:
        for seed in args.seeds:
            overrides = [f"--data.init_args.labeled_per_class={lpc}", f"--data.init_args.seed={seed}",
                         f"--data.init_args.val_fraction={args.val_fraction}", "--data.init_args.num_workers=0",
                         "--data.init_args.labeled_in_unlabeled=false", "--test_after_fit=false"]
            overrides += [f"--{kv}" if not kv.startswith("--") else kv for kv in args.set]
            for name, path in backbones.items():
                L.seed_everything(args.init_seed, verbose=False)
                cli = run_cli(["--config", args.config, *overrides], run=False)
                model, dm = cli.model.eval(), cli.datamodule
                if path is not None:
                    load_weights(model.backbone, path, "backbone.")
                sp = dm.splits
                tx, ty = _features(model, dm, sp.labeled)
                row = {"backbone": name, "labels_per_class": lpc, "seed": seed}
                for split, index in (("val", sp.val), ("test", sp.test)):
                    x, y = _features(model, dm, index)
                    for k, v in probe(tx, ty, x, y).items():
                        row[f"{split}_{k}"] = v
                rows.append(row)
                print(json.dumps(row), flush=True)

    chance = 100.0 / cli.datamodule.num_classes
    print(
        "\n| backbone | labels/class | val 1-NN | val linear | test 1-NN | test linear |"
        "\n|---|---:|---:|---:|---:|---:|"
    )
    for name in backbones:
        for lpc in args.labels_per_class:
            sel = [r for r in rows if r["backbone"] == name and r["labels_per_class"] == lpc]
            cells = []
            for key in ("val_knn1", "val_linear", "test_knn1", "test_linear"):
                v = [r[key] for r in sel]
                cells.append(f"{statistics.mean(v):.1f} ± {statistics.pstdev(v) if len(v) > 1 else 0:.1f}")
            print(f"| {name} | {lpc} | " + " | ".join(cells) + " |")
    print(f"(chance {chance:.1f} %; mean ± std over labelled draws {args.seeds})")
    if args.out:
        Path(args.out).write_text(
            json.dumps(
                {"config": args.config, "ckpt": args.ckpt, "val_fraction": args.val_fraction, "rows": rows}, indent=1
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
