"""Find unreadable or too-short videos before training (``ssvar check-videos ROOT``).

Every video is opened and its stream decoded (no RGB conversion), and the decoded frame count is
compared with the header's, so truncated files are caught, not only broken headers. Exit status 1
when any file is bad.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from ssvar.data.decode import PyAVDecoder, VideoDecodeError
from ssvar.data.index import VIDEO_EXTENSIONS


@dataclass
class VideoCheck:
    path: str
    ok: bool
    frames: int
    problem: str = ""


def check_video(path: str, min_frames: int = 8, full: bool = True) -> VideoCheck:
    """Decode ``path`` (all frames when ``full``, else the first) and report what is wrong."""
    import av

    if not os.path.isfile(path):
        return VideoCheck(path, False, 0, "file not found")
    if os.path.getsize(path) == 0:
        return VideoCheck(path, False, 0, "empty file (0 bytes)")
    n = 0
    try:
        with av.open(path, metadata_errors="ignore") as container:
            if not container.streams.video:
                return VideoCheck(path, False, 0, "no video stream")
            announced = _announced_frames(container, path) if full else 0
            for _ in container.decode(video=0):
                n += 1
                if not full:
                    break
    except Exception as e:  # FFmpeg errors: truncated, corrupt, not a video
        msg = str(VideoDecodeError(path, f"{type(e).__name__}: {e}"))
        return VideoCheck(path, False, n, msg + (f" after {n} frames" if n else ""))
    if n == 0:
        return VideoCheck(path, False, 0, "no frame could be decoded")
    if n < _MIN_DECODED_FRACTION * announced:
        # Containers without an index at the end (MKV, WebM, AVI) decode up to the cut without errors.
        return VideoCheck(path, False, n, f"truncated? decoded {n} of the {announced} frames the header announces")
    if full and n < min_frames:
        return VideoCheck(path, False, n, f"only {n} frames (< {min_frames})")
    return VideoCheck(path, True, n)


_MIN_DECODED_FRACTION = 0.9  # headers may over-count a little; fewer frames than this: truncated


def _announced_frames(container, path: str) -> int:
    """The frame count the header gives (or its duration implies); 0 when unknown."""
    try:
        return PyAVDecoder._stream_info(container, path)[0].num_frames
    except VideoDecodeError:
        return 0


def find_videos(root: str, extensions=VIDEO_EXTENSIONS) -> list[str]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [os.path.join(dirpath, f) for f in sorted(filenames) if os.path.splitext(f)[1].lower() in extensions]
    return found


def _check(args: tuple[str, int, bool]) -> VideoCheck:
    return check_video(*args)


def check_videos(paths: list[str], min_frames: int = 8, full: bool = True, workers: int = 1,
                 progress: bool = True) -> list[VideoCheck]:
    """:func:`check_video` of every path, over ``workers`` processes, in the order given."""
    from tqdm.auto import tqdm

    jobs = [(q, min_frames, full) for q in paths]
    bar = dict(total=len(jobs), desc="checking videos", unit="video", disable=not progress)
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(workers) as ex:
            return list(tqdm(ex.map(_check, jobs, chunksize=4), **bar))
    return [_check(j) for j in tqdm(jobs, **bar)]


def __getattr__(name: str):
    if name == "check_videos_main":  # the command moved to the CLI layer; kept importable from here
        from ssvar.commands import check_videos_main

        return check_videos_main
    raise AttributeError(f"module 'ssvar.data.check' has no attribute {name!r}")
