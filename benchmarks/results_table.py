"""The README's results table, generated from the label-efficiency results.

Reads every ``benchmarks/results/label_efficiency_*.json`` (written by
``benchmarks/label_efficiency.py``; a new method's file is picked up as it is), merges their runs
(a run stored in several files counts once: same run name, labels per class, seed and settings),
and prints one table: a row per run name, a column per benchmark setting (dataset, labelled videos
per class, steps), cells = multi-view test top-1 in %, mean ± sample std over seeds (``n`` seeds
when fewer than the most in that column).

    python benchmarks/results_table.py            # print the table
    python benchmarks/results_table.py --write    # replace the block between the markers in README.md

Markers in README.md: ``<!-- results-table:start -->`` and ``<!-- results-table:end -->``.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
START, END = "<!-- results-table:start -->", "<!-- results-table:end -->"


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
        "`python benchmarks/results_table.py --write` from "
        + ", ".join(f"`{os.path.relpath(f, REPO)}`" for f in files) + "."
    )
    overrides = sorted({s for c in columns for s in c[4]})
    if overrides:
        note += " Data overrides: " + ", ".join(f"`{s}`" for s in overrides) + "."
    return "\n".join(lines) + "\n\n" + note


def write_block(readme: Path, table: str) -> None:
    text = readme.read_text(encoding="utf-8")
    if START not in text or END not in text:
        raise SystemExit(f"{readme} has no {START} ... {END} block")
    before, rest = text.split(START, 1)
    _, after = rest.split(END, 1)
    readme.write_text(f"{before}{START}\n{table}\n{END}{after}", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--results",
        default=str(REPO / "benchmarks" / "results" / "label_efficiency_*.json"),
        help="glob of result files",
    )
    p.add_argument("--write", action="store_true", help="replace the marked block in --readme")
    p.add_argument("--readme", default=str(REPO / "README.md"))
    args = p.parse_args(argv)
    runs, files = load_runs(args.results)
    table = build_table(runs, files)
    if args.write:
        write_block(Path(args.readme), table)
        print(f"wrote the results table ({len(runs)} runs from {len(files)} files) into {args.readme}")
    else:
        print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
