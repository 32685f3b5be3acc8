"""Issue 18 (a user's first hour) and issue 16 points 5-6: the CLI shows itself, starts light,
takes shipped configs by name, never drops ssvar's optimiser, has one predict story, and answers a
bad checkpoint with one line and exit status 2; a trained checkpoint stands alone."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_cli import REPO, _tiny_synth_args

from ssvar.cli import COMMANDS, main, run_cli

QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def _py(code: str, cwd=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


# -- help, version, lazy imports ------------------------------------------------------------
def test_help_lists_every_subcommand_on_one_line_each(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name, cmd in COMMANDS.items():
        lines = [ln for ln in out.splitlines() if ln.strip().startswith(name + " ")]
        assert len(lines) == 1 and cmd.help in lines[0], name
    for name in ("fit", "test", "predict", "predict-videos", "splits", "check-videos", "configs", "prepare-videos"):
        assert name in COMMANDS


def test_version_and_unknown_command(capsys):
    import ssvar

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"ssvar {ssvar.__version__}"
    assert main(["fitt"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'fitt'" in err and len(err.strip().splitlines()) == 1


def test_light_subcommands_do_not_import_lightning_or_torch(tmp_path):
    """`ssvar --help`, `splits`, `check-videos`, `configs` and their --help run without Lightning
    (or torch): that is what makes them start in well under a second (benchmarks/cli_startup.py)."""
    (tmp_path / "videos").mkdir()
    code = (
        "import sys\n"
        "from ssvar.cli import main\n"
        "def run(a):\n"
        "    try:\n"
        "        return main(a)\n"
        "    except SystemExit as e:\n"
        "        return e.code\n"
        "for a in (['--help'], ['--version'], ['splits', '--help'], ['splits', 'make', '--help'],\n"
        "          ['check-videos', '--help'],\n"
        f"          ['check-videos', {str(tmp_path / 'videos')!r}, '--workers', '1'],\n"
        "          ['configs', 'list'], ['configs', '--help'],\n"
        "          ['prepare-videos', '--help']):\n"
        "    run(a)\n"
        "print('HEAVY', sorted(m for m in ('lightning', 'torch', 'pytorch_lightning') if m in sys.modules))\n"
    )
    res = _py(code, cwd=tmp_path)
    assert "HEAVY []" in res.stdout, res.stdout[-2000:] + res.stderr[-2000:]


# -- shipped configs by name ----------------------------------------------------------------
def test_configs_list_copy_and_path(tmp_path, capsys):
    assert main(["configs", "list"]) == 0
    names = [ln.split()[0] for ln in capsys.readouterr().out.splitlines()]
    assert "demo" in names and "methods/fixmatch" in names and "trainer/csv" in names
    assert len(names) == len(list((REPO / "ssvar" / "configs").rglob("*.yaml")))
    assert main(["configs", "copy", "methods/fixmatch", str(tmp_path)]) == 0
    copied = tmp_path / "fixmatch.yaml"
    assert copied.read_text() == (REPO / "ssvar" / "configs" / "methods" / "fixmatch.yaml").read_text()
    assert main(["configs", "copy", "methods/fixmatch", str(copied)]) == 2  # never overwrites silently
    assert "exists" in capsys.readouterr().err
    assert main(["configs", "copy", "demoo", str(tmp_path)]) == 2
    assert "did you mean demo" in capsys.readouterr().err


def test_repository_path_and_package_path_are_the_same_files():
    assert (REPO / "examples" / "configs" / "demo.yaml").read_text() == (
        REPO / "ssvar" / "configs" / "demo.yaml"
    ).read_text()


@pytest.mark.parametrize("name", ["demo", "demo.yaml", "ssvar:demo"])
def test_config_by_name(tmp_path, name, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no file of that name here: the shipped one is used
    cli = run_cli(["fit", "--config", name, "--config", "ssvar:methods/supervised", *_tiny_synth_args(tmp_path),
                   "--trainer.default_root_dir", str(tmp_path)], run=False)
    assert type(cli.model).__name__ == "Supervised" and cli.model.num_classes == cli.datamodule.num_classes


def test_unknown_config_name_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        run_cli(["fit", "--config", "nodemo"], run=False)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nodemo" in err and "ssvar configs list" in err


# -- the optimiser is the method's ----------------------------------------------------------
def test_lightning_optimizer_arguments_are_not_offered(tmp_path, capsys):
    with pytest.raises(SystemExit):
        run_cli(["fit", "--config", "demo", "--optimizer", "AdamW"], run=False)
    assert "optimizer" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run_cli(["fit", "--config", "demo", "--lr_scheduler", "StepLR"], run=False)
    with pytest.raises(SystemExit):
        run_cli(["fit", "--config", "demo", "--print_config"], run=False)
    printed = capsys.readouterr().out
    assert "\noptimizer:" not in printed and "\nlr_scheduler:" not in printed
    assert "    optimizer: sgd" in printed  # the method's own choice, with its schedule


# -- one-line checkpoint errors, exit 2 -----------------------------------------------------
def _bad_ckpt(tmp_path, case) -> str:
    p = tmp_path / f"{case}.ckpt"
    if case == "folder":
        p.mkdir()
    elif case == "other_program":
        torch.save({"weights": [torch.zeros(2)]}, p)
    elif case == "corrupt":
        p.write_bytes(b"PK\x03\x04" + os.urandom(3000))
    elif case == "pickle":
        import pickle

        p.write_bytes(pickle.dumps({"state_dict": {}, "x": Path("a")}) + pickle.dumps(print))
    return str(p)


@pytest.mark.parametrize("sub", ["test", "validate", "predict", "fit"])
@pytest.mark.parametrize("case", ["missing", "folder", "other_program", "corrupt"])
def test_bad_ckpt_path_is_one_line_exit_2(tmp_path, capsys, sub, case):
    ckpt = _bad_ckpt(tmp_path, case)
    rc = main(
        [
            sub,
            "--config",
            "demo",
            *_tiny_synth_args(tmp_path),
            "--trainer.default_root_dir",
            str(tmp_path),
            "--ckpt_path",
            ckpt,
        ]
    )
    assert rc == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and ckpt in err[0] and err[0].startswith(f"ssvar {sub}: error: "), err


def test_test_without_a_checkpoint_is_one_line_exit_2(tmp_path, capsys):
    assert main(["test", "--config", "demo", *_tiny_synth_args(tmp_path)]) == 2
    assert "--ckpt_path" in capsys.readouterr().err


@pytest.mark.parametrize("case", ["missing", "folder", "other_program", "corrupt"])
def test_predict_videos_bad_checkpoint_is_one_line_exit_2(tmp_path, capsys, case, video_factory):
    video = video_factory("v.mp4")
    ckpt = _bad_ckpt(tmp_path, case)
    assert main(["predict-videos", "--ckpt", ckpt, video]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and ckpt in err[0], err


def test_old_predict_form_points_to_predict_videos(tmp_path, capsys):
    assert main(["predict", "--ckpt", "x.ckpt", "clip.mp4"]) == 2
    assert "ssvar predict-videos" in capsys.readouterr().err


# -- a trained checkpoint stands alone; predict writes its predictions ----------------------
@pytest.fixture(scope="module")
def trained_from_initial_weights(tmp_path_factory):
    """One short fit whose backbone starts from a weights file (`checkpoint:`), which is then
    deleted: nothing afterwards may need it."""
    tmp = tmp_path_factory.mktemp("standalone")
    init = tmp / "init_weights.pt"
    from ssvar.models import Tiny3D

    torch.manual_seed(1)
    torch.save(Tiny3D(width=16).state_dict(), init)
    args = [
        "--config",
        "demo",
        *_tiny_synth_args(tmp / "synth"),
        "--model.init_args.backbone.init_args.checkpoint",
        str(init),
        "--trainer.default_root_dir",
        str(tmp / "run"),
        *QUIET,
    ]
    cli = run_cli(
        [
            "fit",
            *args,
            "--trainer.max_epochs",
            "1",
            "--trainer.limit_train_batches",
            "2",
            "--trainer.limit_val_batches",
            "1",
            "--trainer.check_val_every_n_epoch",
            "1",
            "--test_after_fit",
            "false",
        ]
    )
    ckpt = sorted((tmp / "run").rglob("*.ckpt"))[-1]
    init.unlink()
    return tmp, args, str(ckpt), cli


def test_trained_checkpoint_predicts_without_the_initial_weights_file(trained_from_initial_weights, capsys):
    tmp, args, ckpt, cli = trained_from_initial_weights
    video = str(Path(cli.datamodule.root) / cli.datamodule.splits.test.records[0].path)
    assert main(["predict-videos", "--ckpt", ckpt, video, "--format", "json"]) == 0
    assert '"prob"' in capsys.readouterr().out
    again = type(cli.model).load_from_checkpoint(ckpt)  # from Python too
    assert torch.equal(again.backbone.stages[0][0].weight, cli.model.backbone.stages[0][0].weight)


def test_trained_checkpoint_tests_and_resumes_without_the_initial_weights_file(trained_from_initial_weights):
    tmp, args, ckpt, cli = trained_from_initial_weights
    assert main(["test", *args, "--ckpt_path", ckpt]) == 0
    resumed = run_cli(["fit", *args, "--trainer.max_epochs", "2", "--trainer.limit_train_batches", "2",
                       "--trainer.limit_val_batches", "1", "--test_after_fit", "false", "--ckpt_path", ckpt])
    assert resumed.trainer.global_step == 4


def test_predict_writes_predictions_csv(trained_from_initial_weights, capsys):
    tmp, args, ckpt, cli = trained_from_initial_weights
    assert main(["predict", *args, "--ckpt_path", ckpt]) == 0
    out = capsys.readouterr().out
    path = Path(out.split("predictions written to ")[1].split()[0])
    rows = list(csv.DictReader(path.open()))
    test = cli.datamodule.splits.test
    assert {r["video"] for r in rows} == {os.path.join(cli.datamodule.root, r.path) for r in test.records} or \
        len({r["video"] for r in rows}) == len(test)
    top1 = [r for r in rows if r["rank"] == "1"]
    assert len(top1) == len(test) and all(r["class"] in cli.datamodule.classes for r in top1)
    assert all(0 <= float(r["prob"]) <= 1 for r in rows)


# -- splits make: every argument checked before writing; atomic files ------------------------
def _empty_tree(root: Path) -> Path:
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(4):
            (root / cls / f"{i}.mp4").write_bytes(b"")
    return root


def test_splits_make_checks_every_argument_before_writing(tmp_path, capsys):
    root = _empty_tree(tmp_path / "v")
    lab, test = tmp_path / "lab.txt", tmp_path / "test.txt"
    rc = main(["splits", "make", "--root", str(root), "--per-class", "2", "--out", str(lab), "--test-out", str(test)])
    assert rc != 0 and "--test-fraction" in capsys.readouterr().err
    assert not lab.exists() and not test.exists()  # nothing written
    rc = main(
        [
            "splits",
            "make",
            "--root",
            str(root),
            "--per-class",
            "1",
            "--out",
            str(lab),
            "--test-out",
            str(lab),
            "--test-fraction",
            "0.5",
        ]
    )
    assert rc != 0 and not lab.exists()


def test_split_lists_are_written_atomically(tmp_path, monkeypatch):
    from ssvar.data.splits import read_folder_tree, write_list

    root = _empty_tree(tmp_path / "v")
    ix = read_folder_tree(str(root))
    out = tmp_path / "lab.txt"
    out.write_text("previous\n")

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        write_list(ix, out)
    monkeypatch.undo()
    assert out.read_text() == "previous\n"  # the old list is intact, never half a new one
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lab.txt", "v"]  # no temporary file left
    write_list(ix, out)
    assert len(out.read_text().splitlines()) == 8


# -- every run writes into its own versioned folder, whatever the logger ---------------------
def test_wandb_runs_never_overwrite_each_others_files(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    from test_loggers_plots import _fit

    monkeypatch.chdir(tmp_path)
    for k, v in {
        "WANDB_MODE": "offline",
        "WANDB_DIR": str(tmp_path),
        "WANDB_SILENT": "true",
        "WANDB_CONFIG_DIR": str(tmp_path / "wandb_config"),
        "WANDB_CACHE_DIR": str(tmp_path / "wandb_cache"),
    }.items():
        monkeypatch.setenv(k, v)
    folders = []
    for _ in range(2):
        cli = _fit(tmp_path, "--config", "trainer/wandb", "--config", "trainer/plots", "--test_after_fit", "false")
        cli.trainer.logger.experiment.finish()
        from ssvar.callbacks import run_dir

        folders.append(tmp_path / run_dir(cli.trainer))
    assert folders[0] != folders[1] and all(f.parent == tmp_path / "runs" / "ssvar" for f in folders)
    for f in folders:
        assert (f / "config.yaml").is_file() and (f / "pseudo_label_curves.png").is_file()
    assert not list((tmp_path / "runs").glob("*.yaml")) and not list((tmp_path / "runs").glob("*.png"))
