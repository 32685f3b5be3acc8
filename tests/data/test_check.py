"""``ssvar check-videos``: every kind of bad file is reported, clean trees pass."""

from __future__ import annotations

import json
import os
import re

import pytest
from helpers import write_text, write_truncated, write_zero_byte

from ssvar.commands import check_videos_main
from ssvar.data.check import check_video


@pytest.fixture
def bad_tree(video_factory, tmp_path):
    """``tmp_path/bad``: 2 good videos and one file of each bad kind; returns (root, bad names)."""
    root = tmp_path / "bad"
    video_factory("bad/a/good1.mp4", num_frames=24)
    video_factory("bad/b/good2.avi", num_frames=24, codec="mpeg4")
    full_mp4 = video_factory("sources/full.mp4", num_frames=48)
    full_mkv = video_factory("sources/full.mkv", num_frames=48, gop=8)
    bad = {
        "a/zero.mp4": write_zero_byte(root / "a" / "zero.mp4"),
        "a/truncated.mp4": write_truncated(root / "a" / "truncated.mp4", full_mp4, 0.5),
        # an index-less container: the first half still decodes, without any FFmpeg error
        "b/truncated.mkv": write_truncated(root / "b" / "truncated.mkv", full_mkv, 0.5),
        "b/text.mp4": write_text(root / "b" / "text.mp4"),
        "b/short.mp4": video_factory("bad/b/short.mp4", num_frames=3),
    }
    write_text(root / "b" / "notes.txt")  # not a video extension: ignored
    return root, bad


def reported(out: str) -> set[str]:
    """The relative paths of the ``BAD`` lines, with forward slashes."""
    return {line.split()[1].rstrip(":").replace(os.sep, "/") for line in out.splitlines() if line.startswith("BAD")}


def test_bad_files_are_reported(bad_tree, capsys):
    root, bad = bad_tree
    assert check_videos_main([str(root), "--workers", "1"]) == 1
    out = capsys.readouterr().out
    assert reported(out) == set(bad)
    assert re.search(r"truncated\.mkv: truncated\? decoded \d+ of the 48 frames", out)
    assert "only 3 frames (< 8)" in out
    assert "7 videos checked, 5 bad" in out
    assert "notes.txt" not in out


def test_clean_tree_passes(tiny_tree, capsys):
    assert check_videos_main([str(tiny_tree), "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "BAD" not in out and "9 videos checked, 0 bad" in out


def test_process_pool(bad_tree, capsys):
    root, bad = bad_tree
    assert check_videos_main([str(root), "--workers", "2"]) == 1
    assert reported(capsys.readouterr().out) == set(bad)


def test_min_frames(bad_tree, capsys):
    root, bad = bad_tree
    check_videos_main([str(root), "--workers", "1", "--min-frames", "2"])
    assert reported(capsys.readouterr().out) == set(bad) - {"b/short.mp4"}


def test_quick(bad_tree, tiny_tree, capsys):
    assert check_videos_main([str(tiny_tree), "--quick", "--workers", "1"]) == 0
    capsys.readouterr()
    root, _ = bad_tree
    assert check_videos_main([str(root), "--quick", "--workers", "1"]) == 1
    # the first frame is enough to catch broken headers; truncation and length need a full decode
    assert reported(capsys.readouterr().out) == {"a/zero.mp4", "a/truncated.mp4", "b/text.mp4"}


def test_json(bad_tree, capsys):
    root, bad = bad_tree
    assert check_videos_main([str(root), "--json", "--workers", "1"]) == 1
    captured = capsys.readouterr()
    rows = [json.loads(line) for line in captured.out.splitlines()]
    assert {os.path.relpath(r["path"], root).replace(os.sep, "/") for r in rows} == set(bad)
    assert all(set(r) == {"path", "ok", "frames", "problem"} and r["ok"] is False and r["problem"] for r in rows)
    assert {r["frames"] for r in rows if r["path"].endswith("short.mp4")} == {3}
    assert "7 videos checked, 5 bad" in captured.err


def test_check_video_directly(video_factory, tmp_path):
    good = check_video(video_factory("v.mp4", num_frames=10))
    assert good.ok and good.frames == 10 and good.problem == ""
    missing = check_video(str(tmp_path / "missing.mp4"))
    assert not missing.ok and "not found" in missing.problem


def test_not_a_directory(tmp_path):
    with pytest.raises(SystemExit):
        check_videos_main([str(tmp_path / "nope")])
