"""A validation split that is not the test split (choose settings on it, report on test)."""

from __future__ import annotations

from pathlib import Path

import pytest
from synth import tiny_datamodule

from ssvar.data.datamodule import FolderDataModule
from ssvar.data.index import SplitError, path_key


def _tree(root: Path, n: int = 10) -> None:
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(n):
            (root / cls / f"{cls}_{i}.mp4").write_bytes(b"")


def _keys(ix) -> set[str]:
    return {path_key(r.path) for r in ix}


def test_val_fraction_is_disjoint_from_everything(tmp_path):
    _tree(tmp_path)
    rows = ["path,source_group"] + [f"{c}/{c}_{i}.mp4,{c}{i // 2}" for c in "ab" for i in range(10)]
    (tmp_path / "groups.csv").write_text("\n".join(rows) + "\n")
    dm = FolderDataModule(
        str(tmp_path), labeled_per_class=1, groups_csv=str(tmp_path / "groups.csv"), test_fraction=0.2, val_fraction=0.3
    )
    sp = dm.splits
    assert len(sp.val) > 0 and not dm.val_is_test
    for other in (sp.test, sp.labeled, sp.unlabeled):
        assert not _keys(sp.val) & _keys(other)
    # group-disjoint: no validation source also feeds training (labelled or unlabelled)
    val_groups = {r.group for r in sp.val}
    assert not val_groups & ({r.group for r in sp.labeled} | {r.group for r in sp.unlabeled})
    # both classes are represented, and every video is in exactly one place
    assert {r.label for r in sp.val} == {0, 1}
    assert len(sp.val) + len(sp.test) + len(sp.labeled) + len(sp.unlabeled) == 20


def test_val_fraction_keeps_the_labelled_draw(tmp_path):
    _tree(tmp_path)
    before = FolderDataModule(str(tmp_path), labeled_per_class=2, test_fraction=0.2).splits
    after = FolderDataModule(str(tmp_path), labeled_per_class=2, test_fraction=0.2, val_fraction=0.25).splits
    assert before.labeled.paths() == after.labeled.paths()
    assert before.test.paths() == after.test.paths()
    assert _keys(after.unlabeled) == _keys(before.unlabeled) - _keys(after.val)


def test_validation_list_must_not_name_labelled_or_test_videos(tmp_path):
    _tree(tmp_path)
    test = tmp_path / "test.txt"
    test.write_text("a/a_0.mp4 0\nb/b_0.mp4 1\n")
    labeled = tmp_path / "lab.txt"
    labeled.write_text("a/a_1.mp4 0\nb/b_1.mp4 1\n")
    good = tmp_path / "val.txt"
    good.write_text("a/a_2.mp4 0\nb/b_2.mp4 1\n")
    dm = FolderDataModule(str(tmp_path), labeled_list=str(labeled), test_list=str(test), validation_list=str(good))
    assert sorted(dm.splits.val.paths()) == ["a/a_2.mp4", "b/b_2.mp4"]
    assert not _keys(dm.splits.val) & _keys(dm.splits.unlabeled)
    for clash in ("a/a_1.mp4 0\n", "b/b_0.mp4 1\n"):
        bad = tmp_path / "bad.txt"
        bad.write_text(clash)
        with pytest.raises(SplitError, match="bad.txt:1"):
            FolderDataModule(
                str(tmp_path), labeled_list=str(labeled), test_list=str(test), validation_list=str(bad)
            ).splits


def test_bad_val_arguments_are_named(tmp_path):
    with pytest.raises(ValueError, match="val_fraction"):
        FolderDataModule(str(tmp_path), labeled_per_class=1, val_fraction=1.5)
    with pytest.raises(ValueError, match="at most one of val_fraction and validation_list"):
        FolderDataModule(str(tmp_path), labeled_per_class=1, val_fraction=0.1, validation_list="x.txt")


def test_validating_on_test_warns_at_fit(tmp_path):
    dm = tiny_datamodule(str(tmp_path))
    assert dm.val_is_test
    with pytest.warns(UserWarning, match="validates on the test set"):
        dm.setup("fit")
    carved = tiny_datamodule(str(tmp_path), val_fraction=0.5)
    assert not carved.val_is_test
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        carved.setup("fit")
