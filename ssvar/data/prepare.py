"""``ssvar prepare-videos SRC DST``: re-encode a dataset once so that training decodes it fast.

Every video under ``SRC`` (or every video a split list names) is decoded and written to the same
relative path under ``DST`` as H.264 in MP4: short side scaled to ``--short-side`` (never up),
yuv420p, a short fixed GOP (a keyframe every ``--gop`` frames, so a seek lands near any clip),
no audio. Frame times are kept, so every frame index, frame count and duration stays the same.

* Parallel over processes (``--workers``), with a progress bar.
* Resumable: an output is written to a hidden ``.<name>.partial`` file next to it and renamed only
  once it is verified, so a finished output is complete; a rerun skips the outputs its manifest
  lists as done (``--overwrite`` redoes them).
* Verified: each output is decoded again and must give the source's decoded frame count and
  duration (within one frame).
* Failures (unreadable sources, failed verification) are reported per file and in the manifest;
  they do not stop the run; the exit status is 1 when any file failed.
* ``DST/prepare-manifest.json``: the settings, and per video the source, its size, frames, fps and
  geometry, and the output's.
* Split lists (``--list``, repeatable): only the listed videos are prepared, and each list is
  written to ``DST`` under its own name with the paths' extension changed where the container
  changed (``.avi`` -> ``.mp4``), so the list stays valid for the prepared root.

Needs only PyAV (its wheels bundle FFmpeg with libx264); no system ffmpeg.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from typing import cast

MANIFEST = "prepare-manifest.json"
JOURNAL = ".prepare-journal.jsonl"  # one line per finished video while a run is under way
OUTPUT_EXT = ".mp4"


@dataclass(frozen=True)
class PrepareSettings:
    """How outputs are encoded; a rerun on the same ``DST`` must use the same settings."""

    short_side: int = 128
    gop: int = 16
    crf: int = 23
    preset: str = "veryfast"
    tune: str = "fastdecode"  # no CABAC, no deblocking: cheaper to decode, a little larger
    bframes: int = 0
    codec: str = "libx264"
    pix_fmt: str = "yuv420p"

    def __post_init__(self):
        if self.short_side < 2:
            raise ValueError(f"short_side must be >= 2, got {self.short_side}")
        if self.gop < 1:
            raise ValueError(f"gop must be >= 1, got {self.gop}")
        if not 0 <= self.crf <= 51:
            raise ValueError(f"crf must be in 0..51, got {self.crf}")


@dataclass
class PrepareResult:
    """One video's outcome (one manifest entry)."""

    source: str  # relative to SRC, forward slashes
    output: str  # relative to DST
    status: str  # "done", "failed" or "skipped" (done by an earlier run)
    problem: str = ""
    source_bytes: int = 0
    source_frames: int = 0  # decoded, not the header's
    source_fps: float = 0.0
    source_size: list[int] = field(default_factory=list)  # [width, height]
    duration: float = 0.0  # seconds, first frame's time to the end of the last frame
    output_bytes: int = 0
    output_frames: int = 0
    output_size: list[int] = field(default_factory=list)
    output_duration: float = 0.0
    cpu_seconds: float = 0.0  # decode + encode + verify, in the worker


class VerificationError(RuntimeError):
    """The re-encoded file does not decode to the source's frames."""


def output_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """Scale so the short side is ``short_side`` (never upscale); even sizes for yuv420p."""
    scale = min(1.0, short_side / min(width, height))

    def even(x: float) -> int:
        return max(2, int(round(x / 2)) * 2)

    return even(width * scale), even(height * scale)


def output_path(rel: str) -> str:
    """The relative output path of relative source path ``rel`` (extension -> ``.mp4``)."""
    return os.path.splitext(rel)[0] + OUTPUT_EXT


def _partial_path(out: str) -> str:
    d, name = os.path.split(out)
    return os.path.join(d, f".{name}.partial")


# -- one video ----------------------------------------------------------------------------------
def _encode(src: str, tmp: str, s: PrepareSettings) -> dict:
    """Decode ``src`` and write it re-encoded to ``tmp``; returns what was decoded."""
    import av
    from av.video.stream import VideoStream

    if not os.path.isfile(src):
        raise FileNotFoundError("file not found")
    if os.path.getsize(src) == 0:
        raise ValueError("empty file (0 bytes)")
    with av.open(src, metadata_errors="ignore") as inp:
        if not inp.streams.video:
            raise ValueError("no video stream")
        ist = inp.streams.video[0]
        ist.thread_type = "SLICE"
        ist.thread_count = 1
        rate = ist.average_rate or ist.guessed_rate or Fraction(25)
        tb = ist.time_base or Fraction(1, int(round(rate)))
        width, height = ist.codec_context.width, ist.codec_context.height
        if not width or not height:
            raise ValueError("the video stream has no frame size")
        ow, oh = output_size(width, height, s.short_side)
        with av.open(tmp, mode="w", format="mp4") as out:
            ost = cast(VideoStream, out.add_stream(s.codec, rate=rate))
            ost.width, ost.height, ost.pix_fmt = ow, oh, s.pix_fmt
            # Keep the source's time base and times: frame i stays at the same time.
            ost.time_base = tb
            ost.codec_context.time_base = tb
            ost.codec_context.gop_size = s.gop
            opts: dict[str, object] = {"crf": str(s.crf), "preset": s.preset, "threads": "1",
                    "x264-params": f"keyint={s.gop}:min-keyint={s.gop}:scenecut=0:bframes={s.bframes}:b-pyramid=none"}
            if s.tune:
                opts["tune"] = s.tune
            ost.options = opts
            n, first, last, prev = 0, None, None, None
            for frame in inp.decode(ist):
                pts = frame.pts
                if pts is None or (prev is not None and pts <= prev):
                    pts = (prev + 1) if prev is not None else 0  # no or out-of-order time: next tick
                if first is None:
                    first = pts
                prev = pts
                img = frame.reformat(width=ow, height=oh, format=s.pix_fmt, interpolation="AREA")
                img.pts, img.time_base = pts - first, tb
                out.mux(ost.encode(img))
                n, last = n + 1, pts
            out.mux(ost.encode(None))
    if n == 0:
        raise ValueError("no frame could be decoded")
    return {"frames": n, "fps": float(rate), "size": [width, height], "out_size": [ow, oh],
            "duration": _duration(first, last, tb, rate)}


def _duration(first, last, tb, rate) -> float:
    return float((last - first) * tb) + 1 / float(rate)


def _decoded_stats(path: str) -> tuple[int, float, list[int]]:
    """Frames, duration and size of ``path``, by decoding every frame."""
    import av

    with av.open(path, format="mp4" if path.endswith(".partial") else None) as c:
        st = c.streams.video[0]
        st.thread_count = 1
        n, first, last = 0, None, None
        for frame in c.decode(st):
            if first is None:
                first = frame.pts
            last = frame.pts
            n += 1
        rate = st.average_rate or Fraction(25)
        size = [st.codec_context.width, st.codec_context.height]
        if n == 0:
            return 0, 0.0, size
        return n, _duration(first or 0, last or 0, st.time_base, rate), size


def prepare_one(src: str, dst: str, rel: str, settings: PrepareSettings) -> PrepareResult:
    """Re-encode ``src`` to ``dst`` (atomically, verified); never raises for a bad input."""
    c0 = time.process_time()
    res = PrepareResult(source=rel, output=output_path(rel), status="failed")
    tmp = _partial_path(dst)
    try:
        os.makedirs(os.path.dirname(dst) or ".", exist_ok=True)
        res.source_bytes = os.path.getsize(src) if os.path.isfile(src) else 0
        got = _encode(src, tmp, settings)
        res.source_frames, res.source_fps, res.source_size, res.duration = (
            got["frames"], got["fps"], got["size"], got["duration"])
        frames, duration, size = _decoded_stats(tmp)
        res.output_frames, res.output_duration, res.output_size = frames, duration, size
        if frames != got["frames"]:
            raise VerificationError(
                f"verification failed: the output decodes to {frames} frames, the source to {got['frames']}"
            )
        if abs(duration - got["duration"]) > 1.01 / got["fps"]:
            raise VerificationError(
                f"verification failed: the output lasts {duration:.3f} s, the source {got['duration']:.3f} s")
        os.replace(tmp, dst)  # atomic: dst is either absent or complete
        res.output_bytes = os.path.getsize(dst)
        res.status = "done"
    except Exception as e:  # a bad input must not stop the run: report it
        res.problem = str(e) if isinstance(e, VerificationError) else f"{type(e).__name__}: {e}"
        if os.path.exists(tmp):
            os.remove(tmp)
    res.cpu_seconds = time.process_time() - c0
    return res


def _job(args: tuple[str, str, str, PrepareSettings]) -> PrepareResult:
    return prepare_one(*args)


# -- the dataset --------------------------------------------------------------------------------
def _video_rels(src: str) -> list[str]:
    from ssvar.data.check import find_videos

    return [os.path.relpath(p, src).replace(os.sep, "/") for p in find_videos(src)]


def _other_files(src: str) -> list[str]:
    """Non-video, non-hidden files of the tree (dataset notes, group CSVs): copied as they are."""
    from ssvar.data.index import VIDEO_EXTENSIONS

    found = []
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for f in sorted(filenames):
            if not f.startswith(".") and os.path.splitext(f)[1].lower() not in VIDEO_EXTENSIONS:
                found.append(os.path.relpath(os.path.join(dirpath, f), src).replace(os.sep, "/"))
    return found


def _list_paths(list_path: str) -> list[tuple[int, str]]:
    """(line number, path) of a ``path [label ...]`` list (UCF101, HMDB51 mmaction, ssvar lists)."""
    out = []
    with open(list_path, encoding="utf-8-sig") as f:
        for lineno, line in enumerate(f, 1):
            text = line.strip()
            if text and not text.startswith("#"):
                out.append((lineno, text.split()[0].replace("\\", "/")))
    return out


def rewrite_list(list_path: str, out_path: str) -> int:
    """Copy a list with each path's video extension changed to ``.mp4``; returns lines changed."""
    from ssvar.data.index import VIDEO_EXTENSIONS

    changed = 0
    with open(list_path, encoding="utf-8-sig") as f:
        lines = f.read().splitlines(keepends=True)
    new = []
    for line in lines:
        text = line.strip()
        if text and not text.startswith("#"):
            first = line.split()[0]
            stem, ext = os.path.splitext(first)
            if ext.lower() in VIDEO_EXTENSIONS and ext != OUTPUT_EXT:
                at = line.index(first)
                line = line[:at] + stem + OUTPUT_EXT + line[at + len(first):]
                changed += 1
        new.append(line)
    tmp = out_path + ".partial"
    with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(new)
    os.replace(tmp, out_path)
    return changed


def _previous_run(dst: str) -> tuple[dict | None, list[dict]]:
    """Settings and entries of earlier runs: the manifest, then the journal of an interrupted run."""
    settings, entries = None, []
    path = os.path.join(dst, MANIFEST)
    if os.path.isfile(path):
        with open(path) as f:
            doc = json.load(f)
        settings, entries = doc.get("settings"), doc.get("videos", [])
    journal = os.path.join(dst, JOURNAL)
    if os.path.isfile(journal):
        with open(journal) as f:
            for line in f:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:  # the last line of a killed run may be cut
                    continue
                if "settings" in row:
                    settings = row["settings"] if settings is None else settings
                else:
                    entries.append(row)
    return settings, entries


def _write_manifest(dst: str, settings: PrepareSettings, src: str, results: dict[str, PrepareResult]) -> None:
    entries = [asdict(results[k]) for k in sorted(results)]
    doc = {"tool": "ssvar prepare-videos", "source_root": os.path.basename(os.path.abspath(src)),
           "settings": asdict(settings), "videos": entries}
    tmp = os.path.join(dst, f".{MANIFEST}.partial")
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1)
    os.replace(tmp, os.path.join(dst, MANIFEST))


def prepare_videos(
    src: str,
    dst: str,
    settings: PrepareSettings = PrepareSettings(),
    lists: list[str] | None = None,
    workers: int = 1,
    overwrite: bool = False,
    copy_other: bool = True,
    progress: bool = True,
    log=print,
) -> dict[str, PrepareResult]:
    """Prepare every video of ``src`` (or of ``lists``) into ``dst``; returns results by source path.

    Each finished video is appended to a journal in ``dst`` (an interrupted run keeps what it
    did); the manifest is written at the end and the journal removed.
    """
    if not os.path.isdir(src):
        raise NotADirectoryError(f"SRC is not a directory: {src}")
    if os.path.abspath(src) == os.path.abspath(dst):
        raise ValueError("DST must differ from SRC (outputs would replace the sources)")
    os.makedirs(dst, exist_ok=True)
    old_settings, old_entries = _previous_run(dst)
    if old_settings is not None and old_settings != asdict(settings) and not overwrite:
        raise ValueError(
            f"{dst} was prepared with other settings ({old_settings}); "
            "use another DST, the same settings, or --overwrite"
        )
    done_before = (
        {}
        if overwrite
        else {
            e["source"]: PrepareResult(**{**e, "status": "skipped"})
            for e in old_entries
            if e["status"] in ("done", "skipped")
        }
    )

    if lists:
        names = [os.path.basename(p) for p in lists]
        if len(set(names)) != len(names):
            raise ValueError(f"two --list files share a name, they would overwrite each other in DST: {names}")
        rels = list(dict.fromkeys(p for lp in lists for _, p in _list_paths(lp)))
    else:
        rels = _video_rels(src)
    results: dict[str, PrepareResult] = {}
    jobs = []
    for rel in rels:
        dst_file = os.path.join(dst, output_path(rel))
        if rel in done_before and os.path.isfile(dst_file):
            results[rel] = done_before[rel]
        else:
            jobs.append((os.path.join(src, rel), dst_file, rel, settings))
    if results:
        log(f"{len(results)} videos already prepared in {dst}: skipped")

    from tqdm.auto import tqdm

    bar = tqdm(total=len(jobs), desc="preparing videos", unit="video", disable=not progress)
    failed = 0
    journal_path = os.path.join(dst, JOURNAL)
    journal = open(journal_path, "w" if overwrite else "a")
    journal.write(json.dumps({"settings": asdict(settings)}) + "\n")

    def record(r: PrepareResult) -> None:
        nonlocal failed
        results[r.source] = r
        failed += r.status == "failed"
        bar.set_postfix(failed=failed)
        bar.update(1)
        journal.write(json.dumps(asdict(r)) + "\n")
        journal.flush()

    try:
        if workers > 1 and len(jobs) > 1:
            ex = ProcessPoolExecutor(workers)
            try:
                futures = {ex.submit(_job, j): j for j in jobs}
                for fut in as_completed(futures):
                    try:
                        record(fut.result())
                    except BrokenProcessPool as e:  # a worker died (FFmpeg crash, out of memory)
                        j = futures[fut]
                        record(PrepareResult(j[2], output_path(j[2]), "failed", f"worker process died: {e}"))
            except BaseException:  # Ctrl-C: do not wait for the queued videos
                ex.shutdown(wait=False, cancel_futures=True)
                raise
            ex.shutdown()
        else:
            for j in jobs:
                record(_job(j))
    finally:
        bar.close()
        journal.close()
    # Only a run that went through every job gets here: the manifest replaces the journal.
    # Videos an earlier run prepared that this run was not asked for (another list) stay listed.
    kept = {k: v for k, v in done_before.items() if k not in results and os.path.isfile(os.path.join(dst, v.output))}
    _write_manifest(dst, settings, src, {**kept, **results})
    os.remove(journal_path)

    for lp in lists or []:
        out = os.path.join(dst, os.path.basename(lp))
        n = rewrite_list(lp, out)
        log(f"wrote {out}" + (f" ({n} paths now end in {OUTPUT_EXT})" if n else ""))
    if copy_other and not lists:
        for rel in _other_files(src):
            target = os.path.join(dst, rel)
            if rel != MANIFEST and not os.path.exists(target):
                os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
                shutil.copyfile(os.path.join(src, rel), target)
    return results


def __getattr__(name: str):
    if name == "prepare_videos_main":  # the command moved to the CLI layer; kept importable from here
        from ssvar.commands import prepare_videos_main

        return prepare_videos_main
    raise AttributeError(f"module 'ssvar.data.prepare' has no attribute {name!r}")
