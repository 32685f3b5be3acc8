"""Label efficiency: methods compared at EQUAL steps over labels-per-class and seeds.

Each run composes a base config (data + trainer; its ``model:`` section, if any, is dropped) with
a method config (only a ``model:`` section, e.g. ``examples/configs/methods/fixmatch.yaml``)
through LightningCLI's repeated ``--config``, then sets::

    --seed_everything S  --data.init_args.seed S  --data.init_args.labeled_per_class K
    --trainer.max_steps N  --trainer.max_epochs -1

(the labelled draw, the labelled resampler, initialisation and augmentation follow ``S``; the
test split does not: it comes from the data module's ``split_seed``), switches off
checkpointing, validation, the progress bar and the model summary, fits for exactly ``N``
optimiser steps (every method, so all are compared at equal steps), and tests the final
weights with the data module's multi-view test (``test/acc1_<clips>x<crops>``,
``test/mean_class_acc_<clips>x<crops>``). Runs go in-process by default (``--isolate``: one
subprocess per run). Training logs (CSV) go to ``--runs-dir``; the mean over the last quarter
of training of ``train/pl_mask_rate``, ``train/pl_acc``, ... is kept with each run.
With ``--set data.init_args.val_fraction=0.1`` each run is also validated (final weights) on a
split of its own, kept as ``val`` in the JSON: choose settings there, never on test.
``--set KEY=VALUE`` overrides every run; variants of one method config are named
``NAME=CONFIG`` and given their own overrides with ``--method-set NAME:KEY=VALUE``.

Outputs (``--out-dir``, default ``benchmarks/results``): ``label_efficiency_<name>.json`` (raw
per-run results; runs already there with the same settings are skipped, so an interrupted
benchmark resumes), ``.md`` (mean +- std over seeds, best per column in bold, per-seed values,
pseudo-label diagnostics) and ``.png`` (accuracy vs labels per class, one line per method with
std error bars; grouped bars for a single label count). ``--write`` also puts the table into
the "Label efficiency" section of ``benchmarks/RESULTS.md`` (only its own sub-block).

    python benchmarks/label_efficiency.py --name synthetic --config examples/configs/demo.yaml \\
        --methods examples/configs/methods/supervised.yaml examples/configs/methods/fixmatch.yaml \\
        examples/configs/methods/mean_teacher.yaml --labels-per-class 1 2 --seeds 0 1 2 --max-steps 300
    python benchmarks/label_efficiency.py --name synthetic --from-json   # tables/plot again
    # a variant: Mean Teacher with another consistency weight, next to the shipped one
    ... --methods examples/configs/methods/mean_teacher.yaml mt_w10=examples/configs/methods/mean_teacher.yaml \
        --method-set mt_w10:model.init_args.consistency_weight=10
    # every method from the same self-supervised start (examples/configs/pretrain_tiny3d_synthetic.yaml)
    ... --init-backbone-from runs/pretrain_synthetic/lightning_logs/version_0/checkpoints/last.ckpt
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
# Measure this checkout's ssvar, whatever an editable install elsewhere points to.
if str(REPO) not in sys.path[:1]:
    sys.path.insert(0, str(REPO))
RESULTS = HERE / "RESULTS.md"
SECTION = "## Label efficiency"
BEGIN = "<!-- label-efficiency:start -->"
END = "<!-- label-efficiency:end -->"
METRICS = ("acc1", "mean_class_acc")
METRIC_TITLES = {"acc1": "top-1", "mean_class_acc": "mean class acc"}
# Training-time diagnostics averaged over the last quarter of the steps (when logged).
TRAIN_STATS = (
    "train/acc1_labeled",
    "train/pl_mask_rate",
    "train/pl_acc",
    "train/pl_acc_confident",
    "train/pl_confidence",
    "train/loss_supervised",
    "train/loss_unsupervised",
    "train/loss_consistency",
    "train/loss_acl",
    "train/loss_mtl_calibration",
    "train/loss_mtl_align",
    "train/acl_reliability",
)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--name", required=True, help="experiment name: label_efficiency_<name>.{json,md,png}")
    p.add_argument("--config", help="base config: data + trainer (its model section is overridden)")
    p.add_argument(
        "--methods", nargs="+", metavar="[NAME=]CONFIG",
        help="method configs (YAML with only a model: section); NAME= names a variant (default: the file's stem)",
    )
    p.add_argument("--labels-per-class", nargs="+", type=int, help="labelled videos per class")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--max-steps", type=int, help="optimiser steps of every run")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="extra CLI override for every run, e.g. data.init_args.batch_size=8 (repeatable)",
    )
    p.add_argument(
        "--method-set", action="append", default=[], metavar="NAME:KEY=VALUE",
        help="override for one method only, e.g. mt99:model.init_args.teacher.init_args.decay=0.99 (repeatable)",
    )
    p.add_argument(
        "--init-backbone-from", metavar="CKPT",
        help="start every run (Supervised too) from this pretrained backbone, e.g. a ClipContrastive "
        "checkpoint (sets model.init_args.init_backbone_from; two-network methods: the primary network)",
    )
    p.add_argument("--out-dir", default=str(HERE / "results"), help="where the .json/.md/.png go")
    p.add_argument("--runs-dir", default=None, help="training logs (default runs/label_efficiency/<name>)")
    p.add_argument("--from-json", action="store_true", help="only regenerate the .md/.png from the JSON")
    p.add_argument("--rerun", action="store_true", help="run again even when the JSON has the run")
    p.add_argument("--isolate", action="store_true", help="one subprocess per run instead of in-process")
    p.add_argument("--write", action="store_true", help=f"also update this experiment's block in {RESULTS.name}")
    p.add_argument("--results", default=str(RESULTS), help=argparse.SUPPRESS)
    p.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    p.add_argument("--_worker", nargs=2, metavar=("SPEC", "OUT"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if not args.from_json and not args._worker:
        missing = [f for f in ("config", "methods", "labels_per_class", "max_steps") if getattr(args, f) in (None, [])]
        if missing:
            p.error(
                "the following arguments are required unless --from-json: "
                + ", ".join("--" + m.replace("_", "-") for m in missing)
            )
        if args.max_steps < 1:
            p.error("--max-steps must be >= 1")
    if args.init_backbone_from:
        if not os.path.isfile(args.init_backbone_from):
            p.error(f"--init-backbone-from: no such file: {args.init_backbone_from}")
        args.set.append(f"model.init_args.init_backbone_from={args.init_backbone_from}")
    for s in args.set:
        if "=" not in s:
            p.error(f"--set needs KEY=VALUE, got {s!r}")
    for s in args.method_set:
        if ":" not in s or "=" not in s.split(":", 1)[1]:
            p.error(f"--method-set needs NAME:KEY=VALUE, got {s!r}")
    return args


# -- small helpers -----------------------------------------------------------------------------
def _rel(path: str | Path) -> str:
    """``path`` relative to the working directory when below it, else its name (no machine paths
    in the outputs); for display only."""
    p = Path(path)
    try:
        return os.path.relpath(p.resolve(), Path.cwd()) if p.resolve().is_relative_to(Path.cwd()) else p.name
    except (OSError, ValueError):
        return str(path)


def _sha(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]


def _method_class(path: str) -> str:
    from ssvar.config_files import load_config

    cfg = load_config(path)  # fragments (__base__) merged in
    model = cfg.get("model")
    if not isinstance(model, dict) or "class_path" not in model:
        raise SystemExit(f"{path}: a method config needs a model: section with a class_path")
    extra = sorted(k for k in cfg if k != "model")
    if extra:
        raise SystemExit(f"{path}: a method config holds only model:, found also {extra}")
    return str(model["class_path"]).rsplit(".", 1)[-1]


def _machine() -> dict:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        import lightning

        lv = lightning.__version__
    except Exception:
        lv = "?"
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        commit = (commit + ("+local changes" if dirty else "")) or "?"
    except (OSError, subprocess.SubprocessError):
        commit = "?"
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": lv,
        "ssvar_commit": commit,
    }


def _loadavg() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def _command(argv) -> str:
    args = list(sys.argv[1:] if argv is None else argv)
    return "python benchmarks/label_efficiency.py" + ("" if not args else " " + shlex.join(args))


def _run_key(r: dict) -> tuple:
    return (r["method"], r["labels_per_class"], r["seed"], r["settings_id"])


def _settings_id(config: str, method_config: str, max_steps: int, sets: list[str]) -> str:
    """What must match for a stored run to be reused: the contents of both configs (the base
    without its model section), the steps and the overrides (paths themselves do not matter)."""
    blob = json.dumps([_sha(config), _sha(method_config), max_steps, sorted(sets)])
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def strip_model(config: str, out: Path) -> Path:
    """The base config without its ``model:`` section (written to ``out``): the method config
    alone says the model, whatever the base's model was (LightningCLI would otherwise carry the
    base model's arguments over, or reject those the method does not take). Relative paths in
    the config are relative to the working directory, so the copy can live elsewhere."""
    import yaml

    from ssvar.config_files import load_config

    cfg = load_config(config)  # fragments (__base__) merged in: the copy needs none of them
    cfg.pop("model", None)
    out.parent.mkdir(parents=True, exist_ok=True)
    text = "# base config without its model section (written by benchmarks/label_efficiency.py)\n"
    out.write_text(text + yaml.safe_dump(cfg, sort_keys=False))
    return out


# -- one run -----------------------------------------------------------------------------------
def _train_stats_callback():
    """A Lightning callback that records the logged training diagnostics at every step."""
    import lightning as L

    class TrainStats(L.Callback):
        def __init__(self):
            self.rows: list[dict] = []

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            m = trainer.callback_metrics
            self.rows.append({k: float(m[k]) for k in TRAIN_STATS if k in m})

        def summary(self) -> dict:
            """Means over the last quarter of the steps."""
            tail = self.rows[-max(1, len(self.rows) // 4):]
            out = {}
            for k in TRAIN_STATS:
                vals = [r[k] for r in tail if k in r]
                if vals:
                    out[k.split("/", 1)[1]] = sum(vals) / len(vals)
            return out

    return TrainStats()


def cli_args(spec: dict) -> list[str]:
    """The LightningCLI arguments of one run (also what ``ssvar fit`` would take)."""
    logger = {
        "class_path": "lightning.pytorch.loggers.CSVLogger",
        "init_args": {"save_dir": spec["run_dir"], "name": "", "version": ""},
    }
    args = [
        "--config", spec.get("config_path", spec["config"]),
        "--config", spec.get("method_config_path", spec["method_config"]),
        "--seed_everything", str(spec["seed"]),
        "--data.init_args.seed", str(spec["seed"]),
        "--data.init_args.labeled_per_class", str(spec["labels_per_class"]),
        "--trainer.max_steps", str(spec["max_steps"]),
        "--trainer.max_epochs", "-1",
        "--trainer.enable_checkpointing", "false",
        "--trainer.limit_val_batches", "0",
        "--trainer.num_sanity_val_steps", "0",
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--trainer.default_root_dir", spec["run_dir"],
        "--trainer.logger", json.dumps(logger),
        "--test_after_fit", "false",
    ]
    for s in spec["sets"]:
        k, v = s.split("=", 1)
        args += ["--" + k.lstrip("-"), v]
    return args


def run_one(spec: dict) -> dict:
    """Fit for ``max_steps`` then test the final weights; returns the run's record."""
    import gc
    import logging
    import warnings

    import ssvar
    from ssvar.cli import run_cli

    if Path(ssvar.__file__).resolve().parents[1] != REPO:
        warnings.warn(f"ssvar is imported from {ssvar.__file__}, not from this checkout ({REPO})", stacklevel=2)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    logging.getLogger("lightning.fabric").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*number of training batches.*")
    warnings.filterwarnings("ignore", message=".*`max_epochs` was not set.*")
    warnings.filterwarnings("ignore", message=".*treespec.*")
    Path(spec["run_dir"]).mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    argv, sys.argv = sys.argv, sys.argv[:1]  # LightningCLI warns when it sees our own arguments
    try:
        cli = run_cli(cli_args(spec), run=False)
    finally:
        sys.argv = argv
    stats = _train_stats_callback()
    cli.trainer.callbacks.append(stats)
    diverged = None
    try:
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    except FloatingPointError as e:  # stop_on_nonfinite_loss: a diverged run is a result, recorded as such
        diverged = str(e)
        print(f"{spec['method']} k={spec['labels_per_class']} seed={spec['seed']} diverged: {e}", flush=True)
    t_fit = time.perf_counter() - t0
    steps = int(cli.trainer.global_step)
    if steps != spec["max_steps"] and diverged is None:
        raise RuntimeError(f"{spec['method']} ran {steps} steps, not {spec['max_steps']}")
    val = {}
    if not cli.datamodule.val_is_test:
        # A validation split of its own (data.init_args.val_fraction / validation_list): the final weights'
        # validation accuracy is what settings are chosen on; test is reported, never tuned on.
        cli.trainer.limit_val_batches = 1.0
        out = cli.trainer.validate(cli.model, datamodule=cli.datamodule, verbose=False)
        val = {k: float(v) for k, v in (out[0] if out else {}).items()}
    t1 = time.perf_counter()
    out = cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)
    t_test = time.perf_counter() - t1
    test = {k: float(v) for k, v in (out[0] if out else {}).items()}
    record = dict(
        {k: spec[k] for k in ("method", "method_class", "method_config", "config", "labels_per_class", "seed",
                              "max_steps", "sets", "settings_id")},
        steps=steps,
        num_classes=int(cli.datamodule.num_classes),
        test=test,
        val=val,
        train=stats.summary(),
        fit_s=round(t_fit, 2),
        test_s=round(t_test, 2),
        wall_s=round(t_fit + t_test, 2),
        log_dir=_rel(spec["run_dir"]),
        **({"diverged": diverged} if diverged else {}),
        date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    )
    for m in METRICS:
        keys = sorted(k for k in test if k.startswith(f"test/{m}_"))
        if not keys:
            raise RuntimeError(f"no test/{m}_* metric in {sorted(test)}")
        record[m] = test[keys[0]]
        record["views"] = keys[0].rsplit("_", 1)[1]
    del cli, stats
    gc.collect()
    return record


def run_isolated(spec: dict) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        sp, out = Path(tmp) / "spec.json", Path(tmp) / "out.json"
        sp.write_text(json.dumps(spec))
        subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--name", "worker", "--_worker", str(sp), str(out)],
            check=True,
        )
        return json.loads(out.read_text())


# -- aggregation and outputs -------------------------------------------------------------------
def _mean_std(xs: list[float]) -> tuple[float, float]:
    if not xs:
        return float("nan"), float("nan")
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def aggregate(runs: list[dict]) -> dict:
    """{method: {"name", "by_k": {k: {metric: [values by seed]}}, "wall_s": [...]}} in run order."""
    agg: dict = {}
    # A method name run under different settings (a config edited between runs) is split, not mixed.
    ids: dict[str, set] = {}
    for r in runs:
        ids.setdefault(r["method"], set()).add(r["settings_id"])
    for r in runs:
        key = r["method"] if len(ids[r["method"]]) == 1 else f"{r['method']}@{r['settings_id'][:6]}"
        a = agg.setdefault(key, {"class": r["method_class"], "by_k": {}, "wall_s": [], "seeds": {}})
        slot = a["by_k"].setdefault(r["labels_per_class"], {m: [] for m in METRICS} | {"seeds": [], "train": []})
        for m in METRICS:
            slot[m].append(r[m])
        slot["seeds"].append(r["seed"])
        slot["train"].append(r.get("train", {}))
        a["wall_s"].append(r["wall_s"])
    return agg


def _display_names(agg: dict) -> dict:
    classes = [a["class"] for a in agg.values()]
    return {m: (a["class"] if classes.count(a["class"]) == 1 else f"{a['class']} ({m})") for m, a in agg.items()}


def render_markdown(data: dict, png_name: str | None) -> str:
    runs = data["runs"]
    agg = aggregate(runs)
    names = _display_names(agg)
    ks = sorted({r["labels_per_class"] for r in runs})
    seeds = sorted({r["seed"] for r in runs})
    steps = sorted({r["steps"] for r in runs})
    views = sorted({r.get("views", "?") for r in runs})
    ncls = {r.get("num_classes") for r in runs} - {None}
    m0 = data.get("machine", {})
    lines = [f"### {data['name']}", ""]
    for c in data.get("commands", []):
        lines.append(f"- Command: `{c}`")
    dates = sorted(r["date"] for r in runs)
    lines += [
        f"- Date: {dates[0]} to {dates[-1]}"
        if dates and dates[0] != dates[-1]
        else f"- Date: {dates[0] if dates else '?'}",
        f"- Machine: {m0.get('cpu', '?')}, {m0.get('cpu_count', '?')} CPUs (torch threads "
        f"{m0.get('torch_threads', '?')}); "
        f"Python {m0.get('python', '?')}, torch {m0.get('torch', '?')}, lightning {m0.get('lightning', '?')}, "
        f"ssvar {m0.get('ssvar_commit', '?')}; "
        f"1-min load average at the start of the runs {data.get('loadavg', '?')}",
        f"- Base config: `{data.get('config', '?')}`; overrides: "
        + (", ".join(f"`{s}`" for s in data.get("sets", [])) or "none"),
        "- Methods: " + ", ".join(f"{names[m]} `{data.get('method_configs', {}).get(m, m)}`" for m in agg),
        f"- Steps: {', '.join(map(str, steps))} optimiser steps for every run (equal steps for all methods); "
        f"seeds {', '.join(map(str, seeds))}; test: multi-view `{', '.join(views)}` (clips x crops) on the final "
        "weights",
        *([f"- Chance level: {100 / next(iter(ncls)):.1f} % ({next(iter(ncls))} classes)"] if len(ncls) == 1 else []),
        "- Cells: mean ± std (sample std over seeds) in %; **bold**: best mean in the column. "
        "Wall: fit + test seconds per run, mean over its runs.",
        "",
    ]
    header = ["method"]
    for k in ks:
        for m in METRICS:
            header.append(f"{k}/class {METRIC_TITLES[m]}")
    header.append("wall s/run")
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|---|" + "---:|" * (len(header) - 1))
    best = {}
    for k in ks:
        for m in METRICS:
            means = [statistics.fmean(a["by_k"][k][m]) for a in agg.values() if k in a["by_k"] and a["by_k"][k][m]]
            best[(k, m)] = max(means) if means else None
    for meth, a in agg.items():
        row = [names[meth]]
        for k in ks:
            for m in METRICS:
                vals = a["by_k"].get(k, {}).get(m, [])
                if not vals:
                    row.append("–")
                    continue
                mu, sd = _mean_std(vals)
                cell = f"{100 * mu:.1f} ± {100 * sd:.1f}" + ("" if len(vals) == len(seeds) else f" (n={len(vals)})")
                row.append(f"**{cell}**" if best[(k, m)] is not None and abs(mu - best[(k, m)]) < 1e-12 else cell)
        row.append(f"{statistics.fmean(a['wall_s']):.0f}")
        lines.append("| " + " | ".join(row) + " |")
    # Paired by seed: a seed draws the same labelled videos for every method.
    base = next((m for m, a in agg.items() if a["class"] == "Supervised"), None)
    if base is not None and len(agg) > 1:
        lines += ["", f"Paired difference to {names[base]} (same seed = same labelled videos), top-1 points: "
                  "mean ± std over seeds [seeds better / worse]:", "",
                  "| method | " + " | ".join(f"{k}/class" for k in ks) + " |", "|---|" + "---:|" * len(ks)]
        for meth, a in agg.items():
            if meth == base:
                continue
            cells = []
            for k in ks:
                mine, ref = a["by_k"].get(k), agg[base]["by_k"].get(k)
                if not mine or not ref:
                    cells.append("–")
                    continue
                ref_by_seed = dict(zip(ref["seeds"], ref["acc1"]))
                diffs = [100 * (v - ref_by_seed[s]) for s, v in zip(mine["seeds"], mine["acc1"]) if s in ref_by_seed]
                if not diffs:
                    cells.append("–")
                    continue
                mu, sd = _mean_std(diffs)
                better, worse = sum(d > 1e-9 for d in diffs), sum(d < -1e-9 for d in diffs)
                cells.append(f"{mu:+.1f} ± {sd:.1f} [{better}/{worse}]")
            lines.append(f"| {names[meth]} | " + " | ".join(cells) + " |")
    # Per-seed values, so nobody has to trust the mean.
    lines += [
        "",
        "Per seed (top-1 / mean class acc, %):",
        "",
        "| method | labels/class | " + " | ".join(f"seed {s}" for s in seeds) + " |",
        "|---|---:|" + "---:|" * len(seeds),
    ]
    for meth, a in agg.items():
        for k in ks:
            slot = a["by_k"].get(k)
            if not slot:
                continue
            by_seed = {s: (slot["acc1"][i], slot["mean_class_acc"][i]) for i, s in enumerate(slot["seeds"])}
            cells = [f"{100 * by_seed[s][0]:.1f} / {100 * by_seed[s][1]:.1f}" if s in by_seed else "–" for s in seeds]
            lines.append(f"| {names[meth]} | {k} | " + " | ".join(cells) + " |")
    diverged = [r for r in runs if r.get("diverged")]
    if diverged:
        head = "Diverged (stopped at a non-finite training loss; their final weights were tested as they were):"
        lines += ["", head, ""]
        lines += [f"- {r['method']}, {r['labels_per_class']}/class, seed {r['seed']}: {r['diverged']}"
                  for r in diverged]
    # Pseudo-label diagnostics (mean over seeds of the last-quarter means).
    diag_keys = ["pl_mask_rate", "pl_acc", "pl_acc_confident", "acc1_labeled"]
    rows = []
    for meth, a in agg.items():
        for k in ks:
            slot = a["by_k"].get(k)
            if not slot:
                continue
            cells = []
            for dk in diag_keys:
                vals = [t[dk] for t in slot["train"] if dk in t]
                cells.append(f"{100 * statistics.fmean(vals):.0f}" if vals else "–")
            if any(c != "–" for c in cells[:3]):
                rows.append(f"| {names[meth]} | {k} | " + " | ".join(cells) + " |")
    if rows:
        lines += [
            "",
            "Training diagnostics, last quarter of the steps, mean over seeds (%): `pl_mask_rate` share of unlabelled "
            "clips above the threshold (Mean Teacher: its monitoring threshold), `pl_acc` accuracy of the "
            "(teacher's) weak-view argmax against the hidden labels, `pl_acc_confident` the same on the confident "
            "ones, `acc1_labeled` training accuracy on the labelled batch.",
            "",
            "| method | labels/class | " + " | ".join(diag_keys) + " |",
            "|---|---:|" + "---:|" * len(diag_keys),
            *rows,
        ]
    if png_name:
        lines += ["", f"![label efficiency, {data['name']}]({png_name})"]
    return "\n".join(lines) + "\n"


def render_png(data: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import numpy as np

    agg = aggregate(data["runs"])
    names = _display_names(agg)
    ks = sorted({r["labels_per_class"] for r in data["runs"]})
    steps = sorted({r["steps"] for r in data["runs"]})
    fig, axes = plt.subplots(1, len(METRICS), figsize=(5.2 * len(METRICS), 4))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, m in zip(np.atleast_1d(axes), METRICS):
        n = len(agg)
        for i, (meth, a) in enumerate(agg.items()):
            c = colours[i % len(colours)]
            xs = [k for k in ks if k in a["by_k"]]
            mus = [100 * _mean_std(a["by_k"][k][m])[0] for k in xs]
            sds = [100 * _mean_std(a["by_k"][k][m])[1] for k in xs]
            if len(ks) == 1:
                ax.bar(i, mus[0], yerr=sds[0], color=c, capsize=5, alpha=0.8, label=names[meth])
                pts = [100 * v for v in a["by_k"][ks[0]][m]]
                ax.scatter([i] * len(pts), pts, color="k", s=12, zorder=3)
            else:
                off = (i - (n - 1) / 2) * 0.04 * (max(ks) - min(ks) or 1)
                ax.errorbar([x + off for x in xs], mus, yerr=sds, marker="o", capsize=4, color=c, label=names[meth])
                for x in xs:
                    pts = [100 * v for v in a["by_k"][x][m]]
                    ax.scatter([x + off] * len(pts), pts, color=c, s=10, alpha=0.4)
        if len(ks) == 1:
            ax.set_xticks(range(n), [names[k] for k in agg], rotation=25, ha="right", fontsize=8)
            ax.set_xlabel(f"{ks[0]} labelled videos per class")
            ax.set_ylim(0, 100)
        else:
            ax.set_xticks(ks)
            ax.set_xlabel("labelled videos per class")
        ncls = {r.get("num_classes") for r in data["runs"]} - {None}
        if len(ncls) == 1:
            ax.axhline(100 / ncls.pop(), color="grey", ls="--", lw=1, label="chance")
        ax.set_ylabel(f"test {METRIC_TITLES[m]} (%)")
        ax.set_title(f"{METRIC_TITLES[m]}, mean ± std over seeds")
        ax.grid(alpha=0.3)
        if len(ks) == 1:  # the bars are named on the axis; the legend only says what the line is
            handles = [h for h in ax.get_legend_handles_labels()[0] if h.get_label() == "chance"]
            if handles:
                ax.legend(handles=handles, fontsize=8, loc="upper right")
        else:
            ax.legend(fontsize=8)
    fig.suptitle(f"label efficiency: {data['name']} ({'/'.join(map(str, steps))} steps per run)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_results(path: Path, name: str, text: str) -> None:
    """Replace this experiment's sub-block inside the section (the section and any hand-written
    text around the sub-blocks are kept; other sections of the file too)."""
    sub_b, sub_e = f"<!-- label-efficiency:{name}:start -->", f"<!-- label-efficiency:{name}:end -->"
    block = f"{sub_b}\n{text.rstrip()}\n{sub_e}"
    old = path.read_text() if path.exists() else "# Benchmark results\n"
    if BEGIN not in old or END not in old:
        old = old.rstrip("\n") + f"\n\n{SECTION}\n\n{BEGIN}\n{END}\n"
    head, rest = old.split(BEGIN, 1)
    inner, tail = rest.split(END, 1)
    if sub_b in inner and sub_e in inner:
        a, b = inner.split(sub_b, 1)
        inner = a + block + b.split(sub_e, 1)[1]
    else:
        inner = inner.rstrip("\n") + "\n" + block + "\n"
    path.write_text(head + BEGIN + inner + END + tail)


def write_outputs(data: dict, out_dir: Path, results: Path | None) -> dict:
    stem = f"label_efficiency_{data['name']}"
    png = out_dir / f"{stem}.png"
    if data["runs"]:
        render_png(data, png)
    md = render_markdown(data, png.name if data["runs"] else None)
    (out_dir / f"{stem}.md").write_text(md)
    if results is not None:
        rel_png = os.path.relpath(png, results.parent)
        write_results(results, data["name"], md.replace(f"]({png.name})", f"]({rel_png})"))
    return {"json": out_dir / f"{stem}.json", "md": out_dir / f"{stem}.md", "png": png, "markdown": md}


# -- main --------------------------------------------------------------------------------------
def main(argv=None) -> dict:
    """Run what is missing, then write the JSON, table and plot; returns the data and paths."""
    args = parse_args(argv)
    if args._worker:
        spec = json.loads(Path(args._worker[0]).read_text())
        Path(args._worker[1]).write_text(json.dumps(run_one(spec)))
        return {}
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / f"label_efficiency_{args.name}.json"
    data = json.loads(json_path.read_text()) if json_path.exists() else {"name": args.name, "runs": []}
    data["name"] = args.name
    results = Path(args.results) if args.write else None
    if args.from_json:
        if not data["runs"]:
            raise SystemExit(f"{json_path} holds no runs")
        return write_outputs(data, out_dir, results) | {"data": data}

    for f in [
        args.config,
        *(m.partition("=")[2] if "=" in m and "/" not in m.partition("=")[0] else m for m in args.methods),
    ]:
        if not Path(f).is_file():
            raise SystemExit(f"no such config: {f}")
    methods = {}
    for item in args.methods:
        name, sep, mc = item.partition("=")
        if not sep or "/" in name or os.sep in name:
            name, mc = Path(item).stem, item
            if name in methods:
                name = _rel(item)
        if name in methods:
            raise SystemExit(f"two methods are named {name!r}; name them with NAME=CONFIG")
        methods[name] = mc
    method_sets: dict[str, list[str]] = {k: [] for k in methods}
    for item in args.method_set:
        name, kv = item.split(":", 1)
        if name not in methods:
            raise SystemExit(f"--method-set {item!r}: no method named {name!r} (methods: {', '.join(methods)})")
        method_sets[name].append(kv)
    runs_dir = Path(args.runs_dir or Path("runs") / "label_efficiency" / args.name)
    base = strip_model(args.config, runs_dir / "base_config.yaml")
    plan = []
    for k in args.labels_per_class:
        for seed in args.seeds:
            for key, mc in methods.items():
                plan.append({
                    "method": key,
                    "method_class": _method_class(mc),
                    "method_config": _rel(mc),
                    "config": _rel(args.config),
                    "method_config_path": str(Path(mc).resolve()),
                    "config_path": str(base.resolve()),
                    "labels_per_class": k,
                    "seed": seed,
                    "max_steps": args.max_steps,
                    "sets": list(args.set) + method_sets[key],
                    "settings_id": _settings_id(str(base), mc, args.max_steps, list(args.set) + method_sets[key]),
                    "run_dir": str(runs_dir / f"{key}_k{k}_s{seed}"),
                })
    done = {_run_key(r) for r in data["runs"]}
    todo = [s for s in plan if args.rerun or _run_key(s) not in done]
    command = _command(argv)
    data.setdefault("commands", [])
    if command not in data["commands"]:
        data["commands"].append(command)
    data.update(
        config=_rel(args.config),
        sets=list(args.set),
        method_configs={k: _rel(v) + "".join(f" + {s}" for s in method_sets[k]) for k, v in methods.items()},
    )
    data["machine"] = _machine()
    data.setdefault("loadavg", _loadavg())
    # Runs of this invocation replace stored ones with the same key; others are kept (resume).
    from tqdm.auto import tqdm

    bar = tqdm(todo, desc=f"label efficiency ({args.name})", unit="run", disable=args.no_progress,
               initial=len(plan) - len(todo), total=len(plan))
    for spec in bar:
        bar.set_postfix_str(f"{spec['method']} k={spec['labels_per_class']} seed={spec['seed']}")
        rec = run_isolated(spec) if args.isolate else run_one(spec)
        data["runs"] = [r for r in data["runs"] if _run_key(r) != _run_key(rec)] + [rec]
        json_path.write_text(json.dumps(data, indent=1))  # after every run: resumable
        bar.write(f"{rec['method']:>14} k={rec['labels_per_class']} seed={rec['seed']}: top-1 {100 * rec['acc1']:.1f}, "
                  f"mean class {100 * rec['mean_class_acc']:.1f}, {rec['wall_s']:.0f} s"
                  + "".join(f", {k} {100 * v:.0f}" for k, v in rec["train"].items() if k.startswith("pl_")))
    bar.close()
    # The tables show this invocation's runs (the JSON may hold more, e.g. other step counts).
    wanted = {(s["method"], s["labels_per_class"], s["seed"], s["settings_id"]) for s in plan}
    shown = dict(data, runs=[r for r in data["runs"] if _run_key(r) in wanted])
    json_path.write_text(json.dumps(data, indent=1))
    outs = write_outputs(shown, out_dir, results)
    print(outs["markdown"])
    return outs | {"data": shown}


if __name__ == "__main__":
    main()
