"""The `ssvar` command: LightningCLI subcommands, shipped configs, splits and check-videos."""

from __future__ import annotations

from pathlib import Path

import pytest
from synth import TINY  # noqa: F401

from ssvar.cli import main, run_cli

REPO = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO / "ssvar" / "configs"  # also reachable as examples/configs in a clone
CONFIGS = sorted(CONFIG_DIR.glob("*.yaml"))
# Partial configs (a model only, or a trainer only) are built on top of the demo config.
PARTIAL = sorted(CONFIG_DIR.glob("methods/*.yaml")) + sorted(CONFIG_DIR.glob("trainer/*.yaml"))
CPU_TRAINER = ["--trainer.accelerator", "cpu", "--trainer.devices", "1", "--trainer.num_nodes", "1",
               "--trainer.strategy", "auto", "--trainer.precision", "32-true", "--trainer.sync_batchnorm", "false"]
SPLITS = REPO.parent / "shared" / "data" / "splits"

# Tiny, CPU-only stand-ins for each shipped config's data (paths exist, nothing heavy runs).
_DATA_OVERRIDES = {
    "UCF101DataModule": lambda: ["--data.init_args.splits_dir", str(SPLITS / "ucf101")],
    "HMDB51DataModule": lambda: [
        "--data.init_args.splits_dir",
        str(SPLITS / "hmdb51" / "testTrainMulti_7030_splits_reconstructed"),
    ],
    "Kinetics400DataModule": lambda: [
        "--data.init_args.train_list",
        _k400_half(0),
        "--data.init_args.val_list",
        _k400_half(1),
        "--data.init_args.labeled_list",
        "null",
        "--data.init_args.labeled_per_class",
        "1",
    ],
}


def _k400_half(part: int) -> str:
    """Alternate lines of the real K400 validation list: disjoint train and validation stand-ins
    (the same list as both would put every labelled video in the test set, an error at setup)."""
    import tempfile

    lines = (SPLITS / "kinetics400" / "val" / "kinetics400_val_list_videos.txt").read_text().splitlines()
    out = Path(tempfile.mkdtemp()) / f"k400_half{part}.txt"
    out.write_text("\n".join(lines[part::2]) + "\n")
    return str(out)


def _published_list_override(text: str) -> list[str]:
    """Configs that name a published labelled list get the real file from ../shared/data/splits."""
    import re

    m = re.search(r"labeled_list: \S*/((ucf101|hmdb51)_train_\d+_percent_labeled_split_1_rawframes\.txt)", text)
    if m:
        return ["--data.init_args.labeled_list", str(SPLITS / m.group(2) / "semisup" / "video-data-aug" / m.group(1))]
    m = re.search(r"labeled_list: \S*/svformer/(list_(ucf|hmdb)_\d+)/train\.csv", text)  # SVFormer's lists
    if m:
        ds = {"ucf": "ucf101", "hmdb": "hmdb51"}[m.group(2)]
        return ["--data.init_args.labeled_list", str(SPLITS / ds / "semisup" / "SVFormer" / m.group(1) / "train.csv")]
    return []


def _tiny_synth_args(root) -> list[str]:
    args = ["--data.init_args.root", str(root)]
    for k, v in TINY.items():
        args += [f"--data.init_args.{k}", str(v)]
    return args + [
        "--data.init_args.labeled_per_class", "1",
        "--data.init_args.test_fraction", "0.34",
        "--data.init_args.batch_size", "2",
        "--data.init_args.num_workers", "0",
        "--data.init_args.num_frames", "4",
        "--data.init_args.crop_size", "24",
        "--data.init_args.short_side", "28",
    ]


@pytest.mark.parametrize("config", CONFIGS, ids=[c.name for c in CONFIGS])
def test_every_shipped_config_builds(config, tmp_path):
    from ssvar.config_files import self_contained

    text = self_contained(config)  # a recipe with its fragments merged in (the file itself when it has none)
    data_cls = next((k for k in _DATA_OVERRIDES if k in text), None)
    if data_cls and not SPLITS.is_dir():
        pytest.skip("../shared/data is absent")
    extra = _DATA_OVERRIDES[data_cls]() if data_cls else []
    extra += _published_list_override(text)
    if "        checkpoint: " in text:  # the user's own image-pretrained weights: build without them here
        import re

        config = tmp_path / config.name
        config.write_text(re.sub(r"(\n\s+checkpoint: )\S+", r"\1null", text))
    if "SyntheticActionsDataModule" in text:
        extra = _tiny_synth_args(tmp_path)
    if "surv_fight" in text and not (REPO.parent / "shared" / "data" / "surv_fight").is_dir():
        pytest.skip("../shared/data is absent")
    cli = run_cli(
        ["fit", "--config", str(config), *CPU_TRAINER, "--trainer.default_root_dir", str(tmp_path), *extra],
        run=False,
    )
    assert cli.model.num_classes == cli.datamodule.num_classes
    sp = cli.datamodule.splits  # parses every list the config names (not the videos)
    assert len(sp.labeled) > 0 and len(sp.test) > 0


@pytest.mark.parametrize("config", PARTIAL, ids=[f"{c.parent.name}/{c.name}" for c in PARTIAL])
def test_every_partial_config_composes_with_the_demo(config, tmp_path):
    cli = run_cli(
        ["fit", "--config", str(CONFIG_DIR / "demo.yaml"), "--config", str(config), *CPU_TRAINER,
         "--trainer.default_root_dir", str(tmp_path), *_tiny_synth_args(tmp_path)],
        run=False,
    )
    assert cli.model.num_classes == cli.datamodule.num_classes
    if config.parent.name == "methods":
        import yaml

        expected = yaml.safe_load(config.read_text())["model"]["class_path"].rsplit(".", 1)[-1]
        assert type(cli.model).__name__ == expected


def test_demo_config_fits_and_tests_through_the_cli(tmp_path, capsys):
    cli = run_cli(
        ["fit", "--config", str(REPO / "examples" / "configs" / "demo.yaml"), *_tiny_synth_args(tmp_path),
         "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.check_val_every_n_epoch", "1",
         "--trainer.default_root_dir", str(tmp_path), "--trainer.enable_progress_bar", "false"],
    )
    assert cli.trainer.global_step == 2
    assert any(k.startswith("test/acc1_") for k in cli.trainer.callback_metrics)  # test_after_fit ran


def test_unknown_config_argument_is_named(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text((REPO / "examples" / "configs" / "demo.yaml").read_text().replace("    lr: 0.1", "    lrr: 0.1"))
    with pytest.raises(SystemExit):
        run_cli(["fit", "--config", str(bad)], run=False)
    assert "lrr" in capsys.readouterr().err


def test_splits_subcommand_dispatch(tmp_path, capsys):
    for cls in ("a", "b"):
        (tmp_path / "v" / cls).mkdir(parents=True)
        for i in range(4):
            (tmp_path / "v" / cls / f"{i}.mp4").write_bytes(b"")
    out = tmp_path / "lab.txt"
    assert main(["splits", "make", "--root", str(tmp_path / "v"), "--per-class", "2", "--out", str(out)]) == 0
    assert len(out.read_text().splitlines()) == 4


def test_check_videos_subcommand_dispatch(tmp_path, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.mp4").write_bytes(b"")
    assert main(["check-videos", str(tmp_path), "--workers", "1"]) == 1
    assert "x.mp4" in capsys.readouterr().out


def test_predict_subcommand_returns_probabilities(tmp_path):
    common = ["--config", str(REPO / "examples" / "configs" / "demo.yaml"), *_tiny_synth_args(tmp_path),
              "--trainer.default_root_dir", str(tmp_path), "--trainer.enable_progress_bar", "false"]
    run_cli(["fit", *common, "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
             "--trainer.limit_val_batches", "1", "--trainer.check_val_every_n_epoch", "1", "--test_after_fit", "false"])
    ckpt = sorted(tmp_path.rglob("*.ckpt"))[-1]
    cli = run_cli(["predict", *common, "--trainer.limit_predict_batches", "1", "--ckpt_path", str(ckpt)])
    preds = cli.trainer.predict_loop.predictions
    assert preds and preds[0]["probs"].shape[1] == 4
    assert preds[0]["probs"].sum(1).sub(1).abs().max() < 1e-5
