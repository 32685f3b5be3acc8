"""The results tables, generated from the label-efficiency results.

Two tables:

* **README** (the default): one compact table a newcomer can read. A row per method, each one
  shipped config (``ssvar/configs/methods/<name>.yaml``); a column per protocol (declared in
  :data:`PROTOCOLS`: one results file each) and labelled videos per class; cells = multi-view test
  top-1 in %, mean ± std over seeds, and ``won w/n``: the seeds in which the method beat
  Supervised (same protocol, labels, seed and start). Rows of other configs (variants, older
  settings) are left out of it.
* **RESULTS.md** (``--all``): every run of every ``benchmarks/results/label_efficiency_*.json``
  (a run stored in several files counts once), a row per run name, a column per setting.

    python benchmarks/results_table.py                  # print the README table
    python benchmarks/results_table.py --write          # ... into README.md
    python benchmarks/results_table.py --all --write    # every run, into benchmarks/RESULTS.md
    python benchmarks/results_table.py --write --figure # ... and the README's label-efficiency figure

Markers: ``<!-- results-table:start -->`` / ``<!-- results-table:end -->`` in README.md and
``<!-- all-runs-table:start -->`` / ``<!-- all-runs-table:end -->`` in RESULTS.md.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
START, END = "<!-- results-table:start -->", "<!-- results-table:end -->"
ALL_START, ALL_END = "<!-- all-runs-table:start -->", "<!-- all-runs-table:end -->"
RESULTS_DIR = REPO / "benchmarks" / "results"


@dataclass(frozen=True)
class Protocol:
    """One column group of the README table: a title and the results files that hold its runs
    (one harness command per file: the methods, TimeBalance's pipeline, SVFormer on its own backbone)."""

    title: str
    file: str  # in benchmarks/results/
    more_files: tuple[str, ...] = ()

    @property
    def files(self) -> tuple[str, ...]:
        return (self.file, *self.more_files)


# The README's protocols, in column order (RESULTS.md says how each was run).
PROTOCOLS = (
    Protocol("SyntheticActions, from scratch, 2000 steps", "label_efficiency_synthetic_scratch_2000.json"),
    # Start 1 (session 6, label_efficiency_synthetic_pretrained.json) ran from a tree with uncommitted
    # changes: its rows live in RESULTS.md only until they are re-run from a commit.
    Protocol(
        "SyntheticActions, self-supervised start 2, 500 steps",
        "label_efficiency_synthetic_from_start.json",
        (
            "label_efficiency_synthetic_from_start_k2.json",
            "label_efficiency_synthetic_from_start_k10.json",
            "label_efficiency_synthetic_from_start_methods.json",
            "label_efficiency_synthetic_from_start_methods_s1b.json",
            "label_efficiency_synthetic_from_start_methods_s2.json",
            "label_efficiency_synthetic_from_start_timebalance.json",
            "label_efficiency_synthetic_svformer_k4_500.json",
            "label_efficiency_synthetic_svformer_k4_500_s2.json",
        ),
    ),
    # No start beat random features on surv_fight's validation probe (RESULTS.md), so the
    # start chosen on validation there is none: its runs start from random weights.
    Protocol(
        "surv_fight, from scratch, 300 steps",
        "label_efficiency_surv_fight_evidence.json",
        ("label_efficiency_surv_fight_evidence_s1.json", "label_efficiency_surv_fight_evidence_s2.json"),
    ),
)
# The protocol the README's figure shows (an index into PROTOCOLS): the one with several label counts.
FIGURE_PROTOCOL = 1
README_FIGURE = RESULTS_DIR / "readme_label_efficiency.png"
# Row order and names of the shipped method configs.
METHOD_NAMES = {
    "supervised": "Supervised",
    "fixmatch": "FixMatch (EMA teacher)",
    "mean_teacher": "Mean Teacher",
    "tg_fixmatch": "TG-FixMatch",
    "cmpl": "CMPL",
    "actnetformer": "ActNetFormer",
    "svformer": "SVFormer",
    "timebalance": "TimeBalance",
    "acl_mtl": "ACL+MTL",
}
# A method whose backbone cannot start from the protocol's start is compared with Supervised on its
# own backbone (same file): SVFormer needs a token backbone, so it and Supervised on the same
# TimeSformer at SVFormer's lr start from random weights.
COMPARE_WITH = {"svformer": "supervised_vit_lr0005"}


def load_runs(pattern: str) -> tuple[list[dict], list[str]]:
    """Unique runs of all files matching ``pattern`` and the files read (sorted)."""
    files = sorted(glob.glob(pattern))
    seen: dict[tuple, dict] = {}
    for f in files:
        with open(f, encoding="utf-8") as fh:
            data = json.load(fh)
        for r in data.get("runs", []):
            key = (
                r["method"],
                r["labels_per_class"],
                r["seed"],
                r.get("settings_id"),
                r["config"],
                r["max_steps"],
                tuple(r.get("sets", [])),
            )
            seen.setdefault(key, r)
    return list(seen.values()), files


def _dataset_name(config: str) -> str:
    """A short dataset name from a base config: the data module's name, or a folder's name."""
    try:
        import yaml

        with open(REPO / config, encoding="utf-8") as f:
            data = (yaml.safe_load(f) or {}).get("data", {})
        cls = data.get("class_path", "").rsplit(".", 1)[-1]
        if cls == "FolderDataModule":
            return os.path.basename(os.path.normpath(data.get("init_args", {}).get("root", "folder")))
        return cls.removesuffix("DataModule") or Path(config).stem
    except OSError:
        return Path(config).stem


# Data overrides that change no setting (only how samples are loaded) do not make a new column.
_NOT_SETTINGS = ("data.init_args.num_workers=",)


def _column(r: dict) -> tuple:
    data_sets = tuple(
        s for s in r.get("sets", []) if s.startswith("data.") and not s.startswith(_NOT_SETTINGS)
    )  # model overrides name the row
    return (_dataset_name(r["config"]), r["labels_per_class"], r["max_steps"], r["config"], tuple(sorted(data_sets)))


def _headers(columns: list[tuple], runs: list[dict]) -> list[str]:
    """``dataset k/class, N steps``, plus the data overrides that set a column apart from the
    other columns of its dataset (overrides they all share go in the note under the table) and
    the model overrides every run of the column shares (e.g. one learning rate for all methods)."""
    model_sets: dict[tuple, list[set]] = {}
    for r in runs:
        model_sets.setdefault(_column(r), []).append({s for s in r.get("sets", []) if s.startswith("model.")})
    out = []
    for c in columns:
        shared = set.intersection(*(set(cc[4]) for cc in columns if cc[0] == c[0]))
        extra = [s.removeprefix("data.init_args.") for s in c[4] if s not in shared]
        extra += sorted(s.removeprefix("model.init_args.") for s in set.intersection(*model_sets[c]))
        out.append(f"{c[0]} {c[1]}/class, {c[2]} steps" + "".join(f", `{e}`" for e in extra))
    return out


def build_table(runs: list[dict], files: list[str]) -> str:
    if not runs:
        return "_No label-efficiency results yet (run `benchmarks/label_efficiency.py`)._"
    columns = sorted({_column(r) for r in runs}, key=lambda c: (c[0], c[1], c[2], c[4]))
    # A run name whose settings differ within one column (a changed method config) gets a suffix.
    ids: dict[tuple, set] = {}
    for r in runs:
        ids.setdefault((r["method"], _column(r)), set()).add(r.get("settings_id"))

    def row_name(r: dict) -> str:
        many = len(ids[(r["method"], _column(r))]) > 1
        return f"{r['method']}@{(r.get('settings_id') or '')[:6]}" if many else r["method"]

    cells: dict[tuple[str, tuple], list[float]] = {}
    classes: dict[str, str] = {}
    num_classes: dict[tuple, int] = {}
    for r in runs:
        name = row_name(r)
        cells.setdefault((name, _column(r)), []).append(100.0 * float(r["acc1"]))
        classes[name] = r.get("method_class", "")
        num_classes[_column(r)] = int(r.get("num_classes") or 0)
    order = {"Supervised": 0}
    rows = sorted(classes, key=lambda n: (order.get(classes[n], 1), classes[n], n))
    most = {c: max(len(v) for (n, cc), v in cells.items() if cc == c) for c in columns}
    best = {c: max(statistics.mean(v) for (n, cc), v in cells.items() if cc == c) for c in columns}

    def fmt(name: str, c: tuple) -> str:
        v = cells.get((name, c))
        if not v:
            return "–"
        m = statistics.mean(v)
        s = f"{m:.1f} ± {statistics.stdev(v):.1f}" if len(v) > 1 else f"{m:.1f}"
        if len(v) < most[c]:
            s += f" (n={len(v)})"
        return f"**{s}**" if abs(m - best[c]) < 1e-9 else s

    head = ["run", "method"] + _headers(columns, runs)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * 2 + "---:|" * len(columns)]
    chance = ["chance", ""] + [f"{100.0 / num_classes[c]:.1f}" if num_classes[c] else "–" for c in columns]
    lines.append("| " + " | ".join(chance) + " |")
    for name in rows:
        lines.append("| " + " | ".join([f"`{name}`", classes[name]] + [fmt(name, c) for c in columns]) + " |")
    seeds = sorted({r["seed"] for r in runs})
    note = (
        f"Multi-view test top-1 (%), mean ± std over seeds {', '.join(map(str, seeds))}; bold: best in the column. "
        "Equal optimiser steps for every method of a column; settings, per-seed results, training diagnostics and "
        "what was tuned on what: [benchmarks/RESULTS.md](benchmarks/RESULTS.md). Generated by "
        "`python benchmarks/results_table.py --all --write` from "
        + ", ".join(f"`{os.path.relpath(f, REPO)}`" for f in files) + "."
    )
    overrides = sorted({s for c in columns for s in c[4]})
    if overrides:
        note += " Data overrides: " + ", ".join(f"`{s}`" for s in overrides) + "."
    return "\n".join(lines) + "\n\n" + note


# Model overrides that say where a run starts (TimeBalance: its stage-2 teachers), not which
# method config it runs.
_START = (
    "model.init_args.init_backbone_from=",
    "model.init_args.invariant_teacher=",
    "model.init_args.distinctive_teacher=",
)


def _shipped(r: dict) -> bool:
    """A run of a shipped method config (or of a method's own comparison, ``COMPARE_WITH``),
    unmodified (no model overrides but its start)."""
    if r["method"] in COMPARE_WITH.values():
        return True  # its backbone and lr overrides are what it is: named in the note
    return r["method"] in METHOD_NAMES and not any(
        s.startswith("model.") and not s.startswith(_START) for s in r.get("sets", [])
    )


def protocol_runs(proto: Protocol, results_dir: Path = RESULTS_DIR) -> tuple[list[dict], list[Path]]:
    """The shipped-config runs of one protocol's files, and the files that held any."""
    runs: list[dict] = []
    used: list[Path] = []
    for name in proto.files:
        path = Path(results_dir) / name
        if path.exists():
            found = [r for r in json.loads(path.read_text(encoding="utf-8")).get("runs", []) if _shipped(r)]
            runs += found
            used += [path] if found else []
    return runs, used


def write_figure(path: Path, proto: Protocol | None = None, results_dir: Path = RESULTS_DIR) -> list[str]:
    """The README's label-efficiency figure: test accuracy against labelled videos per class, for the
    methods that ``proto`` (default: :data:`FIGURE_PROTOCOL`) ran at every one of its label counts.
    Returns those methods."""
    import importlib.util

    # the harness's own plot (a sibling script, not a package module)
    spec = importlib.util.spec_from_file_location("label_efficiency", REPO / "benchmarks" / "label_efficiency.py")
    harness = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(harness)  # type: ignore[union-attr]

    proto = proto or PROTOCOLS[FIGURE_PROTOCOL]
    runs, _ = protocol_runs(proto, results_dir)
    ks = {r["labels_per_class"] for r in runs}
    methods = [m for m in METHOD_NAMES if ks and all(any(r["method"] == m and r["labels_per_class"] == k
                                                            for r in runs) for k in ks)]
    if not methods:
        raise SystemExit(f"no method of {proto.title!r} ran at every label count {sorted(ks)}")
    keep = [r for r in runs if r["method"] in methods]
    harness.render_png({"name": proto.title, "runs": keep}, Path(path))
    return methods


def build_compact(protocols=PROTOCOLS, results_dir: Path = RESULTS_DIR) -> str:
    """The README table (see the module docstring)."""
    columns: list[tuple[Protocol, int]] = []
    cells: dict[tuple[str, Protocol, int], dict[int, float]] = {}
    missing, used = [], []
    for proto in protocols:
        runs, files = protocol_runs(proto, results_dir)
        used += files
        if not any(r["method"] in METHOD_NAMES for r in runs):
            missing.append(proto.title)
            continue
        for k in sorted({r["labels_per_class"] for r in runs}):
            columns.append((proto, k))
        for r in runs:
            cells.setdefault((r["method"], proto, r["labels_per_class"]), {})[r["seed"]] = 100.0 * float(r["acc1"])
    if not columns:
        return "_No evidence runs yet: see benchmarks/RESULTS.md._"
    rows = [m for m in METHOD_NAMES if any((m, p, k) in cells for p, k in columns)]

    def fmt(method: str, proto: Protocol, k: int) -> str:
        by_seed = cells.get((method, proto, k))
        if not by_seed:
            return "–"
        v = list(by_seed.values())
        text = f"{statistics.mean(v):.1f} ± {statistics.stdev(v):.1f}" if len(v) > 1 else f"{v[0]:.1f}"
        base = cells.get((COMPARE_WITH.get(method, "supervised"), proto, k), {})
        if method != "supervised":
            common = [s for s in by_seed if s in base]
            won = sum(by_seed[s] > base[s] for s in common)
            mark = "*" if method in COMPARE_WITH else ""
            text += f" (won {won}/{len(common)}{mark})" if common else f" (n={len(v)})"
        else:
            text += f" (n={len(v)})"
        return text

    head = ["method", "config"] + [f"{p.title}, {k}/class" for p, k in columns]
    lines = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * len(columns)]
    for m in rows:
        lines.append(
            "| " + " | ".join([METHOD_NAMES[m], f"`methods/{m}.yaml`"] + [fmt(m, p, k) for p, k in columns]) + " |"
        )
    note = (
        "Multi-view test top-1 (%), mean ± std over seeds; (won w/n): seeds in which the method beat Supervised "
        "(same labels, seed and start); (n=…) seeds run so far. Equal optimiser steps within a column. Each row is the "
        "shipped config named; how each protocol was run, per-seed values, pseudo-label diagnostics, variants and "
        "earlier runs: [benchmarks/RESULTS.md](benchmarks/RESULTS.md). Generated by "
        "`python benchmarks/results_table.py --write --figure` (and the figure below) from "
        + ", ".join(f"`{os.path.relpath(f, REPO)}`" for f in used)
        + "."
    )
    if any(m in COMPARE_WITH for m in rows):
        note += (
            " *: against Supervised on the same TimeSformer backbone and learning rate, both from random "
            "weights (SVFormer needs a token backbone, so it cannot start from the 3D-CNN's checkpoint)."
        )
    if missing:
        note += " Not run yet: " + "; ".join(missing) + "."
    return "\n".join(lines) + "\n\n" + note


def write_block(readme: Path, table: str, start: str = START, end: str = END) -> None:
    text = readme.read_text(encoding="utf-8")
    if start not in text or end not in text:
        raise SystemExit(f"{readme} has no {start} ... {end} block")
    before, rest = text.split(start, 1)
    _, after = rest.split(end, 1)
    readme.write_text(f"{before}{start}\n{table}\n{end}{after}", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--results",
        default=str(REPO / "benchmarks" / "results" / "label_efficiency_*.json"),
        help="glob of result files",
    )
    p.add_argument("--write", action="store_true", help="replace the marked block in --readme (--all: in --results-md)")
    p.add_argument("--all", action="store_true", help="every run of every results file (the RESULTS.md table)")
    p.add_argument("--readme", default=str(REPO / "README.md"))
    p.add_argument("--results-md", default=str(REPO / "benchmarks" / "RESULTS.md"))
    p.add_argument(
        "--figure",
        nargs="?",
        const=str(README_FIGURE),
        help=f"also write the README's label-efficiency figure (default {os.path.relpath(README_FIGURE, REPO)})",
    )
    args = p.parse_args(argv)
    if args.figure:
        methods = write_figure(Path(args.figure))
        print(f"wrote {args.figure} ({', '.join(METHOD_NAMES[m] for m in methods)})")
    if args.all:
        runs, files = load_runs(args.results)
        table, target, markers = build_table(runs, files), Path(args.results_md), (ALL_START, ALL_END)
    else:
        table, target, markers = build_compact(), Path(args.readme), (START, END)
    if args.write:
        write_block(target, table, *markers)
        print(f"wrote the results table into {target}")
    else:
        print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
