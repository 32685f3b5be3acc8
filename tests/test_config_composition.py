"""Recipes composed from fragments (issue 14): a recipe's ``__base__`` list names a method fragment
(``paper/``), a data split (``splits/``) and a schedule (``schedules/``); what LightningCLI gets is the
same configuration as the one-file recipes gave before.

``tests/golden/shipped_configs.json`` holds every shipped config as it was read from the tree before
the fragments existed (one file each). Regenerate it only when a config's values change on purpose:
``python tests/test_config_composition.py --write-golden``."""

from __future__ import annotations

import contextlib
import io
import json
import re
import sys
from pathlib import Path

import pytest
import yaml

from ssvar.config_files import (
    ConfigError,
    config_dir,
    configs_main,
    list_configs,
    load_config,
    resolve_config_args,
)

REPO = Path(__file__).resolve().parents[1]
GOLDEN_FILE = REPO / "tests" / "golden" / "shipped_configs.json"
GOLDEN = json.loads(GOLDEN_FILE.read_text())
FRAGMENT_DIRS = ("paper", "splits", "schedules")
RECIPES = sorted(n for n in GOLDEN if re.search(r"_(ucf101|hmdb51|k400)", n))


def _recipe(name: str) -> Path:
    return config_dir() / f"{name}.yaml"


# -- the same values as before ---------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_every_shipped_config_composes_to_its_golden_values(name):
    assert load_config(_recipe(name)) == GOLDEN[name]


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_config_argument_hands_lightning_the_golden_values(name):
    """By path and by name, `--config` gives LightningCLI the merged values (a plain file: the file)."""
    for given in (str(_recipe(name)), name):
        value = resolve_config_args(["fit", "--config", given])[2]
        got = json.loads(value) if value.startswith("{") else load_config(value)
        assert got == GOLDEN[name], given


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_configs_copy_is_self_contained(name, tmp_path):
    """The copy needs no fragment: it holds the merged values and keeps the recipe's header."""
    assert configs_main(["copy", name, str(tmp_path)]) == 0
    copied = tmp_path / f"{Path(name).name}.yaml"
    text = copied.read_text()
    assert "__base__" not in text
    assert load_config(copied) == GOLDEN[name]
    header = [ln for ln in _recipe(name).read_text().splitlines() if ln.startswith("#")][:1]
    assert text.splitlines()[: len(header)] == header


def _print_config(config: str) -> dict:
    from ssvar.lightning_cli import run_cli

    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        run_cli(["fit", "--config", config, "--print_config"])
    return yaml.safe_load(out.getvalue())


# The final configuration (every default filled in by LightningCLI) from a composed recipe and from
# its copy equals the one from the old one-file recipe: epoch and step schedules, nested split
# fragments, a list (callbacks) in the recipe, a pretraining stage. (The tests above show that every
# recipe hands LightningCLI the old values; this shows that the hand-over itself changes nothing.)
PARSED = [
    "fixmatch_r3d18_8xb8-8x8x1_ucf101-s1-10pct",
    "svformer_vit-s_8xb1-8x8x1_k400-1pct",
    "timebalance_slowr50_1xb16-8x2x1_ucf101-s1-5pct",
    "timebalance-pretrain-tclr_slowr50_8xb5-16x4x1_hmdb51-s1",
    "actnetformer_r50-vits_8xb2-8x8x1_hmdb51-s1-50pct",
]


@pytest.mark.parametrize("name", PARSED)
def test_final_configuration_is_the_old_recipes(name, tmp_path):
    old = tmp_path / "old.yaml"
    old.write_text(json.dumps(GOLDEN[name]))  # the one-file recipe as it was
    expected = _print_config(str(old))
    assert _print_config(str(_recipe(name))) == expected  # (by name: the same file, test above)
    assert configs_main(["copy", name, str(tmp_path / "copy.yaml")]) == 0
    assert _print_config(str(tmp_path / "copy.yaml")) == expected


# -- recipes are short and made of fragments ---------------------------------------------------
@pytest.mark.parametrize("name", RECIPES)
def test_paper_recipes_compose_a_method_a_split_and_keep_their_header(name):
    text = _recipe(name).read_text()
    bases = load_config_bases(_recipe(name))
    assert bases[0].startswith("paper/") and bases[1].startswith("splits/"), bases
    assert text.startswith("# ") and bases  # the header (paper, what differs from it) stays in the recipe
    body = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    assert len(body) <= 20, f"{name}: {len(body)} lines besides comments"


def load_config_bases(path: Path) -> list[str]:
    from jsonargparse import get_loader

    return get_loader("yaml")(path.read_text())["__base__"]


def test_every_fragment_is_used_by_a_recipe():
    used: set[Path] = set()

    def walk(path: Path) -> None:
        used.add(path.resolve())
        for base in (load_config_bases(path) if "__base__" in path.read_text() else []):
            walk(path.parent / base)

    for name in RECIPES:
        walk(_recipe(name))
    fragments = {p.resolve() for d in FRAGMENT_DIRS for p in (config_dir() / d).glob("*.yaml")}
    assert fragments and not fragments - used, sorted(p.name for p in fragments - used)


def test_hmdb51_40_and_50_percent_recipes_differ_only_in_their_split():
    """Besides the header line and run folders (which name the split), only the split fragment
    differs, and the step count where the schedule is in steps of the labelled set."""
    pairs = [(n, n.replace("-40pct", "-50pct")) for n in RECIPES if n.endswith("hmdb51-s1-40pct")]
    pairs = [(a, b) for a, b in pairs if b in GOLDEN]
    assert len(pairs) >= 7
    for a, b in pairs:
        la = [ln.replace("40", "50") for ln in _recipe(a).read_text().splitlines() if not ln.startswith("#")]
        lb = [ln for ln in _recipe(b).read_text().splitlines() if not ln.startswith("#")]
        differ = [(x, y) for x, y in zip(la, lb) if x != y]
        steps_only = all(re.match(r"\s*(max_steps|val_check_interval):", y) for _, y in differ)
        assert len(la) == len(lb) and steps_only, (a, differ)
        split_a = [x for x in load_config_bases(_recipe(a)) if x.startswith("splits/")]
        split_b = [x for x in load_config_bases(_recipe(b)) if x.startswith("splits/")]
        assert split_a != split_b and [s.replace("40", "50") for s in split_a] == split_b


# -- the include key -------------------------------------------------------------------------
def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_fragments_merge_in_order_recipe_last(tmp_path):
    _write(tmp_path / "frag/a.yaml",
           "model:\n  class_path: A\n  init_args: {lr: 0.1, wd: 1.0e-4, steps: [1, 2]}\ntrainer: {max_epochs: 5}\n")
    _write(tmp_path / "frag/b.yaml", "__base__: a.yaml\nmodel:\n  init_args: {lr: 0.2, steps: [3]}\n")  # next to b.yaml
    recipe = _write(tmp_path / "r.yaml",
                    "__base__: [frag/b.yaml]\ntrainer: {max_epochs: 7}\nmodel: {init_args: {wd: 0}}\n")
    assert load_config(recipe) == {
        "model": {"class_path": "A", "init_args": {"lr": 0.2, "wd": 0, "steps": [3]}},  # lists are replaced
        "trainer": {"max_epochs": 7},
    }
    assert load_config(tmp_path / "frag/a.yaml")["model"]["init_args"]["wd"] == 1e-4  # read as LightningCLI reads it


def test_a_users_recipe_names_shipped_fragments(tmp_path):
    """Outside the package, `ssvar:NAME` names a shipped fragment; the user's own split file is relative."""
    _write(tmp_path / "my_split.yaml", "data:\n  init_args: {labeled_list: my/labelled.txt}\n")
    bases = "[ssvar:paper/fixmatch_r3d18_8xb8-8x8x1, ssvar:splits/ucf101-s1.yaml, my_split.yaml]"
    recipe = _write(tmp_path / "r.yaml", f"__base__: {bases}\n")
    cfg = load_config(recipe)
    assert cfg["model"]["class_path"] == "ssvar.methods.FixMatch"
    assert cfg["data"]["class_path"] == "ssvar.data.UCF101DataModule"
    assert cfg["data"]["init_args"]["labeled_list"] == "my/labelled.txt" and cfg["data"]["init_args"]["batch_size"] == 8
    with pytest.raises(ConfigError, match=r"r2\.yaml: __base__: no shipped config named 'ssvar:paper/nope'"):
        load_config(_write(tmp_path / "r2.yaml", "__base__: [ssvar:paper/nope]\n"))


def test_a_new_class_path_replaces_the_fragments_arguments(tmp_path):
    _write(tmp_path / "a.yaml", "data:\n  class_path: A\n  init_args: {root: x, split: 1}\n")
    recipe = _write(tmp_path / "r.yaml", "__base__: [a.yaml]\ndata:\n  class_path: B\n  init_args: {root: y}\n")
    assert load_config(recipe) == {"data": {"class_path": "B", "init_args": {"root": "y"}}}


def test_missing_fragment_is_one_line_naming_the_file(tmp_path, capsys):
    recipe = _write(tmp_path / "r.yaml", "__base__: [splits/nope.yaml]\nseed_everything: 1\n")
    with pytest.raises(ConfigError, match=r"r\.yaml: __base__ names splits/nope\.yaml, which does not exist"):
        load_config(recipe)
    with pytest.raises(SystemExit) as e:
        resolve_config_args(["fit", "--config", str(recipe)])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "splits/nope.yaml" in err and "r.yaml" in err


def test_cycle_is_one_line_naming_the_files(tmp_path, capsys):
    _write(tmp_path / "a.yaml", "__base__: [b.yaml]\n")
    _write(tmp_path / "b.yaml", "__base__: [a.yaml]\n")
    with pytest.raises(ConfigError, match=r"cycle \(a\.yaml -> b\.yaml -> a\.yaml\)"):
        load_config(tmp_path / "a.yaml")
    with pytest.raises(SystemExit):
        resolve_config_args(["fit", "--config", str(tmp_path / "a.yaml")])
    assert "b.yaml: __base__ makes a cycle" in capsys.readouterr().err


def test_bad_base_value_and_bad_yaml_are_named(tmp_path):
    with pytest.raises(ConfigError, match=r"r\.yaml: __base__ must be a list"):
        load_config(_write(tmp_path / "r.yaml", "__base__: {a: 1}\n"))
    with pytest.raises(ConfigError, match=r"bad\.yaml: not valid YAML"):
        load_config(_write(tmp_path / "bad.yaml", "a: [1, 2\n"))


def test_plain_files_and_inline_yaml_pass_through_unchanged(tmp_path):
    plain = _write(tmp_path / "p.yaml", "seed_everything: 3\n")
    assert resolve_config_args(["fit", "--config", str(plain)]) == ["fit", "--config", str(plain)]
    assert resolve_config_args(["fit", "--config={seed_everything: 3}"]) == ["fit", "--config={seed_everything: 3}"]


def test_fragments_are_listed_by_name():
    names = list_configs()
    assert {"paper/fixmatch_r3d18_8xb8-8x8x1", "splits/ucf101-s1-10pct", "schedules/180ep"} <= set(names)


def test_a_composed_config_trains_and_its_run_keeps_the_merged_config(tmp_path):
    """A user's recipe built on the shipped demo trains; the run's saved config.yaml holds the merged values."""
    from test_cli import _tiny_synth_args

    from ssvar.lightning_cli import run_cli

    demo = config_dir() / "demo.yaml"
    mine = _write(tmp_path / "my.yaml", f"__base__: [{demo}]\nmodel:\n  init_args:\n    threshold: 0.7\n")
    cli = run_cli(["fit", "--config", str(mine), *_tiny_synth_args(tmp_path / "synth"), "--trainer.max_epochs", "1",
                   "--trainer.limit_train_batches", "1", "--trainer.limit_val_batches", "1",
                   "--test_after_fit", "false",
                   "--trainer.default_root_dir", str(tmp_path / "runs"), "--trainer.enable_progress_bar", "false"])
    assert cli.trainer.global_step > 0 and cli.model.hparams.threshold == 0.7
    saved = yaml.safe_load(next((tmp_path / "runs").rglob("config.yaml")).read_text())
    saved_model = saved["model"]["init_args"]
    assert saved_model["threshold"] == 0.7 and saved_model["lr"] == GOLDEN["demo"]["model"]["init_args"]["lr"]


def test_unknown_argument_in_a_fragment_is_named(tmp_path, capsys):
    from ssvar.lightning_cli import run_cli

    _write(tmp_path / "frag.yaml", "model:\n  class_path: ssvar.methods.FixMatch\n  init_args:\n    lrr: 0.1\n")
    mine = _write(tmp_path / "my.yaml", f"__base__: [{config_dir() / 'demo.yaml'}, frag.yaml]\n")
    with pytest.raises(SystemExit):
        run_cli(["fit", "--config", str(mine)], run=False)
    assert "lrr" in capsys.readouterr().err


def test_predict_videos_reads_the_model_of_a_composed_recipe(tmp_path, capsys):
    """`ssvar predict-videos --model-config RECIPE` finds the model in the recipe's method fragment
    (it gets as far as the checkpoint, which is missing here)."""
    from ssvar.predict import predict_main

    (tmp_path / "clip.mp4").write_bytes(b"")
    recipe = str(_recipe(RECIPES[0]))
    rc = predict_main(["--ckpt", str(tmp_path / "none.ckpt"), "--model-config", recipe, str(tmp_path / "clip.mp4")])
    err = capsys.readouterr().err
    assert rc == 2 and "none.ckpt" in err and "model:" not in err


if __name__ == "__main__" and sys.argv[1:] == ["--write-golden"]:
    names = [n for n in list_configs() if n.split("/")[0] not in FRAGMENT_DIRS]
    golden = {n: load_config(config_dir() / f"{n}.yaml") for n in names}
    GOLDEN_FILE.write_text(json.dumps(golden, indent=1) + "\n")
    print(f"wrote {len(golden)} configs to {GOLDEN_FILE}")
