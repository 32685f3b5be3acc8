"""Tests of ssvar.data.splits: parsers on every staged list file, generators, verification, CLI."""

from __future__ import annotations

import random
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from ssvar.commands import splits_main
from ssvar.data.index import SplitError, VideoIndex, VideoRecord, path_key
from ssvar.data.splits import (
    make_group_split,
    make_labeled_split,
    read_class_names,
    read_folder_tree,
    read_groups_csv,
    read_hmdb51_split,
    read_kinetics_csv,
    read_list,
    read_ucf101_classind,
    read_ucf101_list,
    ucf101_group,
    verify_split,
    write_list,
)

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
HMDB_OFFICIAL = "hmdb51/testTrainMulti_7030_splits_reconstructed"

# counts stated in the PROVENANCE.md files (records, not `wc -l`)
EXPECTED_COUNTS = {
    "ucf101/classInd.txt": 101,
    "ucf101/trainlist01.txt": 9537,
    "ucf101/trainlist02.txt": 9586,
    "ucf101/trainlist03.txt": 9624,
    "ucf101/testlist01.txt": 3783,
    "ucf101/testlist02.txt": 3734,
    "ucf101/testlist03.txt": 3696,
    "ucf101/semisup/video-data-aug/ucf101_train_5_percent_labeled_split_1_rawframes.txt": 476,
    "ucf101/semisup/video-data-aug/ucf101_train_10_percent_labeled_split_1_rawframes.txt": 953,
    "ucf101/semisup/video-data-aug/ucf101_train_20_percent_labeled_split_1_rawframes.txt": 1907,
    "ucf101/semisup/video-data-aug/ucf101_train_50_percent_labeled_split_1_rawframes.txt": 4768,
    "ucf101/semisup/video-data-aug/ucf101_train_split_1_rawframes.txt": 9537,
    "ucf101/semisup/video-data-aug/ucf101_val_split_1_rawframes.txt": 3783,
    "ucf101/semisup/LTG/ucf101_train_5_percent_unlabeled_split_1_rawframes.txt": 9061,
    "ucf101/semisup/LTG/ucf101_train_10_percent_unlabeled_split_1_rawframes.txt": 8584,
    "ucf101/semisup/LTG/ucf101_train_20_percent_unlabeled_split_1_rawframes.txt": 7630,
    "ucf101/semisup/LTG/ucf101_train_50_percent_unlabeled_split_1_rawframes.txt": 4769,
    "ucf101/semisup/SVFormer/list_ucf_1/train.csv": 101,
    "ucf101/semisup/SVFormer/list_ucf_1/val.csv": 3783,
    "ucf101/semisup/SVFormer/list_ucf_10/train.csv": 1010,
    "ucf101/semisup/SVFormer/list_ucf_10/val.csv": 3783,
    "hmdb51/semisup/video-data-aug/hmdb51_train_40_percent_labeled_split_1_rawframes.txt": 2094,
    "hmdb51/semisup/video-data-aug/hmdb51_train_50_percent_labeled_split_1_rawframes.txt": 2618,
    "hmdb51/semisup/video-data-aug/hmdb51_train_60_percent_labeled_split_1_rawframes.txt": 3141,
    "hmdb51/semisup/video-data-aug/hmdb51_train_100_percent_labeled_split_1_rawframes.txt": 5236,
    "hmdb51/semisup/video-data-aug/hmdb51_val_split_1_rawframes.txt": 1530,
    "kinetics400/semisup/LTG/kinetics400_train_1_percent_labeled_videos.txt": 2400,
    "kinetics400/semisup/LTG/kinetics400_train_1_percent_labeled_rawframes.txt": 2400,
    "kinetics400/semisup/LTG/kinetics400_train_10_percent_labeled_videos.txt": 24000,
    "kinetics400/semisup/LTG/kinetics400_train_10_percent_labeled_rawframes.txt": 24000,
    "kinetics400/semisup/SVFormer/list_k400_1/train.csv": 2400,
    "kinetics400/semisup/SVFormer/list_k400_10/train.csv": 24000,
    "kinetics400/semisup/SVFormer/val.csv": 19761,
    "kinetics400/val/kinetics400_val_list_videos.txt": 13733,
}
EXPECTED_COUNTS |= {f"hmdb51/mmaction2_format/hmdb51_train_split_{k}_videos.txt": 3570 for k in (1, 2, 3)}
EXPECTED_COUNTS |= {f"hmdb51/mmaction2_format/hmdb51_val_split_{k}_videos.txt": 1530 for k in (1, 2, 3)}
EXPECTED_COUNTS |= {f"hmdb51/semisup/SVFormer/list_hmdb_{p}/val.csv": 1530 for p in (40, 50, 60)}
EXPECTED_COUNTS |= {
    f"hmdb51/semisup/SVFormer/list_hmdb_{p}/train.csv": n for p, n in ((40, 2094), (50, 2618), (60, 3141))
}


# --------------------------------------------------------------------------- the staged lists


@pytest.fixture(scope="module")
def splits_dir() -> Path:
    if not (SHARED / "splits").is_dir():
        pytest.skip(f"shared data not found at {SHARED}")
    return SHARED / "splits"


def _keys(ix: VideoIndex) -> set[str]:
    return {path_key(r.path) for r in ix}


def _labels_by_key(ix: VideoIndex) -> dict[str, int]:
    return {path_key(r.path): r.label for r in ix}


@pytest.fixture(scope="module")
def parsed(splits_dir: Path) -> dict[str, VideoIndex | list[str]]:
    """Every list file under splits/, parsed with the parser its format needs."""
    d = splits_dir
    classind = d / "ucf101/classInd.txt"
    classes = {
        "ucf101": read_ucf101_classind(classind),
        # the official mmaction2 lists have consistent folders, so classes can be inferred
        "hmdb51": read_list(d / "hmdb51/mmaction2_format/hmdb51_train_split_1_videos.txt").classes,
        "kinetics400": read_list(d / "kinetics400/val/kinetics400_val_list_videos.txt").classes,
    }
    out: dict[str, VideoIndex | list[str]] = {}
    for f in sorted(p for p in d.rglob("*") if p.is_file()):
        rel = f.relative_to(d).as_posix()
        if f.name in ("PROVENANCE.md", "MANIFEST.sha256") or rel.startswith(HMDB_OFFICIAL + "/"):
            continue
        if f.name == "classInd.txt":
            out[rel] = read_ucf101_classind(f)
        elif re.fullmatch(r"(train|test)list\d\d\.txt", f.name):
            out[rel] = read_ucf101_list(f, classind)
        else:
            dataset = rel.split("/")[0]
            ext = {"kinetics400": ".mp4"}.get(dataset, ".avi") if "rawframes" in f.name else None
            out[rel] = read_list(f, classes=classes[dataset], extension=ext)
    for k in (1, 2, 3):
        train, test, unused = read_hmdb51_split(d / HMDB_OFFICIAL, k)
        out[f"{HMDB_OFFICIAL}#{k}"] = train
        out[f"{HMDB_OFFICIAL}#{k}/test"] = test
        out[f"{HMDB_OFFICIAL}#{k}/unused"] = unused
    return out


def test_every_list_file_parses(parsed, splits_dir: Path):
    lists = [p for p in splits_dir.rglob("*") if p.is_file() and p.suffix in (".txt", ".csv")]
    official = [p for p in lists if p.parent.name == Path(HMDB_OFFICIAL).name]
    assert len(official) == 153
    assert len(parsed) == len(lists) - len(official) + 9
    for rel, n in EXPECTED_COUNTS.items():
        assert len(parsed[rel]) == n, rel
    for rel, ix in parsed.items():
        if isinstance(ix, VideoIndex):
            assert all(0 <= r.label < ix.num_classes for r in ix), rel
            assert all(r.origin and re.search(r":\d+$", r.origin) for r in ix), rel
            assert not any("\r" in r.path or r.path.startswith("/") for r in ix), rel
            assert len(_keys(ix)) == len(ix), f"duplicates in {rel}"


def test_ucf101_official(parsed):
    classes = parsed["ucf101/classInd.txt"]
    assert classes[0] == "ApplyEyeMakeup" and classes[-1] == "YoYo" and "HandstandPushups" in classes
    for k, test_groups in ((1, range(1, 8)), (2, range(8, 15)), (3, range(15, 22))):
        train, test = parsed[f"ucf101/trainlist0{k}.txt"], parsed[f"ucf101/testlist0{k}.txt"]
        assert train.classes == classes and train.num_classes == 101
        assert {r.label for r in train} == set(range(101))  # 1-based labels became 0..100
        assert not _keys(train) & _keys(test)
        assert len(_keys(train) | _keys(test)) == 13320
        assert {r.group for r in test} == {f"g{g:02d}" for g in test_groups}
        assert not {r.group for r in train} & {r.group for r in test}
        assert verify_split(train, test=test).ok
    first = parsed["ucf101/trainlist01.txt"].records[0]
    assert first == VideoRecord("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi", 0, "g08", first.origin)
    assert first.origin.endswith("trainlist01.txt:1")


def test_ucf101_semisup_lists_match_official(parsed):
    train, test = parsed["ucf101/trainlist01.txt"], parsed["ucf101/testlist01.txt"]
    sv = "ucf101/semisup/video-data-aug/"
    # raw-frame lists: no extension, 0-based labels in classInd order
    raw_train = parsed[sv + "ucf101_train_split_1_rawframes.txt"]
    assert raw_train.records[0].path.endswith(".avi")
    assert _labels_by_key(raw_train) == _labels_by_key(train)
    assert _labels_by_key(parsed[sv + "ucf101_val_split_1_rawframes.txt"]) == _labels_by_key(test)
    for pct in (5, 10, 20, 50):
        labeled = parsed[f"{sv}ucf101_train_{pct}_percent_labeled_split_1_rawframes.txt"]
        unlabeled = parsed[f"ucf101/semisup/LTG/ucf101_train_{pct}_percent_unlabeled_split_1_rawframes.txt"]
        assert not _keys(labeled) & _keys(unlabeled)
        assert _keys(labeled) | _keys(unlabeled) == _keys(train)
        assert _labels_by_key(labeled).items() <= _labels_by_key(train).items()
    # the 10 % draw is not class-balanced
    assert (
        sorted(Counter(parsed[sv + "ucf101_train_10_percent_labeled_split_1_rawframes.txt"].labels()).values())[0] == 1
    )
    for pct, per_class in ((1, 1), (10, 10)):
        base = f"ucf101/semisup/SVFormer/list_ucf_{pct}/"
        labeled, unlabeled, val = parsed[base + "train.csv"], parsed[base + "unlabel.csv"], parsed[base + "val.csv"]
        assert Counter(labeled.labels()) == {c: per_class for c in range(101)}  # 0-based, balanced
        assert _labels_by_key(labeled).items() <= _labels_by_key(train).items()
        assert _keys(labeled) | _keys(unlabeled) == _keys(train) and not _keys(labeled) & _keys(unlabeled)
        assert _labels_by_key(val) == _labels_by_key(test)
        assert verify_split(labeled, unlabeled, test, index=train).ok


def test_ucf101_5_percent_list_misses_a_class(parsed):
    """A finding about the widely used video-data-aug/LTG 5 % list: CliffDiving has no labelled video."""
    labeled = parsed["ucf101/semisup/video-data-aug/ucf101_train_5_percent_labeled_split_1_rawframes.txt"]
    report = verify_split(labeled, test=parsed["ucf101/testlist01.txt"])
    assert not report.ok
    assert report.labeled_counts[21] == 0 and report.classes[21] == "CliffDiving"
    assert any("no labelled video" in e and "CliffDiving" in e for e in report.errors)


def test_hmdb51_lists(parsed):
    classes = parsed["hmdb51/mmaction2_format/hmdb51_train_split_1_videos.txt"].classes
    assert classes == sorted(classes) and len(classes) == 51 and classes[0] == "brush_hair"
    everything: set[str] = set()
    for k in (1, 2, 3):
        train = parsed[f"hmdb51/mmaction2_format/hmdb51_train_split_{k}_videos.txt"]
        test = parsed[f"hmdb51/mmaction2_format/hmdb51_val_split_{k}_videos.txt"]
        assert Counter(train.labels()) == {c: 70 for c in range(51)}
        assert Counter(test.labels()) == {c: 30 for c in range(51)}
        off_train, off_test, unused = (parsed[f"{HMDB_OFFICIAL}#{k}{s}"] for s in ("", "/test", "/unused"))
        assert off_train.classes == classes
        assert (len(off_train), len(off_test), len(unused)) == (3570, 1530, 1666)
        assert _labels_by_key(off_train) == _labels_by_key(train)
        assert _labels_by_key(off_test) == _labels_by_key(test)
        everything |= _keys(off_train) | _keys(off_test) | _keys(unused)
    assert len(everything) == 6766
    sv = "hmdb51/semisup/video-data-aug/"
    assert _labels_by_key(parsed[sv + "hmdb51_val_split_1_rawframes.txt"]) == _labels_by_key(
        parsed[f"{HMDB_OFFICIAL}#1/test"]
    )
    pool = parsed[sv + "hmdb51_train_100_percent_labeled_split_1_rawframes.txt"]
    assert _keys(pool) == _keys(parsed[f"{HMDB_OFFICIAL}#1"]) | _keys(parsed[f"{HMDB_OFFICIAL}#1/unused"])
    for pct in (40, 50, 60):
        base = f"hmdb51/semisup/SVFormer/list_hmdb_{pct}/"
        assert _keys(parsed[base + "train.csv"]) == _keys(
            parsed[f"{sv}hmdb51_train_{pct}_percent_labeled_split_1_rawframes.txt"]
        )
        assert _keys(parsed[base + "train.csv"]) | _keys(parsed[base + "unlabel.csv"]) == _keys(pool)


def test_hmdb51_semisup_pool_has_swapped_labels(parsed, splits_dir: Path):
    """A finding: in the video-data-aug/LTG/SVFormer HMDB51 pool, 132 clips of the official
    split-1 "unused" set carry the label of a sibling class (climb<->climb_stairs,
    kick<->kick_ball, sword<->sword_exercise). Inferring class names from such a list fails
    loudly; verify_split warns."""
    rel = "hmdb51/semisup/video-data-aug/hmdb51_train_100_percent_labeled_split_1_rawframes.txt"
    with pytest.raises(SplitError, match=r"rawframes\.txt:\d+: label \d+ is folder"):
        read_list(splits_dir / rel)
    pool = parsed[rel]
    wrong = {path_key(r.path) for r in pool if r.path.split("/")[0] != pool.classes[r.label]}
    assert len(wrong) == 132
    assert wrong <= _keys(parsed[f"{HMDB_OFFICIAL}#1/unused"])
    assert {pool.classes[r.label] for r in pool if path_key(r.path) in wrong} == {
        "climb", "climb_stairs", "kick", "kick_ball", "sword", "sword_exercise"
    }
    report = verify_split(pool, test=parsed[f"{HMDB_OFFICIAL}#1/test"])
    assert report.ok and any(w.startswith("labelled: 132 video(s) whose folder") for w in report.warnings)


def test_kinetics400_lists(parsed):
    classes = parsed["kinetics400/val/kinetics400_val_list_videos.txt"].classes
    assert len(classes) == 400 and classes == sorted(classes) and classes[0] == "abseiling"
    ltg, sv = "kinetics400/semisup/LTG/", "kinetics400/semisup/SVFormer/"
    for pct, per_class in ((1, 6), (10, 60)):
        videos = parsed[f"{ltg}kinetics400_train_{pct}_percent_labeled_videos.txt"]
        frames = parsed[f"{ltg}kinetics400_train_{pct}_percent_labeled_rawframes.txt"]
        svformer = parsed[f"{sv}list_k400_{pct}/train.csv"]
        assert Counter(videos.labels()) == {c: per_class for c in range(400)}
        assert Counter(svformer.labels()) == {c: per_class for c in range(400)}
        assert _labels_by_key(frames) == _labels_by_key(videos)
        a, b = _labels_by_key(videos), _labels_by_key(svformer)
        shared = a.keys() & b.keys()
        assert len(shared) == {1: 36, 10: 2935}[pct]
        assert all(a[k] == b[k] for k in shared)
    val = parsed["kinetics400/val/kinetics400_val_list_videos.txt"]
    assert _labels_by_key(val).items() <= _labels_by_key(parsed[sv + "val.csv"]).items()


# --------------------------------------------------------------------------- parsers on small files


def _write(path: Path, text: str, newline: str = "\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.replace("\n", newline).encode())
    return path


def test_crlf_and_blank_lines(tmp_path: Path):
    f = _write(tmp_path / "train.csv", "A/v_A_g01_c01.avi 0\n\nB/v_B_g02_c01.avi 1\n\n", newline="\r\n")
    ix = read_list(f)
    assert ix.paths() == ["A/v_A_g01_c01.avi", "B/v_B_g02_c01.avi"]
    assert ix.classes == ["A", "B"] and ix.labels() == [0, 1]
    assert [r.group for r in ix] == ["g01", "g02"]
    assert ix.records[1].origin == f"{f}:3"


def test_label_base(tmp_path: Path):
    one = _write(tmp_path / "one.txt", "A/a.avi 1\nB/b.avi 2\nC/c.avi 3\n")
    zero = _write(tmp_path / "zero.txt", "A/a.avi 0\nB/b.avi 1\nC/c.avi 2\n")
    assert read_list(one).labels() == [0, 1, 2] and read_list(one).classes == ["A", "B", "C"]
    assert read_list(zero).labels() == [0, 1, 2]
    assert read_list(one, label_base=0, classes=["X", "A", "B", "C"]).labels() == [1, 2, 3]
    # with classes, "auto" is exact: max label == number of classes means 1-based
    assert read_list(one, classes=["A", "B", "C"]).labels() == [0, 1, 2]
    assert read_list(one, classes=["A", "B", "C", "D"]).labels() == [1, 2, 3]
    with pytest.raises(SplitError, match=r"zero\.txt:1: label 0 out of range 1\.\.3"):
        read_list(zero, label_base=1, classes=["A", "B", "C"])


def test_path_prefix_and_extension(tmp_path: Path):
    f = _write(tmp_path / "l.txt", "/mnt/store/ucf101/A/v_a 30 0\n/mnt/store/ucf101_2/B/b 12 1\nB/c.mp4 7 1\n")
    ix = read_list(f, path_prefix="/mnt/store/ucf101/", extension="avi", classes=["A", "B"])
    # the prefix is removed only at a folder boundary; known extensions are left alone
    assert ix.paths() == ["A/v_a.avi", "/mnt/store/ucf101_2/B/b.avi", "B/c.mp4"]


@pytest.mark.parametrize(
    "text, lineno, message",
    [
        ("A/a.avi 0\nA/b.avi zero\n", 2, "label must be an integer"),
        ("A/a.avi 0\n\nA/b.avi 3 4 0\n", 3, "expected 'path \\[num_frames\\] label'"),
        ("A/a.avi x 0\n", 1, "frame count must be an integer"),
        ("A/a.avi -1\n", 1, "negative label"),
        ("A/a.avi 0\nB/b.avi 5\n", 2, "label 5 out of range 0..1"),
        ("A/a.avi\n", 1, "no label"),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path: Path, text: str, lineno: int, message: str):
    f = _write(tmp_path / "bad.txt", text)
    with pytest.raises(SplitError, match=rf"bad\.txt:{lineno}: {message}"):
        read_list(f, classes=["A", "B"] if "5" in text else None)


def test_inconsistent_folders_are_an_error(tmp_path: Path):
    f = _write(tmp_path / "l.txt", "A/a.avi 0\nB/b.avi 1\nB/c.avi 0\n")
    with pytest.raises(SplitError, match=r"l\.txt:3: label 0 is folder 'B' here but 'A' at .*l\.txt:1"):
        read_list(f)
    assert read_list(f, classes=["A", "B"]).labels() == [0, 1, 0]


def test_missing_labels_get_placeholder_names(tmp_path: Path):
    ix = read_list(_write(tmp_path / "l.txt", "A/a.avi 0\nC/c.avi 2\n"))
    assert ix.classes == ["A", "unknown_1", "C"]


def test_path_only_lines_use_the_folder(tmp_path: Path):
    f = _write(tmp_path / "test.txt", "a/x.avi\nB/y.avi\n")
    assert read_list(f, classes=["A", "B"]).labels() == [0, 1]


def test_ucf101_official_format(tmp_path: Path):
    ci = _write(tmp_path / "classInd.txt", "1 Alpha\n2 HandstandPushups\n", newline="\r\n")
    assert read_ucf101_classind(ci) == ["Alpha", "HandstandPushups"] == read_class_names(ci)
    train = _write(
        tmp_path / "trainlist01.txt",
        "Alpha/v_Alpha_g08_c01.avi 1\nHandstandPushups/v_HandStandPushups_g09_c02.avi 2\n",
        "\r\n",
    )
    test = _write(tmp_path / "testlist01.txt", "HandStandPushups/v_HandStandPushups_g01_c01.avi\n", "\r\n")
    ix = read_ucf101_list(train, ci)
    assert ix.labels() == [0, 1] and [r.group for r in ix] == ["g08", "g09"]
    assert read_ucf101_list(test, ci).records[0].label == 1
    assert ucf101_group("Alpha/v_Alpha_g08_c01") == "g08" and ucf101_group("x/abc_g08_c01.mp4") is None
    _write(train, "Alpha/v_Alpha_g08_c01.avi 3\n")
    with pytest.raises(SplitError, match=r"trainlist01\.txt:1: label 3 out of range 1\.\.2"):
        read_ucf101_list(train, ci)
    _write(train, "Alpha/v_Alpha_g08_c01.avi 2\n")
    with pytest.raises(
        SplitError, match=r"trainlist01\.txt:1: label 2 is 'HandstandPushups' but the folder is 'Alpha'"
    ):
        read_ucf101_list(train, ci)
    _write(ci, "1 Alpha\n3 Beta\n")
    with pytest.raises(SplitError, match=r"classInd\.txt:2: class index 3 out of order"):
        read_ucf101_classind(ci)


def test_hmdb51_official_format(tmp_path: Path):
    _write(tmp_path / "wave_test_split1.txt", "w1.avi 1 \nw2.avi 2 \nw3.avi 0 \n")
    _write(tmp_path / "clap_test_split1.txt", "c1.avi 2 \n\n")
    _write(tmp_path / "clap_test_split2.txt", "c1.avi 1 \n")
    train, test, unused = read_hmdb51_split(tmp_path, 1)
    assert train.classes == ["clap", "wave"]
    assert train.paths() == ["wave/w1.avi"] and train.labels() == [1]
    assert test.paths() == ["clap/c1.avi", "wave/w2.avi"] and unused.paths() == ["wave/w3.avi"]
    _write(tmp_path / "wave_test_split1.txt", "w1.avi 3\n")
    with pytest.raises(SplitError, match=r"wave_test_split1\.txt:1: flag 3"):
        read_hmdb51_split(tmp_path, 1)
    with pytest.raises(SplitError, match="no '\\*_test_split3.txt' files"):
        read_hmdb51_split(tmp_path, 3)


def test_kinetics_csv(tmp_path: Path):
    f = _write(
        tmp_path / "train.csv",
        "label,youtube_id,time_start,time_end,split\n"
        "air drumming,-abc123,5,15,train\nabseiling,xyz,0,10,train\n",
    )
    ix = read_kinetics_csv(f)
    assert ix.classes == ["abseiling", "air_drumming"]
    assert ix.paths() == ["air_drumming/-abc123_000005_000015.mp4", "abseiling/xyz_000000_000010.mp4"]
    assert ix.labels() == [1, 0] and ix.records[0].group == "-abc123" and ix.records[0].origin == f"{f}:2"
    _write(f, "label,youtube_id,time_start,time_end,split\nabseiling,xyz,zero,10,train\n")
    with pytest.raises(SplitError, match=r"train\.csv:2: time_start"):
        read_kinetics_csv(f)


def test_groups_csv_and_folder_tree(tmp_path: Path):
    root = tmp_path / "data"
    for p in (
        "fight/a.mp4",
        "fight/b.mp4",
        "noFight/sub/c.avi",
        "noFight/d.mp4",
        "noFight/notes.txt",
        "top.mp4",
        ".hidden/e.mp4",
    ):
        (root / p).parent.mkdir(parents=True, exist_ok=True)
        (root / p).touch()
    groups = _write(
        tmp_path / "groups.csv",
        "path,label,source_group\nfight/a.mp4,fight,g1\nfight/b.mp4,fight,g2\nnoFight/sub/c.avi,noFight,g1\n",
    )
    assert read_groups_csv(groups) == {"fight/a.mp4": "g1", "fight/b.mp4": "g2", "noFight/sub/c.avi": "g1"}
    ix = read_folder_tree(root, groups_csv=groups)
    assert ix.classes == ["fight", "noFight"]
    assert ix.paths() == ["fight/a.mp4", "fight/b.mp4", "noFight/d.mp4", "noFight/sub/c.avi"]
    assert ix.labels() == [0, 0, 1, 1] and [r.group for r in ix] == ["g1", "g2", None, "g1"]
    assert read_folder_tree(root, classes=["noFight", "fight", "other"]).labels() == [1, 1, 0, 0]
    with pytest.raises(SplitError, match="not in the given classes"):
        read_folder_tree(root, classes=["fight"])
    _write(groups, "file,group\nx,y\n")
    with pytest.raises(SplitError, match=r"groups\.csv:1: header needs"):
        read_groups_csv(groups)


def test_real_surv_fight_tree():
    root = SHARED / "surv_fight"
    if not root.is_dir():
        pytest.skip(f"shared data not found at {SHARED}")
    ix = read_folder_tree(root, groups_csv=root / "groups.csv")
    assert len(ix) == 300 and ix.classes == ["fight", "noFight"]
    assert Counter(ix.labels()) == {0: 150, 1: 150}
    assert all(r.group for r in ix)
    train, test = make_group_split(ix, 0.2, seed=0)
    assert not {r.group for r in train} & {r.group for r in test}
    assert all(abs(n - 30) <= 3 for n in Counter(test.labels()).values())


# --------------------------------------------------------------------------- generators


def _toy_index(n_classes: int = 4, per_class: int = 20, groups: int = 10) -> VideoIndex:
    records = [
        VideoRecord(f"c{c}/v{i:03d}.mp4", c, f"s{(i * 7 + c) % groups}")
        for c in range(n_classes) for i in range(per_class + 3 * c)
    ]
    return VideoIndex(records, [f"c{c}" for c in range(n_classes)])


def test_labeled_split_balance_and_determinism():
    ix = _toy_index()
    np_state, py_state = np.random.get_state(), random.getstate()
    a = make_labeled_split(ix, per_class=5, seed=1)
    assert Counter(a.labels()) == {c: 5 for c in range(4)}
    assert a.paths() == make_labeled_split(ix, per_class=5, seed=1).paths()
    assert a.paths() != make_labeled_split(ix, per_class=5, seed=2).paths()
    # nested: a smaller draw with the same seed is a subset of a larger one
    assert set(make_labeled_split(ix, per_class=2, seed=1).paths()) <= set(a.paths())
    # independent of the list order
    shuffled = VideoIndex(ix.records[::-1], ix.classes)
    assert sorted(make_labeled_split(shuffled, per_class=5, seed=1).paths()) == sorted(a.paths())
    pct = make_labeled_split(ix, percent=10, seed=0)
    assert Counter(pct.labels()) == {0: 2, 1: 2, 2: 3, 3: 3}  # 10 % of 20, 23, 26, 29, rounded
    assert Counter(make_labeled_split(ix, percent=1, seed=0).labels()) == {c: 1 for c in range(4)}
    assert np.array_equal(np.random.get_state()[1], np_state[1]) and random.getstate() == py_state
    with pytest.raises(ValueError):
        make_labeled_split(ix, per_class=1, percent=1)
    with pytest.warns(UserWarning, match="fewer videos than asked"):
        assert len(make_labeled_split(ix, per_class=25)) == 20 + 23 + 25 + 25


def test_labeled_split_avoids_test_groups():
    ix = _toy_index()
    test = VideoIndex([r for r in ix if r.group in ("s0", "s1")], ix.classes)
    labeled = make_labeled_split(ix, per_class=5, seed=0, group_disjoint_test=test)
    assert len(labeled) == 20 and not {r.group for r in labeled} & {"s0", "s1"}


def test_group_split_is_leak_free_and_stratified():
    ix = _toy_index(groups=12)
    for seed in range(3):
        train, test = make_group_split(ix, 0.25, seed=seed)
        assert len(train) + len(test) == len(ix)
        assert not {r.group for r in train} & {r.group for r in test}
        assert verify_split(train, test=test).ok
        for c, n in Counter(test.labels()).items():
            assert abs(n - 0.25 * (20 + 3 * c)) <= 4
    assert make_group_split(ix, 0.25, 0)[1].paths() == make_group_split(ix, 0.25, 0)[1].paths()
    assert make_group_split(ix, 0.25, 0)[1].paths() != make_group_split(ix, 0.25, 1)[1].paths()


def test_write_read_round_trip(tmp_path: Path):
    ix = make_labeled_split(_toy_index(), per_class=3, seed=0)
    write_list(ix, tmp_path / "out" / "labeled.txt")
    assert (tmp_path / "out" / "labeled.txt").read_text().splitlines()[
        0
    ] == f"{ix.records[0].path} {ix.records[0].label}"
    back = read_list(tmp_path / "out" / "labeled.txt", classes=ix.classes)
    assert back.paths() == ix.paths() and back.labels() == ix.labels() and back.classes == ix.classes
    assert read_list(tmp_path / "out" / "labeled.txt").labels() == ix.labels()
    with pytest.raises(SplitError, match="white space"):
        write_list(VideoIndex([VideoRecord("a b/c.mp4", 0)], ["a b"]), tmp_path / "x.txt")


# --------------------------------------------------------------------------- verification


def test_verify_split_findings():
    ix = _toy_index(n_classes=3, per_class=6)
    labeled = make_labeled_split(ix, per_class=2, seed=0)
    test = VideoIndex([r for r in ix if r.group == "s3"], ix.classes)
    train = VideoIndex([r for r in ix if r.group != "s3"], ix.classes)
    labeled = make_labeled_split(train, per_class=2, seed=0)
    unlabeled = train.without(labeled)
    assert verify_split(labeled, unlabeled, test, index=train).ok

    leaked = VideoIndex(
        labeled.records + [VideoRecord(test.records[0].path.replace(".mp4", ".avi"), 0, None, "x.txt:9")], ix.classes
    )
    report = verify_split(leaked, unlabeled, test)
    assert not report.ok and any("also in the test list" in e and "x.txt:9" in e for e in report.errors)

    no_c2 = VideoIndex([r for r in labeled if r.label != 2], ix.classes)
    report = verify_split(no_c2, test=test)
    assert report.errors == ["1 class(es) with no labelled video: 2 c2"]
    assert report.labeled_counts == [2, 2, 0]
    assert "FAILED" in report.format() and "c2" in report.format(verbose=True)

    # labelled ⊂ unlabelled (LTG style) is a warning by default, configurable
    assert verify_split(labeled, train, test).ok and verify_split(labeled, train, test).warnings
    assert not verify_split(labeled, train, test, labeled_in_unlabeled="error").ok
    assert not verify_split(labeled, train, test, labeled_in_unlabeled="ok").warnings

    bad = VideoIndex(labeled.records + [labeled.records[0], VideoRecord("c0/new.mp4", 7)], ix.classes)
    errors = " | ".join(verify_split(bad, index=train).errors)
    assert "duplicate" in errors and "outside 0..2" in errors and "not in the train index" in errors

    same_group = VideoIndex(labeled.records + [VideoRecord("c0/other.mp4", 0, "s3")], ix.classes)
    assert any("group(s) in both labelled and test: s3" in e for e in verify_split(same_group, test=test).errors)


# --------------------------------------------------------------------------- command line


def test_cli_make_and_verify(tmp_path: Path, capsys):
    root = tmp_path / "videos"
    lines = ["path,group"]
    for c in ("fight", "noFight"):
        for i in range(12):
            (root / c).mkdir(parents=True, exist_ok=True)
            (root / c / f"{c}{i:02d}.mp4").touch()
            lines.append(f"{c}/{c}{i:02d}.mp4,src{i // 2}")
    groups = _write(tmp_path / "groups.csv", "\n".join(lines) + "\n")
    out, test_out, unl = tmp_path / "labeled.txt", tmp_path / "test.txt", tmp_path / "unlabeled.txt"
    argv = ["make", "--root", str(root), "--groups", str(groups), "--per-class", "2", "--seed", "3",
            "--out", str(out), "--test-out", str(test_out), "--test-fraction", "0.25", "--unlabeled-out", str(unl)]
    assert splits_main(argv) == 0
    printed = capsys.readouterr().out
    assert "labelled: 4 videos" in printed and "OK" in printed
    labeled, test = read_list(out, classes=["fight", "noFight"]), read_list(test_out, classes=["fight", "noFight"])
    assert Counter(labeled.labels()) == {0: 2, 1: 2}
    # the groups are src0..src5 in both classes: no source may reach both sides
    src = {f"{c}/{c}{i:02d}.mp4": i // 2 for c in ("fight", "noFight") for i in range(12)}
    assert not {src[p] for p in labeled.paths() + read_list(unl).paths()} & {src[p] for p in test.paths()}

    assert splits_main(["verify", "--labeled", str(out), "--test", str(test_out), "--unlabeled", str(unl)]) == 0
    assert "OK" in capsys.readouterr().out
    # a labelled video in the test list makes verify fail
    _write(test_out, test_out.read_text() + out.read_text().splitlines()[0] + "\n")
    assert splits_main(["verify", "--labeled", str(out), "--test", str(test_out)]) == 1
    assert "also in the test list" in capsys.readouterr().out

    assert splits_main(["make", "--root", str(root), "--out", str(out)]) == 2  # --per-class/--percent missing
    assert splits_main(["make", "--list", str(tmp_path / "missing.txt"), "--percent", "10", "--out", str(out)]) == 1
    assert "list file not found" in capsys.readouterr().err


def test_cli_official_ucf101(splits_dir: Path, tmp_path: Path, capsys):
    out, test_out = tmp_path / "l.txt", tmp_path / "t.txt"
    argv = ["make", "--dataset", "ucf101", "--splits-dir", str(splits_dir / "ucf101"), "--split", "1",
            "--per-class", "1", "--out", str(out), "--test-out", str(test_out)]
    assert splits_main(argv) == 0
    classes = str(splits_dir / "ucf101" / "classInd.txt")
    assert len(read_list(out, classes=read_class_names(classes))) == 101
    assert len(read_list(test_out)) == 3783
    verify = ["verify", "--labeled", str(out), "--test", str(splits_dir / "ucf101" / "testlist01.txt"),
              "--train", str(splits_dir / "ucf101" / "trainlist01.txt"), "--classes", classes]
    capsys.readouterr()
    assert splits_main(verify) == 0, capsys.readouterr().out
