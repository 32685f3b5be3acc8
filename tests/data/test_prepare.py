"""``ssvar prepare-videos``: re-encoded outputs keep every frame; bad files are reported without
stopping the run; interrupted runs resume; verification failures are caught; lists stay valid."""

from __future__ import annotations

import json
import os

import av
import pytest
from helpers import decoded_index, write_text, write_truncated, write_zero_byte

from ssvar.commands import prepare_videos_main
from ssvar.data import prepare
from ssvar.data.decode import PyAVDecoder
from ssvar.data.prepare import JOURNAL, MANIFEST
from ssvar.data.splits import read_list

ARGS = ["--short-side", "24", "--quiet"]


@pytest.fixture
def tree(video_factory, tmp_path):
    """``tmp_path/src``: 3 good videos (one AVI), a truncated, a text and a zero-byte file."""
    video_factory("src/a/good1.mp4", num_frames=20, width=48, height=32)
    video_factory("src/a/good2.mp4", num_frames=12, width=32, height=48, gop=4)
    video_factory("src/b/good3.avi", num_frames=16, width=40, height=32, codec="mpeg4")
    full = video_factory("full.mp4", num_frames=24)
    root = tmp_path / "src"
    write_truncated(root / "b" / "truncated.mp4", full, 0.5)
    write_text(root / "b" / "text.mp4")
    write_zero_byte(root / "b" / "zero.mp4")
    write_text(root / "notes.csv", "path,group\na/good1.mp4,g1\n")
    return root


GOOD = {"a/good1.mp4": "a/good1.mp4", "a/good2.mp4": "a/good2.mp4", "b/good3.avi": "b/good3.mp4"}
BAD = {"b/truncated.mp4", "b/text.mp4", "b/zero.mp4"}


def frame_indices(path) -> list[int]:
    with av.open(str(path)) as c:
        return [decoded_index(f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]


def manifest(dst) -> dict:
    with open(dst / MANIFEST) as f:
        return json.load(f)


def no_partials(dst) -> bool:
    return not [f for _, _, fs in os.walk(dst) for f in fs if f.endswith(".partial")]


@pytest.mark.parametrize("workers", [1, 2])
def test_good_files_prepared_bad_files_reported(tree, tmp_path, capsys, workers):
    dst = tmp_path / "dst"
    assert prepare_videos_main([str(tree), str(dst), "--workers", str(workers), *ARGS]) == 1
    out = capsys.readouterr().out
    failed = {line.split()[1].rstrip(":") for line in out.splitlines() if line.startswith("FAILED")}
    assert failed == BAD
    assert "empty file (0 bytes)" in out
    assert "6 videos: 3 prepared, 0 skipped (done before), 3 failed" in out
    for src_rel, out_rel in GOOD.items():
        src, res = tree / src_rel, dst / out_rel
        # Every frame kept, in order (the index colour survives the re-encode), at short side 24.
        assert frame_indices(res) == frame_indices(src) == list(range(len(frame_indices(src))))
        info = PyAVDecoder().probe(str(res))
        assert min(info.width, info.height) == 24 and info.width % 2 == 0 and info.height % 2 == 0
        assert info.num_frames == PyAVDecoder().probe(str(src)).num_frames
        with av.open(str(res)) as c:
            assert not c.streams.audio and c.streams.video[0].codec_context.pix_fmt == "yuv420p"
    for rel in BAD:
        assert not (dst / rel).exists()
    m = manifest(dst)
    by = {e["source"]: e for e in m["videos"]}
    assert {k for k, e in by.items() if e["status"] == "done"} == set(GOOD)
    assert {k for k, e in by.items() if e["status"] == "failed"} == BAD
    e = by["a/good1.mp4"]
    assert (e["source_frames"], e["output_frames"], e["source_size"], e["output_size"]) == (20, 20, [48, 32], [36, 24])
    assert e["source_fps"] == 25.0 and e["source_bytes"] > 0 and e["output_bytes"] > 0
    assert m["settings"]["short_side"] == 24 and m["settings"]["gop"] == 16
    assert (dst / "notes.csv").read_text() == (tree / "notes.csv").read_text()  # other files copied
    assert no_partials(dst) and not (dst / JOURNAL).exists()


def test_interrupted_run_resumes_and_skips_finished(tree, tmp_path, monkeypatch, capsys):
    for rel in BAD:  # only good videos here: every run must end "done"
        os.remove(tree / rel)
    dst = tmp_path / "dst"
    real = prepare._encode
    calls = []

    def dies_on_second(src, tmp, settings):
        calls.append(src)
        if len(calls) == 2:
            real(src, tmp, settings)  # the partial file is written, then the run is killed
            raise KeyboardInterrupt
        return real(src, tmp, settings)

    monkeypatch.setattr(prepare, "_encode", dies_on_second)
    assert prepare_videos_main([str(tree), str(dst), "--workers", "1", *ARGS]) == 130
    assert "run the same command again to resume" in capsys.readouterr().err
    finished = [r for r in GOOD.values() if (dst / r).exists()]
    assert len(finished) == 1  # the first; the second was cut before its rename
    assert not manifest_exists(dst) and (dst / JOURNAL).exists()
    mtime = os.path.getmtime(dst / finished[0])
    # A stale partial file (e.g. from a killed process) does not disturb the next run.
    stale = dst / "b" / ".good3.mp4.partial"
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_bytes(b"garbage")

    monkeypatch.setattr(prepare, "_encode", real)
    capsys.readouterr()
    assert prepare_videos_main([str(tree), str(dst), "--workers", "1", *ARGS]) == 0
    out = capsys.readouterr().out
    assert "3 videos: 2 prepared, 1 skipped (done before), 0 failed" in out
    assert os.path.getmtime(dst / finished[0]) == mtime  # not redone
    by = {e["source"]: e for e in manifest(dst)["videos"]}
    assert set(by) == set(GOOD) and all(e["status"] in ("done", "skipped") for e in by.values())
    assert by[[k for k, v in GOOD.items() if v == finished[0]][0]]["output_frames"] > 0  # kept from the journal
    for src_rel, out_rel in GOOD.items():
        assert frame_indices(dst / out_rel) == frame_indices(tree / src_rel)
    assert no_partials(dst) and not (dst / JOURNAL).exists()
    # A third run has nothing to do; other settings on the same DST are refused.
    assert prepare_videos_main([str(tree), str(dst), "--workers", "1", *ARGS]) == 0
    assert "0 prepared, 3 skipped" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        prepare_videos_main([str(tree), str(dst), "--workers", "1", "--short-side", "16", "--quiet"])
    assert "other settings" in capsys.readouterr().err


def manifest_exists(dst) -> bool:
    return (dst / MANIFEST).exists()


def test_verification_failure_is_reported(tree, tmp_path, monkeypatch, capsys):
    real = prepare._decoded_stats

    def loses_a_frame(path):
        n, duration, size = real(path)
        return (n - 1, duration, size) if "good2" in path else (n, duration, size)

    monkeypatch.setattr(prepare, "_decoded_stats", loses_a_frame)
    dst = tmp_path / "dst"
    assert prepare_videos_main([str(tree), str(dst), "--workers", "1", *ARGS]) == 1
    out = capsys.readouterr().out
    assert "FAILED  a/good2.mp4: verification failed: the output decodes to 11 frames, the source to 12" in out
    assert not (dst / "a" / "good2.mp4").exists() and (dst / "a" / "good1.mp4").exists()
    assert no_partials(dst)


def test_split_list_prepared_and_rewritten(tree, tmp_path, capsys):
    lst = tmp_path / "trainlist.txt"
    lst.write_text("a/good1.mp4 1\nb/good3.avi 2\n")
    dst = tmp_path / "dst"
    assert prepare_videos_main([str(tree), str(dst), "--list", str(lst), "--workers", "1", *ARGS]) == 0
    assert "2 videos: 2 prepared" in capsys.readouterr().out
    assert (dst / "trainlist.txt").read_text() == "a/good1.mp4 1\nb/good3.mp4 2\n"
    index = read_list(dst / "trainlist.txt", classes=["a", "b"])
    assert all((dst / r.path).is_file() for r in index)
    assert not (dst / "a" / "good2.mp4").exists()  # not listed: not prepared


def test_cli_entry(tree, tmp_path):
    from ssvar.cli import main

    lst = tmp_path / "list.txt"
    lst.write_text("a/good2.mp4\n")
    assert main(["prepare-videos", str(tree), str(tmp_path / "out"), "--list", str(lst), "--workers", "1", *ARGS]) == 0
    assert (tmp_path / "out" / "a" / "good2.mp4").is_file()
