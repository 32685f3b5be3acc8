"""t-SNE of test-set features: Supervised vs ACL+MTL (the paper's Figure 5, on our data).

Trains each method config exactly as one ``benchmarks/label_efficiency.py`` run does (base config
with its ``model:`` section dropped + a method config, ``--seed_everything S --data.init_args.seed
S --data.init_args.labeled_per_class K --trainer.max_steps N``), then embeds the pooled backbone
features of every test video (averaged over the data module's test views) with
:func:`ssvar.plots.plot_tsne`, side by side, and reports two numbers per method: test top-1 of
the classifier and the leave-one-out 5-nearest-neighbour accuracy of the (L2-normalised)
features, which measures how well the classes separate in feature space.

    python benchmarks/acl_mtl_tsne.py --config examples/configs/demo.yaml \\
        --methods supervised=examples/configs/methods/supervised.yaml acl_mtl=examples/configs/methods/acl_mtl.yaml \\
        --labels-per-class 2 --seed 0 --max-steps 200 --out benchmarks/results/acl_mtl_tsne_synthetic.png
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
for p in (str(REPO), str(HERE)):
    if p not in sys.path:
        sys.path.insert(0, p)

import lightning as L  # noqa: E402


def train_and_embed(base: str, method_config: str, k: int, seed: int, steps: int, sets: list[str], root: str):
    import torch

    from ssvar.cli import run_cli

    args = [
        "fit", "--config", base, "--config", method_config, "--seed_everything", str(seed),
        "--data.init_args.seed", str(seed), "--data.init_args.labeled_per_class", str(k),
        "--trainer.max_steps", str(steps), "--trainer.max_epochs", "-1", "--trainer.enable_checkpointing", "false",
        "--trainer.logger", "false", "--trainer.limit_val_batches", "0", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false", "--trainer.num_sanity_val_steps", "0",
        "--trainer.default_root_dir", root, "--test_after_fit", "false",
    ]
    for s in sets:
        key, _, value = s.partition("=")
        args += [f"--{key}", value]
    argv, sys.argv = sys.argv, sys.argv[:1]  # LightningCLI warns when it sees our own arguments
    try:
        cli = run_cli(args, run=False)
    finally:
        sys.argv = argv
    t0 = time.time()
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    test = cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)[0]
    model, dm = cli.model.eval(), cli.datamodule
    feats, labels = [], []
    with torch.no_grad():
        for batch in dm.test_dataloader():
            batch = model.on_after_batch_transfer(batch, 0)
            feats.append(_embed(model, batch["video"]))
            labels.append(batch["label"])
    acc = next(v for key, v in test.items() if key.startswith("test/acc1"))
    return torch.cat(feats), torch.cat(labels), list(dm.classes), float(acc), time.time() - t0


class SaveTestFeatures(L.Callback):
    """Saves the pooled backbone features of every test video (averaged over its views), the
    labels and the class names to ``<default_root_dir>/test_features.pt`` at the end of testing.

    Add it to a ``label_efficiency.py`` run to get the t-SNE of exactly that run, e.g.
    ``--method-set acl_mtl:trainer.callbacks+=benchmarks.acl_mtl_tsne.SaveTestFeatures``.
    """

    def __init__(self, path: str | None = None):
        self.path = path
        self.rows: list = []
        self.labels: list = []

    def on_test_start(self, trainer, module):
        self.rows, self.labels = [], []

    def on_test_batch_end(self, trainer, module, outputs, batch, batch_idx, dataloader_idx=0):
        import torch

        with torch.no_grad():
            self.rows.append(_embed(module, batch["video"]).cpu())
        self.labels.append(batch["label"].cpu())

    def on_test_end(self, trainer, module):
        import torch

        path = self.path or str(Path(trainer.default_root_dir) / "test_features.pt")
        acc = next((float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/acc1")), float("nan"))
        torch.save({"features": torch.cat(self.rows), "labels": torch.cat(self.labels),
                    "classes": list(module.class_names), "acc1": acc}, path)


def _embed(model, video):
    """Pooled backbone features of normalised clips ``[B, C, T, H, W]`` or ``[B, V, C, T, H, W]``,
    averaged over the V views."""
    v = video if video.dim() == 6 else video[:, None]
    b, n = v.shape[:2]
    return model.backbone(v.flatten(0, 1)).view(b, n, -1).mean(1)


def knn_accuracy(x, y, k: int = 5) -> float:
    """Leave-one-out k-NN accuracy (cosine) of features ``x`` with labels ``y``."""
    import torch
    import torch.nn.functional as F

    z = F.normalize(x.float(), dim=1)
    sim = z @ z.t()
    sim.fill_diagonal_(-2)
    idx = sim.topk(k, dim=1).indices
    votes = torch.nn.functional.one_hot(y[idx], int(y.max()) + 1).sum(1)
    return float((votes.argmax(1) == y).float().mean())


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", help="base config (data + trainer) for --methods")
    p.add_argument(
        "--methods", nargs="*", default=[], metavar="NAME=CONFIG", help="train these and embed their test set"
    )
    p.add_argument(
        "--features",
        nargs="*",
        default=[],
        metavar="NAME=PATH",
        help="test features saved by SaveTestFeatures in a label_efficiency.py run, or by an earlier --methods run",
    )
    p.add_argument(
        "--acc",
        nargs="*",
        default=[],
        metavar="NAME=VALUE",
        help="test top-1 of a --features entry (default: the saved one)",
    )
    p.add_argument("--labels-per-class", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-steps", type=int, default=200)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", default=str(HERE / "results" / "acl_mtl_tsne_synthetic.png"))
    p.add_argument("--runs-dir", default="runs/acl_mtl_tsne")
    args = p.parse_args(argv)

    import matplotlib.pyplot as plt
    from label_efficiency import strip_model

    from ssvar.plots import plot_tsne

    runs = Path(args.runs_dir)
    if args.methods and not args.config:
        p.error("--methods needs --config")
    base = str(strip_model(args.config, runs / "base_config.yaml")) if args.methods else ""
    import torch

    entries = [("train", *m.split("=", 1)) for m in args.methods] + [("load", *f.split("=", 1)) for f in args.features]
    accs = {k: float(v) for k, v in (a.split("=", 1) for a in args.acc)}
    fig, axes = plt.subplots(1, len(entries), figsize=(6.5 * len(entries), 5.5))
    axes = [axes] if len(entries) == 1 else list(axes)
    summary = {}
    for ax, (kind, name, src) in zip(axes, entries):
        if kind == "train":
            x, y, classes, acc, wall = train_and_embed(
                base, src, args.labels_per_class, args.seed, args.max_steps, args.set, str(runs / name)
            )
            # kept, so the figure can be drawn again with --features without training
            (runs / name).mkdir(parents=True, exist_ok=True)
            torch.save({"features": x, "labels": y, "classes": classes, "acc1": acc}, runs / name / "test_features.pt")
        else:
            saved = torch.load(src, weights_only=False)
            x, y, classes, wall = saved["features"], saved["labels"], saved["classes"], 0.0
            acc = accs.get(name, saved.get("acc1", float("nan")))
        knn = knn_accuracy(x, y)
        summary[name] = {
            "source": kind,
            "test_acc1": acc,
            "knn5_acc": knn,
            "test_videos": len(y),
            "wall_s": round(wall, 1),
        }
        plot_tsne(
            x,
            y,
            classes,
            None,
            f"{name}: test top-1 {100 * acc:.1f} %, 5-NN {100 * knn:.1f} %",
            seed=args.seed,
            normalize=True,
            ax=ax,
        )
    fig.suptitle(
        f"t-SNE of test features ({args.labels_per_class} labels/class, seed {args.seed}, {args.max_steps} steps)"
    )
    fig.tight_layout()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120, bbox_inches="tight")
    summary["command"] = "python benchmarks/acl_mtl_tsne.py " + " ".join(sys.argv[1:] if argv is None else argv)
    out.with_suffix(".json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))
    return summary


if __name__ == "__main__":
    main()
