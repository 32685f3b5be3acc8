"""`ssvar predict-videos`: top-k classes of video files from a CLI-trained checkpoint. That every
method's checkpoint predicts every test video and reloads with the same logits is part of the
contract suite (tests/methods/test_contract.py); here the command itself, on one method."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_cli import REPO, _tiny_synth_args

from ssvar.cli import main, run_cli
from ssvar.predict import find_video_files, format_table, load_model, predict_videos

METHOD_CONFIGS = ["fixmatch"]  # the demo's method; every method: tests/methods/test_contract.py


def _fit_checkpoint(tmp_path: Path, method: str) -> tuple[str, object]:
    """One training step through the CLI; returns the checkpoint and the trained module."""
    root = tmp_path / "run"
    cli = run_cli(
        [
            "fit",
            "--config",
            str(REPO / "examples/configs/demo.yaml"),
            "--config",
            str(REPO / f"examples/configs/methods/{method}.yaml"),
            *_tiny_synth_args(tmp_path / "synth"),
            "--trainer.max_epochs",
            "1",
            "--trainer.limit_train_batches",
            "1",
            "--trainer.limit_val_batches",
            "1",
            "--trainer.check_val_every_n_epoch",
            "1",
            "--trainer.logger",
            "false",
            "--trainer.default_root_dir",
            str(root),
            "--trainer.enable_progress_bar",
            "false",
            "--trainer.enable_model_summary",
            "false",
            "--test_after_fit",
            "false",
        ],
    )
    ckpts = sorted(root.rglob("*.ckpt"))
    assert ckpts, "no checkpoint written"
    return str(ckpts[-1]), cli


def _videos(cli) -> list[str]:
    dm = cli.datamodule
    return [str(Path(dm.root) / r.path) for r in dm.splits.test.records[:3]]


@pytest.mark.parametrize("method", METHOD_CONFIGS)
def test_predict_videos_from_a_cli_checkpoint(tmp_path, capsys, method):
    ckpt, cli = _fit_checkpoint(tmp_path, method)
    videos = _videos(cli)
    assert main(["predict-videos", "--ckpt", ckpt, *videos, "--top-k", "3", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [o["video"] for o in out] == videos
    names = list(cli.datamodule.classes)
    for o in out:
        assert o["views"] == "2x1"  # the tiny data module's test views, read from the checkpoint
        probs = [t["prob"] for t in o["top"]]
        assert len(probs) == 3 and probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-5
        assert all(t["class"] in names for t in o["top"])

    # Same numbers as the trained module itself on the same test views (multi-view average).
    model = cli.model.eval()
    dm = cli.datamodule
    ds = dm.dataset(
        dm.splits.test,
        {"video": __import__("ssvar.data.dataset", fromlist=["ViewSpec"]).ViewSpec("test", clips=2)},
        train=False,
    )
    with torch.no_grad():
        x = ds[0]["video"]
        from ssvar.data.transforms import normalize_video

        ref = model.inference_model()(normalize_video(x, model.hparams.mean, model.hparams.std)).softmax(-1).mean(0)
    top = out[0]["top"][0]
    assert top["class"] == names[int(ref.argmax())]
    assert abs(top["prob"] - float(ref.max())) < 1e-4
    # The checkpoint alone rebuilds the whole method (backbone config kept in its hyperparameters).
    again = type(cli.model).load_from_checkpoint(ckpt, map_location="cpu")
    assert again.class_names == names and again.clip_settings["test_clips"] == 2
    for k, v in cli.model.state_dict().items():
        assert torch.equal(v.cpu(), again.state_dict()[k]), k


def test_predict_table_folder_and_broken_file(tmp_path, capsys):
    ckpt, cli = _fit_checkpoint(tmp_path, "supervised")
    folder = tmp_path / "new"
    folder.mkdir()
    for i, v in enumerate(_videos(cli)[:2]):
        (folder / f"clip{i}.mp4").write_bytes(Path(v).read_bytes())
    (folder / "broken.mp4").write_bytes(b"not a video")
    assert len(find_video_files([str(folder)])) == 3
    rc = main(["predict-videos", "--ckpt", ckpt, str(folder), "--top-k", "2", "--clips", "1"])
    out = capsys.readouterr().out
    assert rc == 1  # one video could not be read; the others are still predicted
    assert "ERROR" in out and "broken.mp4" in out
    assert out.count("clip0.mp4") == 1 and "1x1 clips x crops" in out
    assert any(name in out for name in cli.datamodule.classes)


def test_python_trained_checkpoint_needs_the_model_config(tmp_path, capsys):
    """Checkpoints of models built in Python hold no backbone config: --model-config supplies it."""
    import lightning as L
    from synth import tiny_datamodule

    from ssvar.methods import FixMatch
    from ssvar.models import Tiny3D

    dm = tiny_datamodule(str(tmp_path / "synth"))
    model = FixMatch(Tiny3D(width=4), num_classes=dm.num_classes)
    trainer = L.Trainer(accelerator="cpu", max_steps=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, default_root_dir=str(tmp_path))
    trainer.fit(model, datamodule=dm)
    ckpt = str(tmp_path / "py.ckpt")
    trainer.save_checkpoint(ckpt)
    video = str(Path(dm.root) / dm.splits.test.records[0].path)
    assert main(["predict-videos", "--ckpt", ckpt, video]) == 2
    assert "--model-config" in capsys.readouterr().err
    cfg = tmp_path / "model.yaml"
    cfg.write_text("model:\n  class_path: ssvar.methods.FixMatch\n  init_args:\n"
                   "    backbone: {class_path: ssvar.models.Tiny3D, init_args: {width: 4}}\n")
    assert main(["predict-videos", "--ckpt", ckpt, video, "--model-config", str(cfg), "--format", "json"]) == 0
    got = json.loads(capsys.readouterr().out)[0]["top"][0]
    loaded = load_model(ckpt, backbone=Tiny3D(width=4))
    again = predict_videos(loaded, [video], top_k=1)[0].top[0]
    assert got["class"] == again[0] and abs(got["prob"] - again[1]) < 1e-5
    assert got["class"] in dm.classes
    assert "rank" in format_table(predict_videos(loaded, [video], top_k=2))
