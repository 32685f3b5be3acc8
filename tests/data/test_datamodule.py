"""The semi-supervised DataModule: samplers, splits, loaders and setup-time errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from synth import tiny_datamodule

from ssvar.data.datamodule import (
    EvalDistributedSampler,
    FolderDataModule,
    ResampledDistributedSampler,
    UCF101DataModule,
)
from ssvar.data.dataset import ViewSpec
from ssvar.data.index import SplitError

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    return str(tmp_path_factory.mktemp("synth"))


def _indices(sampler) -> list[int]:
    return [i for i, _seed in sampler]  # training samplers yield (index, sample seed)


def test_resampler_ranks_are_disjoint_and_balanced():
    data = list(range(5))  # a tiny labelled set
    per_rank = 12
    shards = [_indices(ResampledDistributedSampler(data, per_rank, num_replicas=2, rank=r, seed=3)) for r in (0, 1)]
    assert all(len(s) == per_rank for s in shards)
    single = _indices(ResampledDistributedSampler(data, 2 * per_rank, num_replicas=1, rank=0, seed=3))
    # Interleaving the two ranks' shards gives the single-process order: ranks see disjoint
    # positions of one global order.
    merged = [shards[i % 2][i // 2] for i in range(2 * per_rank)]
    assert merged == single
    counts = torch.bincount(torch.tensor(single), minlength=5)
    assert counts.max() - counts.min() <= 1  # cycles through full permutations


def test_resampler_epochs_differ_and_repeat():
    s = ResampledDistributedSampler(list(range(8)), 16, seed=0)
    a = list(s)
    s.set_epoch(1)
    b = list(s)
    s.set_epoch(0)
    assert list(s) == a and a != b


def test_eval_sampler_has_no_padding():
    data = list(range(7))
    shards = [list(EvalDistributedSampler(data, 2, r)) for r in (0, 1)]
    assert sorted(shards[0] + shards[1]) == data
    assert [len(EvalDistributedSampler(data, 2, r)) for r in (0, 1)] == [4, 3]


def test_synthetic_splits(synth_root):
    dm = tiny_datamodule(synth_root)
    dm.setup("fit")
    sp = dm.splits
    assert dm.num_classes == 4 and len(dm.classes) == 4
    assert torch.bincount(torch.tensor(sp.labeled.labels()), minlength=4).tolist() == [1, 1, 1, 1]
    test_paths = set(sp.test.paths())
    assert not test_paths & set(sp.labeled.paths())
    assert not test_paths & set(sp.unlabeled.paths())
    assert not set(sp.labeled.paths()) & set(sp.unlabeled.paths())  # unlabelled = train - labelled by default


def test_labeled_in_unlabeled_option(synth_root):
    dm = tiny_datamodule(synth_root, labeled_in_unlabeled=True)
    assert set(dm.splits.labeled.paths()) <= set(dm.splits.unlabeled.paths())


class _Views:
    """Stands in for a trainer whose module declares FixMatch-style views."""

    world_size, global_rank = 1, 0
    limit_val_batches = 0  # no validation: the data module does not warn about validating on test

    class lightning_module:
        @staticmethod
        def views():
            return {
                "labeled": {"weak": ViewSpec("weak")},
                "unlabeled": {"weak": ViewSpec("weak"), "strong": ViewSpec("strong", same_as="weak")},
            }


def test_train_loader_batches(synth_root):
    dm = tiny_datamodule(synth_root, mu=2)
    dm.trainer = _Views()
    dm.setup("fit")
    loader = dm.train_dataloader()
    loader._iterator = None
    batches = list(iter(loader))
    assert len(batches) == dm.steps_per_epoch() == len(dm.splits.unlabeled) // 4
    b = batches[0][0] if isinstance(batches[0], tuple) else batches[0]
    lab, unl = b["labeled"], b["unlabeled"]
    assert lab["weak"].shape == (2, 3, 4, 24, 24) and lab["weak"].dtype == torch.uint8
    assert unl["weak"].shape == unl["strong"].shape == (4, 3, 4, 24, 24)
    assert (unl["label"] == -1).all() and (unl["hidden_label"] >= 0).all()
    assert "hidden_label" not in lab


def test_eval_loaders(synth_root):
    dm = tiny_datamodule(synth_root)
    dm.setup("test")
    batch = next(iter(dm.test_dataloader()))
    assert batch["video"].shape[1:] == (2, 3, 4, 24, 24)  # [B, clips x crops, C, T, H, W]
    dm.setup("validate")
    batch = next(iter(dm.val_dataloader()))
    assert batch["video"].shape[1:] == (3, 4, 24, 24)


def _tree(root: Path, names: dict[str, int]) -> None:
    for cls, n in names.items():
        (root / cls).mkdir(parents=True)
        for i in range(n):
            (root / cls / f"{cls}_{i}.mp4").write_bytes(b"")


def test_folder_groups_stay_on_one_side(tmp_path):
    _tree(tmp_path, {"a": 8, "b": 8})
    rows = ["path,source_group"] + [f"{c}/{c}_{i}.mp4,{c}{i // 2}" for c in "ab" for i in range(8)]
    (tmp_path / "groups.csv").write_text("\n".join(rows) + "\n")
    dm = FolderDataModule(
        str(tmp_path), labeled_per_class=1, groups_csv=str(tmp_path / "groups.csv"), test_fraction=0.25
    )
    sp = dm.splits
    train_groups = {r.group for r in sp.unlabeled} | {r.group for r in sp.labeled}
    assert not train_groups & {r.group for r in sp.test}
    assert len(sp.test) > 0


def test_missing_file_fails_at_setup_with_line(tmp_path):
    _tree(tmp_path, {"a": 3, "b": 3})
    (tmp_path / "test.txt").write_text("a/a_0.mp4 0\nb/b_9.mp4 1\n")
    dm = FolderDataModule(str(tmp_path), labeled_per_class=1, test_list=str(tmp_path / "test.txt"))
    with pytest.raises(SplitError, match=r"b_9\.mp4.*test\.txt:2"):
        dm.setup("test")


def test_labeled_list_entry_not_in_train_names_line(tmp_path):
    _tree(tmp_path, {"a": 3, "b": 3})
    (tmp_path / "lab.txt").write_text("a/a_1.mp4 0\nb/nope.mp4 1\n")
    dm = FolderDataModule(str(tmp_path), labeled_list=str(tmp_path / "lab.txt"), test_fraction=0.34)
    with pytest.raises(SplitError, match=r"lab\.txt:2"):
        dm.splits


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="batch_size"):
        tiny_datamodule("x", batch_size=0)
    with pytest.raises(ValueError, match="test_crops"):
        tiny_datamodule("x", test_crops=2)
    with pytest.raises(ValueError, match="exactly one"):
        FolderDataModule("x", labeled_per_class=1, labeled_percent=5.0)


@pytest.mark.skipif(not (SHARED / "splits" / "ucf101").is_dir(), reason="../shared/data is absent")
def test_ucf101_published_labeled_list():
    ucf = SHARED / "splits" / "ucf101"
    dm = UCF101DataModule(
        root="unused",
        splits_dir=str(ucf),
        split=1,
        labeled_list=str(ucf / "semisup" / "video-data-aug" / "ucf101_train_5_percent_labeled_split_1_rawframes.txt"),
        check_files=False,
    )
    # The published 5 % list has no CliffDiving video: an error at setup unless accepted.
    with pytest.raises(SplitError, match="no labelled video.*CliffDiving"):
        dm.splits
    dm.allow_empty_classes = True
    with pytest.warns(UserWarning, match="CliffDiving"):
        sp = dm.splits
    assert dm.num_classes == 101
    assert len(sp.labeled) == 476 and len(sp.test) == 3783
    assert len(sp.unlabeled) == 9537 - 476
    assert all(r.path.endswith(".avi") for r in sp.labeled)  # matched back to real file names


@pytest.mark.skipif(not (SHARED / "surv_fight").is_dir(), reason="../shared/data is absent")
def test_surv_fight_group_disjoint():
    root = SHARED / "surv_fight"
    dm = FolderDataModule(str(root), labeled_per_class=5, groups_csv=str(root / "groups.csv"))
    sp = dm.splits
    assert dm.classes == ["fight", "noFight"]
    assert not ({r.group for r in sp.unlabeled} | {r.group for r in sp.labeled}) & {r.group for r in sp.test} - {None}
    assert len(sp.labeled) == 10


@pytest.mark.parametrize("mode", ["train_list", "list"])
def test_labeled_list_labels_switch(tmp_path, mode):
    """A published list that labels a video differently from the training split (HMDB51's
    VideoSSL lists): corrected to the split's label by default, kept as listed with
    ``labeled_list_labels="list"`` (what LTG and SVFormer trained on); a warning gives the count."""
    _tree(tmp_path, {"a": 3, "b": 3})
    (tmp_path / "test.txt").write_text("a/a_0.mp4 0\nb/b_0.mp4 1\n")
    (tmp_path / "lab.txt").write_text("a/a_1.mp4 1\nb/b_1.mp4 1\na/a_2.mp4 1\n")  # two disagree
    dm = FolderDataModule(str(tmp_path), labeled_list=str(tmp_path / "lab.txt"), test_list=str(tmp_path / "test.txt"),
                          labeled_list_labels=mode, allow_empty_classes=True)  # "list": class a has no labelled video
    with pytest.warns(UserWarning, match=r"^2 labelled video\(s\)"):
        labels = {r.path: r.label for r in dm.splits.labeled.records}
    expected = {"a/a_1.mp4": 1, "a/a_2.mp4": 1} if mode == "list" else {"a/a_1.mp4": 0, "a/a_2.mp4": 0}
    assert labels == {**expected, "b/b_1.mp4": 1}
    with pytest.raises(ValueError, match="labeled_list_labels"):
        FolderDataModule(str(tmp_path), labeled_per_class=1, labeled_list_labels="mine")
