"""Bad inputs and injected faults: each gives a clear error or is handled (skipped, counted and
named), never a traceback from deep inside, a silent wrong result or lost work.

The checkpoint faults (kill -9 during a write, SIGTERM/SIGINT, disk full, resuming from nothing)
are in ``test_checkpointing.py``; exact resume in ``test_resume.py``. This file holds the data
faults: broken videos in evaluation and training, split lists, and folder trees.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import lightning as L
import pytest
from helpers import TINY_CLASSES, write_truncated, write_video
from synth import tiny_trainer

from ssvar.data.datamodule import FolderDataModule
from ssvar.data.decode import PyAVDecoder, VideoDecodeError
from ssvar.data.index import SplitError
from ssvar.methods import FixMatch, Supervised
from ssvar.models import Tiny3D

SMALL = dict(
    batch_size=2, num_workers=0, num_frames=4, stride=2, crop_size=24, short_side=28, test_clips=1, test_crops=1
)


def _faststart_truncated(path: Path, fraction: float = 0.5) -> str:
    """A faststart MP4 (index at the front, as web videos) cut short: PyAV raises
    ``InvalidDataError``, a ``ValueError``, while decoding it."""
    full = write_video(path.with_name("full_" + path.name), 48, 32, 32, faststart=True, gop=8)
    out = write_truncated(path, full, fraction)
    os.unlink(full)
    return out


def _tree(root: Path, per_class: int = 3) -> Path:
    for c in TINY_CLASSES:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            write_video(root / c / f"{c}_{i}.mp4", 24)
    return root


def _test_list(root: Path, entries: list[tuple[str, int]]) -> str:
    p = root.parent / "test.txt"
    p.write_text("".join(f"{path} {label}\n" for path, label in entries))
    return str(p)


# --------------------------------------------------------------------------- 4. faststart MP4
@pytest.mark.parametrize("fraction", [0.3, 0.5, 0.7, 0.9])
def test_truncated_faststart_mp4_is_a_video_decode_error(tmp_path, fraction):
    path = _faststart_truncated(tmp_path / "web.mp4", fraction)
    for plan in ([0, 7, 20, 40], [0, 1]):
        try:
            frames, _, _ = PyAVDecoder().decode(path, lambda info: plan)
        except VideoDecodeError as e:  # never a bare av.error.InvalidDataError / ValueError
            assert e.path == path
            continue
        assert frames.shape[0] == len(plan)


def test_bad_frame_plans_stay_value_errors(tmp_path):
    path = write_video(tmp_path / "ok.mp4", 8)
    with pytest.raises(ValueError) as e:
        PyAVDecoder().decode(path, lambda info: [])
    assert not isinstance(e.value, VideoDecodeError)


def test_training_skips_and_counts_a_truncated_faststart_mp4(tmp_path):
    root = _tree(tmp_path / "tree", per_class=4)
    _faststart_truncated(root / "class_a" / "class_a_web.mp4")
    dm = FolderDataModule(str(root), labeled_per_class=1, test_fraction=0.25, **SMALL)
    model = FixMatch(Tiny3D(width=4), num_classes=3, threshold=0.0)
    trainer = tiny_trainer(tmp_path, max_steps=-1, max_epochs=2)
    trainer.fit(model, datamodule=dm)
    assert trainer.global_step == 2 * dm.steps_per_epoch()
    in_train = any(r.path.endswith("class_a_web.mp4") for r in dm.splits.unlabeled.records + dm.splits.labeled.records)
    if in_train:  # drawn at least once per epoch as an unlabelled video
        assert model.decode_failures >= 1


def test_predict_reports_a_truncated_faststart_mp4_and_goes_on(tmp_path, capsys):
    from ssvar.cli import main

    root = _tree(tmp_path / "tree")
    dm = FolderDataModule(str(root), labeled_per_class=1, test_fraction=0.34, **SMALL)
    L.seed_everything(0)
    trainer = tiny_trainer(tmp_path, max_steps=1, enable_checkpointing=True)
    trainer.fit(Supervised(Tiny3D(width=4), num_classes=3), datamodule=dm)
    ckpt = trainer.checkpoint_callback.last_model_path or trainer.checkpoint_callback.best_model_path
    bad = _faststart_truncated(tmp_path / "web.mp4")
    good = str(root / "class_b" / "class_b_0.mp4")
    cfg = tmp_path / "model.yaml"  # a Python-trained checkpoint names no backbone config
    cfg.write_text("model:\n  class_path: ssvar.methods.Supervised\n  init_args:\n    num_classes: 3\n"
                   "    backbone:\n      class_path: ssvar.models.Tiny3D\n      init_args:\n        width: 4\n")
    assert (
        main(
            [
                "predict-videos",
                "--ckpt",
                ckpt,
                good,
                bad,
                "--format",
                "json",
                "--clips",
                "1",
                "--model-config",
                str(cfg),
            ]
        )
        == 1
    )
    import json

    out = json.loads(capsys.readouterr().out)
    assert out[0]["video"] == good and out[0]["top"] and not out[0].get("error")
    assert out[1]["video"] == bad and "cannot decode" in out[1]["error"]


# --------------------------------------------------------------------------- 1. evaluation
@pytest.mark.parametrize("eval_batch_size", [1, 2])
def test_evaluation_leaves_out_broken_videos_never_substitutes(tmp_path, caplog, eval_batch_size):
    """A broken test video is skipped, counted (`test/skipped_videos`), named in the log, and the
    metrics are over the videos actually scored (before: another test video and its label took
    its place, so one video was scored twice)."""
    root = _tree(tmp_path / "tree")
    _faststart_truncated(root / "class_c" / "class_c_web.mp4")
    (root / "class_a" / "class_a_zero.mp4").write_bytes(b"")
    test = [
        ("class_a/class_a_0.mp4", 0),
        ("class_a/class_a_zero.mp4", 0),
        ("class_b/class_b_0.mp4", 1),
        ("class_c/class_c_web.mp4", 2),
        ("class_c/class_c_0.mp4", 2),
    ]
    dm = FolderDataModule(
        str(root), labeled_per_class=1, test_list=_test_list(root, test), eval_batch_size=eval_batch_size, **SMALL
    )
    model = Supervised(Tiny3D(width=4), num_classes=3)
    trainer = tiny_trainer(tmp_path)
    with caplog.at_level(logging.WARNING):
        trainer.test(model, datamodule=dm, verbose=False)
    m = trainer.callback_metrics
    assert m["test/skipped_videos"] == 2
    assert int(model.confusion_matrix.sum()) == 3  # the three readable videos, each once
    assert "class_c_web.mp4" in caplog.text and "class_a_zero.mp4" in caplog.text
    # Validation too.
    trainer = tiny_trainer(tmp_path, limit_val_batches=1.0)
    trainer.validate(model, datamodule=dm, verbose=False)
    assert trainer.callback_metrics["val/skipped_videos"] == 2


def test_training_keeps_replacing_broken_videos(tmp_path):
    """Training's documented policy: a broken video is replaced by another (bounded retries) and
    counted in `data/decode_failures`."""
    root = _tree(tmp_path / "tree", per_class=4)
    for c in TINY_CLASSES:
        (root / c / f"{c}_empty.mp4").write_bytes(b"")
    dm = FolderDataModule(str(root), labeled_per_class=1, test_fraction=0.25, **SMALL)
    model = FixMatch(Tiny3D(width=4), num_classes=3, threshold=0.0)
    trainer = tiny_trainer(tmp_path, max_steps=-1, max_epochs=1)
    trainer.fit(model, datamodule=dm)
    assert model.decode_failures >= 1 and trainer.callback_metrics["data/decode_failures"] >= 1


# --------------------------------------------------------------------------- 2. split checks
def _list_dm(tmp_path, labeled: list[tuple[str, int]], test: list[tuple[str, int]], **kw) -> FolderDataModule:
    root = _tree(tmp_path / "tree")
    lab = tmp_path / "labeled.txt"
    lab.write_text("".join(f"{p} {y}\n" for p, y in labeled))
    return FolderDataModule(
        str(root), labeled_list=str(lab), test_list=_test_list(root, test), check_files=False, **SMALL, **kw
    )


TEST = [("class_a/class_a_2.mp4", 0), ("class_b/class_b_2.mp4", 1), ("class_c/class_c_2.mp4", 2)]
LAB = [("class_a/class_a_0.mp4", 0), ("class_b/class_b_0.mp4", 1), ("class_c/class_c_0.mp4", 2)]


def test_repeated_labelled_entry_is_an_error_naming_file_and_line(tmp_path):
    dm = _list_dm(tmp_path, LAB + [LAB[0]], TEST)
    with pytest.raises(SplitError, match=r"repeated labelled.*labeled\.txt:4 repeats .*labeled\.txt:1"):
        dm.setup("fit")
    dm = _list_dm(tmp_path / "b", LAB + [LAB[0]], TEST, allow_duplicates=True)
    with pytest.warns(UserWarning, match="repeated labelled"):
        dm.setup("fit")


def test_repeated_test_entry_is_an_error(tmp_path):
    dm = _list_dm(tmp_path, LAB, TEST + [TEST[1]])
    with pytest.raises(SplitError, match=r"repeated test.*test\.txt:4 repeats .*test\.txt:2"):
        dm.setup("test")


def test_class_without_labelled_video_is_an_error(tmp_path):
    dm = _list_dm(tmp_path, LAB[:2], TEST)
    with pytest.raises(SplitError, match="no labelled video.*2 class_c"):
        dm.setup("fit")
    dm = _list_dm(tmp_path / "b", LAB[:2], TEST, allow_empty_classes=True)
    with pytest.warns(UserWarning, match="class_c"):
        dm.setup("fit")


def test_labelled_video_in_the_test_list_is_always_an_error(tmp_path):
    from ssvar.data.datamodule import Kinetics400DataModule

    root = _tree(tmp_path / "tree")
    all_videos = [(f"{c}/{c}_{i}.mp4", y) for y, c in enumerate(TINY_CLASSES) for i in range(3)]
    train, val, lab = tmp_path / "train.txt", tmp_path / "val.txt", tmp_path / "labeled.txt"
    train.write_text("".join(f"{p} {y}\n" for p, y in all_videos))
    val.write_text("".join(f"{p} {y}\n" for p, y in TEST + [LAB[1]]))
    lab.write_text("".join(f"{p} {y}\n" for p, y in LAB))
    dm = Kinetics400DataModule(str(root), str(train), str(val), labeled_list=str(lab), check_files=False,
                               allow_duplicates=True, allow_empty_classes=True, **SMALL)
    with pytest.raises(SplitError, match=r"labelled video\(s\) also in the test list.*labeled\.txt:2"):
        dm.setup("fit")


def test_cli_reports_a_split_error_in_one_line(tmp_path, capsys):
    from ssvar.cli import main

    root = _tree(tmp_path / "tree")
    lab = tmp_path / "labeled.txt"
    lab.write_text("".join(f"{p} {y}\n" for p, y in LAB + [LAB[0]]))
    rc = main(
        [
            "fit",
            "--model",
            "ssvar.methods.Supervised",
            "--model.backbone",
            "ssvar.models.Tiny3D",
            "--data",
            "ssvar.data.FolderDataModule",
            "--data.root",
            str(root),
            "--data.labeled_list",
            str(lab),
            "--data.test_list",
            _test_list(root, TEST),
            "--data.num_workers",
            "0",
            "--trainer.max_steps",
            "1",
            "--trainer.accelerator",
            "cpu",
            "--trainer.default_root_dir",
            str(tmp_path / "runs"),
            "--trainer.logger",
            "false",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "repeated labelled" in err[0] and "labeled.txt:4" in err[0]


# --------------------------------------------------------------------------- 3. trees and counts
def test_same_stem_mp4_and_avi_is_an_error_naming_the_class(tmp_path):
    root = _tree(tmp_path / "tree")
    write_video(root / "class_b" / "class_b_0.avi", 24, codec="mpeg4")
    with pytest.raises(SplitError, match=r"different extensions, per class: class_b \(1\).*class_b_0\.avi"):
        FolderDataModule(str(root), labeled_per_class=1, **SMALL).setup("fit")


def test_more_labelled_per_class_than_videos_names_class_and_counts(tmp_path):
    root = _tree(tmp_path / "tree")
    (root / "class_b" / "class_b_2.mp4").unlink()
    (root / "class_b" / "class_b_1.mp4").unlink()
    with pytest.raises(SplitError, match=r"class_b \(\d < 2\)"):
        FolderDataModule(str(root), labeled_per_class=2, test_fraction=0.34, **SMALL).setup("fit")


def test_every_training_video_labelled_leaves_no_unlabelled_pool_clear_error(tmp_path):
    root = _tree(tmp_path / "tree")
    dm = FolderDataModule(str(root), labeled_per_class=2, test_fraction=0.34, **SMALL)  # 2 train videos per class
    with pytest.raises(SplitError, match=r"unlabelled pool has 0 videos \(6 of the training videos are labelled\)"):
        tiny_trainer(tmp_path, max_steps=1).fit(FixMatch(Tiny3D(width=4), num_classes=3), datamodule=dm)
