"""benchmarks/results_table.py: merges every label_efficiency_*.json and rewrites README's block."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("results_table", REPO / "benchmarks" / "results_table.py")
rt = importlib.util.module_from_spec(spec)
sys.modules["results_table"] = rt  # its dataclasses look their module up
spec.loader.exec_module(rt)


def _run(method, cls, k, seed, acc, sid="s1"):
    return {"method": method, "method_class": cls, "labels_per_class": k, "seed": seed, "acc1": acc, "settings_id": sid,
            "config": "examples/configs/demo.yaml", "max_steps": 200, "sets": [], "num_classes": 10}


def test_runs_merge_across_files_and_new_method_files_are_picked_up(tmp_path):
    base = [_run("supervised", "Supervised", 2, s, a) for s, a in ((0, 0.2), (1, 0.4))]
    (tmp_path / "label_efficiency_a.json").write_text(json.dumps({"runs": base}))
    # a combined file repeating the same runs, and a new method's own file
    (tmp_path / "label_efficiency_a_with_b.json").write_text(
        json.dumps({"runs": base + [_run("newmethod", "NewMethod", 2, 0, 0.5)]})
    )
    (tmp_path / "label_efficiency_c.json").write_text(json.dumps({"runs": [_run("newmethod", "NewMethod", 2, 1, 0.7)]}))
    runs, files = rt.load_runs(str(tmp_path / "label_efficiency_*.json"))
    assert len(files) == 3 and len(runs) == 4  # the repeated Supervised runs count once
    table = rt.build_table(runs, files)
    lines = table.splitlines()
    assert lines[0].startswith("| run | method | SyntheticActions 2/class, 200 steps")
    assert "| chance |  | 10.0 |" in table
    assert "| `supervised` | Supervised | 30.0 ± 14.1 |" in table
    assert "| `newmethod` | NewMethod | **60.0 ± 14.1** |" in table


def test_changed_settings_get_their_own_row_and_write_replaces_the_block(tmp_path):
    runs = [_run("fixmatch", "FixMatch", 1, 0, 0.1, "aaaaaa11"), _run("fixmatch", "FixMatch", 1, 0, 0.3, "bbbbbb22")]
    table = rt.build_table(runs, [])
    assert "`fixmatch@aaaaaa`" in table and "`fixmatch@bbbbbb`" in table
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\nbefore\n{rt.START}\nold table\n{rt.END}\nafter\n")
    rt.write_block(readme, table)
    text = readme.read_text()
    assert "old table" not in text and "fixmatch@aaaaaa" in text
    assert text.startswith("# x\n\nbefore\n") and text.endswith(f"{rt.END}\nafter\n")


def test_readme_and_results_tables_are_up_to_date():
    text = (REPO / "README.md").read_text()
    block = text.split(rt.START, 1)[1].split(rt.END, 1)[0].strip()
    assert block == rt.build_compact().strip(), "run: python benchmarks/results_table.py --write"
    runs, files = rt.load_runs(str(REPO / "benchmarks" / "results" / "label_efficiency_*.json"))
    text = (REPO / "benchmarks" / "RESULTS.md").read_text()
    block = text.split(rt.ALL_START, 1)[1].split(rt.ALL_END, 1)[0].strip()
    assert block == rt.build_table(runs, files).strip(), "run: python benchmarks/results_table.py --all --write"


def test_compact_table_counts_seeds_won_against_supervised(tmp_path):
    runs = [
        _run("supervised", "Supervised", 4, 0, 0.20), _run("supervised", "Supervised", 4, 1, 0.30),
        _run("fixmatch", "FixMatch", 4, 0, 0.25), _run("fixmatch", "FixMatch", 4, 1, 0.10),
        _run("mean_teacher", "MeanTeacher", 4, 0, 0.40),
        dict(_run("fixmatch", "FixMatch", 4, 0, 0.9), sets=["model.init_args.threshold=0.5"]),  # a variant: not a row
        _run("fixmatch_ema_joint", "FixMatch", 4, 0, 0.9),  # not a shipped config: not a row
    ]
    # from a pretrained start: the shipped configs still, so rows of the table
    start = ["model.init_args.init_backbone_from=runs/pre/last.ckpt"]
    runs_pre = [dict(_run("supervised", "Supervised", 4, 0, 0.6), sets=start),
                dict(_run("fixmatch", "FixMatch", 4, 0, 0.7), sets=start)]
    (tmp_path / "pre.json").write_text(json.dumps({"runs": runs_pre}))
    pre = rt.build_compact((rt.Protocol("Synthetic, pretrained", "pre.json"),), tmp_path)
    assert "| FixMatch (EMA teacher) | `methods/fixmatch.yaml` | 70.0 (won 1/1) |" in pre
    (tmp_path / "a.json").write_text(json.dumps({"runs": runs}))
    protos = (rt.Protocol("Synthetic, scratch", "a.json"), rt.Protocol("Never run", "b.json"))
    table = rt.build_compact(protos, tmp_path)
    lines = table.splitlines()
    assert lines[0] == "| method | config | Synthetic, scratch, 4/class |"
    assert "| Supervised | `methods/supervised.yaml` | 25.0 ± 7.1 (n=2) |" in table
    assert "| FixMatch (EMA teacher) | `methods/fixmatch.yaml` | 17.5 ± 10.6 (won 1/2) |" in table
    assert "| Mean Teacher | `methods/mean_teacher.yaml` | 40.0 (won 1/1) |" in table
    assert "90.0" not in table and "Not run yet: Never run." in table


def test_columns_that_differ_only_in_overrides_are_told_apart_in_the_header():
    plain = _run("supervised", "Supervised", 2, 0, 0.2)
    excl = dict(
        _run("supervised", "Supervised", 2, 0, 0.3, "s2"), sets=["data.init_args.randaugment_exclude=[Solarize]"]
    )
    # num_workers changes no setting: same column as the plain run (and a second seed there)
    workers = dict(_run("supervised", "Supervised", 2, 1, 0.4), sets=["data.init_args.num_workers=0"])
    lr = [
        dict(_run(m, c, 2, 0, 0.5, "s3"), max_steps=150, sets=["model.init_args.lr=0.02"])
        for m, c in (("supervised", "Supervised"), ("fixmatch", "FixMatch"))
    ]
    head = rt.build_table([plain, excl, workers, *lr], []).splitlines()[0]
    assert head == (
        "| run | method | SyntheticActions 2/class, 150 steps, `lr=0.02` | SyntheticActions 2/class, 200 steps | "
        "SyntheticActions 2/class, 200 steps, `randaugment_exclude=[Solarize]` |"
    )


def test_compact_table_reads_a_protocols_several_files_and_compares_svformer_on_its_own_backbone(tmp_path):
    start = ["model.init_args.init_backbone_from=runs/pre/last.ckpt"]
    vit_start = ["model.init_args.init_backbone_from=runs/pre_vit/last.ckpt"]
    teachers = start + ["model.init_args.invariant_teacher=a.ckpt", "model.init_args.distinctive_teacher=b.ckpt"]
    files = {
        "main.json": [dict(_run("supervised", "Supervised", 4, s, a), sets=start) for s, a in ((0, 0.6), (1, 0.7))],
        # TimeBalance's stage-2 teachers are where it starts, not a variant of its config
        "tb.json": [dict(_run("timebalance", "TimeBalance", 4, s, a), sets=teachers) for s, a in ((0, 0.65), (1, 0.6))],
        "vit.json": [
            dict(_run("supervised_vit_lr0005", "Supervised", 4, 0, 0.3), sets=vit_start + ["model.init_args.lr=0.005"]),
            dict(_run("supervised_vit_lr0005", "Supervised", 4, 1, 0.5), sets=vit_start + ["model.init_args.lr=0.005"]),
            dict(_run("svformer", "SVFormer", 4, 0, 0.4), sets=vit_start),
            dict(_run("svformer", "SVFormer", 4, 1, 0.45), sets=vit_start),
        ],
    }
    for name, runs in files.items():
        (tmp_path / name).write_text(json.dumps({"runs": runs}))
    table = rt.build_compact((rt.Protocol("Start", "main.json", ("tb.json", "vit.json", "absent.json")),), tmp_path)
    assert "| TimeBalance | `methods/timebalance.yaml` | 62.5 ± 3.5 (won 1/2) |" in table
    # 0.40 > 0.30 and 0.45 < 0.50 against the TimeSformer baseline (against the 3D-CNN: 0 of 2)
    assert "| SVFormer | `methods/svformer.yaml` | 42.5 ± 3.5 (won 1/2*) |" in table
    assert "supervised_vit" not in table.split("\n\n")[0]  # the baseline is not a row of its own
    assert "*: against Supervised on the same TimeSformer backbone and learning rate" in table


def test_figure_shows_the_methods_run_at_every_label_count(tmp_path):
    # Supervised and FixMatch at 2 and 4/class; CMPL only at 4: it has no curve, so it is left out.
    runs = [_run(m, c, k, s, 0.1 * k + 0.01 * s) for m, c in (("supervised", "Supervised"), ("fixmatch", "FixMatch"))
            for k in (2, 4) for s in (0, 1)]
    runs += [_run("cmpl", "CMPL", 4, 0, 0.3)]
    for r in runs:
        r.update(mean_class_acc=r["acc1"], wall_s=1.0, steps=200)
    (tmp_path / "a.json").write_text(json.dumps({"runs": runs[:4]}))
    (tmp_path / "b.json").write_text(json.dumps({"runs": runs[4:]}))
    proto = rt.Protocol("toy protocol", "a.json", ("b.json", "missing.json"))
    out = tmp_path / "fig.png"
    assert rt.write_figure(out, proto, tmp_path) == ["supervised", "fixmatch"]
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5000
    # a protocol where no method has every label count says so instead of drawing an empty plot
    (tmp_path / "c.json").write_text(json.dumps({"runs": [runs[0], runs[-1]]}))
    with pytest.raises(SystemExit, match="every label count"):
        rt.write_figure(tmp_path / "none.png", rt.Protocol("t", "c.json"), tmp_path)
