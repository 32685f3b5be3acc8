"""Test helpers: tiny real videos written with PyAV, and broken files.

By default frame ``i`` of a written video is one uniform colour that encodes ``i`` (red carries
``i % 16``, green ``i // 16``, in steps of 16 levels; at most 256 frames), so it survives lossy
compression, chroma subsampling, resizing and any crop; :func:`decoded_index` reads it back.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from fractions import Fraction

import av
import numpy as np

TINY_CLASSES = ("class_a", "class_b", "class_c")  # the ``tiny_tree`` fixture's class folders

_STEP = 16  # colour levels per index step: far above compression error
_BLUE = 128


def index_colour(i: int) -> tuple[int, int, int]:
    """The RGB colour of frame ``i`` in an index-encoding video (``0 <= i < 256``)."""
    if not 0 <= i < 256:
        raise ValueError(f"an index-encoding video holds at most 256 frames, got index {i}")
    return (_STEP * (i % 16) + _STEP // 2, _STEP * (i // 16) + _STEP // 2, _BLUE)


def decoded_index(frame, channels_first: bool | None = None) -> int:
    """The frame index encoded in ``frame`` (array or tensor, ``[H, W, 3]`` or ``[3, H, W]``).

    ``channels_first`` defaults to "the first axis has size 3 and the last does not".
    """
    a = np.asarray(frame, dtype=np.float64)
    if a.ndim != 3:
        raise ValueError(f"expected one frame [H, W, 3] or [3, H, W], got shape {a.shape}")
    if channels_first is None:
        channels_first = a.shape[0] == 3 and a.shape[-1] != 3
    rgb = a.reshape(3, -1).mean(axis=1) if channels_first else a.reshape(-1, 3).mean(axis=0)
    lo, hi = (int(np.clip(np.floor(v / _STEP), 0, 15)) for v in rgb[:2])
    return lo + 16 * hi


def clip_indices_of(video) -> list[int]:
    """Recovered frame indices of a dataset clip (tensor ``[C, T, H, W]``)."""
    return [decoded_index(video[:, t].numpy(), channels_first=True) for t in range(video.shape[1])]


def _render(content, i: int, width: int, height: int) -> np.ndarray:
    if callable(content):
        img = np.asarray(content(i, height, width), dtype=np.uint8)
        if img.shape != (height, width, 3):
            raise ValueError(f"content({i}) gave shape {img.shape}, expected {(height, width, 3)}")
        return img
    if content == "index":
        return np.broadcast_to(np.array(index_colour(i), dtype=np.uint8), (height, width, 3)).copy()
    if content == "hgradient":
        # A horizontal ramp (the same in every frame): crops at different x differ.
        ramp = np.linspace(0, 255, width).round().astype(np.uint8)
        return np.repeat(np.repeat(ramp[None, :, None], height, axis=0), 3, axis=2)
    raise ValueError(f"unknown content {content!r}: 'index', 'hgradient' or a callable(i, h, w)")


def write_video(
    path: str | os.PathLike,
    num_frames: int,
    width: int = 32,
    height: int = 32,
    fps: int | Fraction = 25,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    vfr_pts: Sequence[int] | None = None,
    gop: int | None = None,
    content: str | Callable[[int, int, int], np.ndarray] = "index",
    faststart: bool = False,
) -> str:
    """Write a real video with PyAV and return its path.

    Args:
        path: output file; the container follows the extension (``.mp4``, ``.avi``, ``.mkv``).
        num_frames, width, height, fps: the video's geometry and nominal rate (``fps`` may be a
            ``Fraction``, e.g. 30000/1001). Odd sizes need ``codec="mpeg4"`` or
            ``pix_fmt="yuv444p"``: libx264 refuses them with ``yuv420p``.
        codec: ``"libx264"`` (H.264) or ``"mpeg4"`` (MPEG-4 Part 2, e.g. in AVI).
        vfr_pts: a variable frame rate: one presentation time per frame in milliseconds (time
            base 1/1000), strictly increasing.
        gop: keyframe interval (several keyframes make seeking matter); ``None``: the encoder's.
        content: ``"index"`` (uniform colour encoding the frame index, see
            :func:`decoded_index`), ``"hgradient"`` (a horizontal ramp) or ``callable(i, h, w)``
            returning a uint8 ``[h, w, 3]`` image.
        faststart: MP4 with its index (moov) at the front (``movflags=faststart``), as web videos.
    """
    path = os.fspath(path)
    if vfr_pts is not None:
        if len(vfr_pts) != num_frames:
            raise ValueError(f"vfr_pts has {len(vfr_pts)} times for {num_frames} frames")
        if any(b <= a for a, b in zip(vfr_pts, vfr_pts[1:])):
            raise ValueError("vfr_pts must be strictly increasing")
    with av.open(path, mode="w", options={"movflags": "faststart"} if faststart else {}) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        if codec == "libx264":
            # Nearly lossless and single-threaded: deterministic and quick for tiny frames.
            stream.options = {"crf": "4", "threads": "1"}
        else:
            stream.codec_context.qmin, stream.codec_context.qmax = 1, 3
        if gop is not None:
            stream.codec_context.gop_size = gop
            if codec == "libx264":
                stream.options = {**stream.options, "keyint_min": str(gop), "sc_threshold": "0"}
        if vfr_pts is not None:
            stream.time_base = Fraction(1, 1000)
            stream.codec_context.time_base = Fraction(1, 1000)
        for i in range(num_frames):
            frame = av.VideoFrame.from_ndarray(_render(content, i, width, height), format="rgb24")
            if vfr_pts is not None:
                frame.pts = int(vfr_pts[i])
                frame.time_base = Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def keyframe_count(path: str | os.PathLike) -> int:
    """How many keyframes the first video stream of ``path`` holds."""
    with av.open(os.fspath(path)) as container:
        return sum(1 for p in container.demux(video=0) if p.is_keyframe and p.size)


def frame_times(path: str | os.PathLike) -> list[float]:
    """Presentation times (seconds) of every decoded frame of ``path``, in display order."""
    with av.open(os.fspath(path)) as container:
        return [float(f.time) for f in container.decode(video=0)]


# -- broken files -------------------------------------------------------------------------------
def write_zero_byte(path: str | os.PathLike) -> str:
    path = os.fspath(path)
    open(path, "wb").close()
    return path


def write_truncated(path: str | os.PathLike, source: str | os.PathLike, fraction: float = 0.5) -> str:
    """The first ``fraction`` of the bytes of the valid video ``source``."""
    path = os.fspath(path)
    with open(source, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: int(len(data) * fraction)])
    return path


def write_text(path: str | os.PathLike, text: str = "this is not a video\n" * 20) -> str:
    """A text file, typically with a video extension."""
    path = os.fspath(path)
    with open(path, "w") as f:
        f.write(text)
    return path


def write_audio_only(path: str | os.PathLike, seconds: float = 0.1, rate: int = 8000) -> str:
    """A valid media file without a video stream (silent PCM; use ``.mkv``)."""
    path = os.fspath(path)
    with av.open(path, mode="w") as container:
        stream = container.add_stream("pcm_s16le", rate=rate)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(np.zeros((1, int(seconds * rate)), np.int16), format="s16", layout="mono")
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def make_broken(kind: str, tmp_path, video_factory) -> str:
    """A broken video of the given kind (zero_byte, truncated_mp4, text_as_mp4, missing, audio_only)."""
    if kind == "zero_byte":
        return write_zero_byte(tmp_path / "zero.mp4")
    if kind == "truncated_mp4":  # the index (moov) is at the end: nothing is readable
        return write_truncated(tmp_path / "trunc.mp4", video_factory("full.mp4", num_frames=24), 0.5)
    if kind == "text_as_mp4":
        return write_text(tmp_path / "text.mp4")
    if kind == "missing":
        return str(tmp_path / "missing.mp4")
    if kind == "audio_only":
        return write_audio_only(tmp_path / "audio.mkv")
    raise AssertionError(kind)
