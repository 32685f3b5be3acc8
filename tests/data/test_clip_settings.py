"""Every data module hands over its clip settings and view names through public methods."""

from __future__ import annotations

import re

import pytest

from ssvar.data.datamodule import (
    FolderDataModule,
    HMDB51DataModule,
    Kinetics400DataModule,
    SemiSupervisedDataModule,
    SyntheticActionsDataModule,
    UCF101DataModule,
)
from ssvar.data.dataset import ViewSpec
from ssvar.data.index import VideoIndex, VideoRecord

# The constructors read no file: the splits are built on first use.
MODULES = {
    "folder": lambda **kw: FolderDataModule(root="r", labeled_per_class=1, **kw),
    "ucf101": lambda **kw: UCF101DataModule(root="r", splits_dir="s", labeled_percent=1, **kw),
    "hmdb51": lambda **kw: HMDB51DataModule(root="r", splits_dir="s", labeled_percent=40, **kw),
    "kinetics400": lambda **kw: Kinetics400DataModule(root="r", train_list="t", val_list="v", labeled_percent=1, **kw),
    "synthetic": lambda **kw: SyntheticActionsDataModule(**kw),
}


@pytest.mark.parametrize("name", sorted(MODULES))
@pytest.mark.parametrize(
    "crop_size, short_side, expected",
    [(112, None, 128), (224, None, 256), (56, None, 64), (112, 150, 150)],
)
def test_clip_settings_follow_the_arguments_and_the_datasets_short_side(name, crop_size, short_side, expected):
    dm = MODULES[name](
        num_frames=16, stride=3, crop_size=crop_size, short_side=short_side, test_clips=4, test_crops=3
    )
    assert isinstance(dm, SemiSupervisedDataModule)
    settings = dm.clip_settings()
    assert settings == {
        "num_frames": 16, "stride": 3, "crop_size": crop_size, "short_side": expected, "test_clips": 4, "test_crops": 3
    }
    assert all(type(v) is int for v in settings.values())
    # The decoding size is the one the data module's own datasets use (one rule, in the dataset).
    ds = dm.dataset(VideoIndex([VideoRecord("a/x.mp4", 0)], ["a"]), {"v": ViewSpec("test")}, train=False)
    assert ds.short_side == settings["short_side"]


def test_synthetic_defaults():
    assert SyntheticActionsDataModule().clip_settings() == {
        "num_frames": 8, "stride": 2, "crop_size": 56, "short_side": 64, "test_clips": 2, "test_crops": 1
    }


@pytest.mark.parametrize("name", sorted(MODULES))
def test_view_names(name):
    dm = MODULES[name](test_clips=5, test_crops=3)
    assert dm.view_name("val") == "1view"
    assert dm.view_name("test") == "5x3"
    assert dm.view_name("predict") == "5x3"
    assert MODULES[name](test_clips=2, test_crops=1).view_name("test") == "2x1"
    with pytest.raises(ValueError, match="stage must be 'val', 'test' or 'predict', got 'fit'"):
        dm.view_name("fit")


def test_samplers_moved_and_still_importable_from_the_data_module():
    from ssvar.data import datamodule, samplers

    for name in samplers.__all__:
        assert getattr(datamodule, name) is getattr(samplers, name)


@pytest.mark.parametrize("arg, value", [("area_range", (0.2, 0.5, 1.0)), ("jitter_range", (128,))])
def test_ranges_that_are_not_pairs_are_refused(arg, value):
    with pytest.raises(ValueError, match=re.escape(f"{arg} must be (low, high), got {value}")):
        SyntheticActionsDataModule(**{arg: value})


@pytest.mark.parametrize("cls", ["FolderDataModule", "UCF101DataModule", "HMDB51DataModule", "Kinetics400DataModule"])
def test_the_labelled_set_triple_is_checked_at_construction(cls, tmp_path):
    import ssvar.data as D

    kw = {"root": str(tmp_path)}
    if cls == "Kinetics400DataModule":
        kw.update(train_list="train.txt", val_list="val.txt")
    elif cls != "FolderDataModule":
        kw.update(splits_dir=str(tmp_path))
    # none, and two, of labeled_list / labeled_per_class / labeled_percent: refused before any file is read
    with pytest.raises(ValueError, match=f"{cls}: give exactly one of labeled_list, labeled_per_class and"):
        getattr(D, cls)(**kw)
    with pytest.raises(ValueError, match="got 2"):
        getattr(D, cls)(labeled_per_class=2, labeled_percent=10.0, **kw)
    dm = getattr(D, cls)(labeled_per_class=2, **kw)
    assert (dm.labeled_list, dm.labeled_per_class, dm.labeled_percent) == (None, 2, None)
