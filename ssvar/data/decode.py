"""Video decoding with PyAV: one open, one seek, only the frames a sample needs.

Frame indices live on a constant-rate grid: index ``i`` is the frame shown at time
``start + i / fps`` where ``fps`` is the stream's average rate. For constant-frame-rate files
that is simply the i-th frame; for variable-frame-rate files it is the frame on screen at that
time, so clip strides keep a constant duration.

Only frames that are kept are converted to RGB, straight to the working size with FFmpeg's
swscale (``frame.reformat``): decode dominates, so a frame is never decoded twice and a dropped
frame is never converted.

Sparse decoding (``skip_nonref``, on by default): between needed frames, FFmpeg is told to skip
non-reference frames (``skip_frame = NONREF``: no other frame is predicted from them, so skipping
them changes no other frame), and switched back to decoding every frame for the packets whose
time falls on a needed frame. The frames returned are identical to a full decode; where that
cannot be guaranteed (a variable-frame-rate target that would take a skipped frame), the video
is decoded again in full. It is used on streams that report B-frames (most H.264 from cameras
and the web, MPEG-4 with B-frames), with one decoding thread; other streams take the plain loop.

Which frames are reference frames and keyframes (:class:`ReferenceMap`) can be read from the
packets without decoding (H.264 only; ``decode(..., references=cache)``): the GOP-aware clip
sampler (``VideoDataset(gop_aware_shift=N)``) places clips with it.
"""

from __future__ import annotations

import bisect
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:  # torch is imported where frames become tensors: `ssvar check-videos` starts fast
    import torch


class VideoDecodeError(RuntimeError):
    """A video could not be opened or decoded (missing, empty, truncated or not a video)."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"cannot decode {path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class VideoInfo:
    """What the sampler needs to know before choosing frames."""

    num_frames: int
    fps: float
    width: int
    height: int


FramePlan = Callable[[VideoInfo], Sequence[int]]


class Decoder(Protocol):
    """The small interface every decoding backend implements."""

    def probe(self, path: str) -> VideoInfo: ...

    def decode(
        self, path: str, plan: FramePlan, short_side: int | None = None
    ) -> tuple[torch.Tensor, list[int], VideoInfo]:
        """Open ``path``, ask ``plan(info)`` which frame indices are needed, decode them.

        Returns ``(frames, indices, info)``: ``frames`` is uint8 ``[N, H, W, 3]`` for the sorted
        unique ``indices``, resized so the short side is ``short_side`` (``None``: native size).
        """
        ...


def resized_shape(width: int, height: int, short_side: int | None) -> tuple[int, int]:
    """(width, height) with the short side scaled to ``short_side``; even numbers are not
    required by rgb24, so odd sizes pass through unchanged."""
    if short_side is None or min(width, height) == short_side:
        return width, height
    scale = short_side / min(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


class PyAVDecoder:
    """Decode with PyAV directly (the default backend; PyAV wheels bundle FFmpeg).

    Args:
        threads: FFmpeg decoding threads per video; 1 is best with several DataLoader workers.
        seek_margin: when the first needed frame is this close to the start, decode from the
            start instead of seeking (a seek costs more than decoding a few frames).
        skip_nonref: do not decode non-reference frames that no target needs (exact: the
            returned frames equal a full decode's; see the module notes). Used with
            ``threads=1`` on streams with B-frames.
    """

    def __init__(self, threads: int = 1, seek_margin: int = 8, skip_nonref: bool = True):
        self.threads = threads
        self.seek_margin = seek_margin
        self.skip_nonref = skip_nonref

    # -- metadata -------------------------------------------------------------------------
    @staticmethod
    def _stream_info(container, path: str) -> tuple[VideoInfo, Any]:
        if not container.streams.video:
            raise VideoDecodeError(path, "no video stream")
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 0.0
        if not fps or not math.isfinite(fps) or fps <= 0:
            fps = 25.0  # no usable rate: assume a common one rather than fail
        num = int(stream.frames or 0)
        if num <= 0:
            # No frame count in the header (e.g. some AVI/WebM): estimate from the duration.
            if stream.duration is not None and stream.time_base is not None:
                seconds = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                seconds = container.duration / 1_000_000
            else:
                seconds = 0.0
            num = int(round(seconds * fps))
        if num <= 0:
            raise VideoDecodeError(path, "the stream has no frames")
        cc = stream.codec_context
        return VideoInfo(num_frames=num, fps=fps, width=int(cc.width), height=int(cc.height)), stream

    def _open(self, path: str):
        import av

        check_file(path)
        try:
            return av.open(path, metadata_errors="ignore")
        except Exception as e:  # av.error.FFmpegError and friends: not a readable container
            raise VideoDecodeError(path, f"{type(e).__name__}: {e}") from None

    def probe(self, path: str) -> VideoInfo:
        container = self._open(path)
        try:
            return self._stream_info(container, path)[0]
        finally:
            container.close()

    def reference_map(self, path: str) -> ReferenceMap:
        """Which frames are keyframes and which are reference frames, from the packets alone
        (demuxed, not decoded). What the GOP-aware sampler (``VideoDataset(gop_aware_shift=...)``)
        costs its candidate clips with. ``decode(..., references=cache)`` reads the same from the
        container it has open anyway (opening a file costs ~10x the demux of a short clip)."""
        container = self._open(path)
        try:
            info, stream = self._stream_info(container, path)
            return self._reference_map(container, stream, info)
        except VideoDecodeError:
            raise
        except Exception as e:
            raise VideoDecodeError(path, f"{type(e).__name__}: {e}") from None
        finally:
            container.close()

    @staticmethod
    def _reference_map(container, stream, info: VideoInfo) -> ReferenceMap:
        tb = stream.time_base or Fraction(1, 1)
        start = float((stream.start_time or 0) * tb)
        cc = stream.codec_context
        nal_len = _avcc_length_size(cc.extradata) if cc.name == "h264" else None
        is_ref = np.ones(info.num_frames, dtype=bool)
        keys: list[int] = []
        for packet in container.demux(stream):
            if packet.pts is None or not packet.size:
                continue
            i = int(round((float(packet.pts * tb) - start) * info.fps))
            if not 0 <= i < info.num_frames:
                continue
            if packet.is_keyframe:
                keys.append(i)
            if cc.name == "h264":
                is_ref[i] = _h264_is_reference(bytes(packet), nal_len)
        return ReferenceMap(is_ref=is_ref, keyframes=np.array(sorted(set(keys)) or [0], dtype=np.int64))

    # -- decoding -------------------------------------------------------------------------
    def decode(self, path: str, plan: FramePlan, short_side: int | None = None, references: dict | None = None):
        """See :class:`Decoder`. ``references``: a cache ``path -> ReferenceMap``; when given
        and ``path`` is not in it yet, it is filled (from the packets of this open container)
        before ``plan`` is called, so a plan can choose frames by their type."""
        container = self._open(path)
        try:
            info, stream = self._stream_info(container, path)
            if references is not None and path not in references:
                references[path] = self._reference_map(container, stream, info)
                container.seek(0, stream=stream, backward=True, any_frame=False)  # back to the start
            wanted = sorted({int(i) for i in plan(info)})
            if not wanted:
                raise ValueError("the frame plan selected no frames")
            if wanted[0] < 0:
                raise ValueError(f"negative frame index {wanted[0]} in the frame plan")
            stream.thread_type = "AUTO" if self.threads > 1 else "SLICE"
            stream.thread_count = self.threads
            try:
                # Only streams with B-frames have non-reference frames worth skipping (measured:
                # on streams without, the per-packet loop costs up to ~5% for nothing). Checked
                # exact with one decoding thread (the loader's setting), so only there.
                sparse = self.skip_nonref and self.threads <= 1 and bool(stream.codec_context.has_b_frames)
                frames = self._decode_indices(container, stream, info, wanted, short_side, path, sparse)
            except _SkippedNeededFrame:  # rare (variable frame rate): decode everything instead
                stream.codec_context.skip_frame = "DEFAULT"
                container.seek(0, stream=stream, backward=True, any_frame=False)
                frames = self._decode_indices(container, stream, info, wanted, short_side, path, False)
            import torch

            return torch.from_numpy(np.stack(frames)), wanted, info
        except VideoDecodeError:
            raise
        except ValueError as e:
            # PyAV's errors (InvalidDataError: a truncated faststart MP4) are ValueErrors too;
            # only a bad frame plan is the caller's error.
            if not isinstance(e, _av_error()):
                raise
            raise VideoDecodeError(path, f"{type(e).__name__}: {e}") from None
        except Exception as e:  # corrupt packets, truncated files
            raise VideoDecodeError(path, f"{type(e).__name__}: {e}") from None
        finally:
            container.close()

    def _decode_indices(
        self, container, stream, info: VideoInfo, wanted: list[int], short_side, path, sparse: bool = False
    ):
        out_w, out_h = resized_shape(info.width, info.height, short_side)
        tb = stream.time_base or Fraction(1, 1)
        start_pts = stream.start_time if stream.start_time is not None else 0
        start_time = float(start_pts * tb)
        half = 0.5 / info.fps
        targets = [start_time + i / info.fps for i in wanted]

        seeked = False
        if wanted[0] > self.seek_margin:
            # Seek to the keyframe at or before the first needed frame.
            container.seek(int((targets[0] - half) / tb) if tb else 0, stream=stream, backward=True, any_frame=False)
            seeked = True

        result: list[np.ndarray] = []
        cache: list = [None, None]  # (frame, rgb): targets sharing a frame are consecutive

        def rgb(f) -> np.ndarray:
            if cache[0] is not f:
                cache[0], cache[1] = f, _to_rgb(f, out_w, out_h)
            return cache[1]

        skipped: list[float] = []  # times of packets decoded with NONREF (maybe not decoded)
        state = {"flushed": False}
        frames = (
            _sparse_frames(container, stream, targets, half, skipped, state) if sparse else container.decode(stream)
        )
        k, last, first = 0, None, True
        for frame in frames:
            t = frame.time
            if t is None:
                continue
            if first and seeked and t > targets[0] + half:
                # The seek overshot (bad index): decode from the beginning instead.
                if sparse:
                    raise _SkippedNeededFrame  # (rare) the full decode below starts from 0
                container.seek(0, stream=stream, backward=True, any_frame=False)
                seeked, first = False, False
                skipped.clear()
                continue
            first = False
            # A target takes the first frame inside its +-half window; when a frame lands past
            # the window (variable frame rate), the frame on screen at that time is the previous one.
            while k < len(wanted) and t >= targets[k] - half:
                if t > targets[k] + half and last is not None and _skipped_between(skipped, last.time, t):
                    raise _SkippedNeededFrame  # the frame on screen at targets[k] was skipped
                result.append(rgb(frame) if (t <= targets[k] + half or last is None) else rgb(last))
                k += 1
            last = frame
            if k == len(wanted):
                break
        if last is None:
            raise VideoDecodeError(path, "no frame could be decoded")
        if k < len(wanted) and (state["flushed"] or _skipped_between(skipped, last.time, math.inf)):
            raise _SkippedNeededFrame  # the true last frame (repeated below) was skipped or not reached
        # Past the end (the header over-counted frames, or a truncated file): repeat the last frame.
        while len(result) < len(wanted):
            result.append(rgb(last))
        return result


_REORDER_PEEK = 16  # packets checked after the last needed one (x264 allows at most 16 B-frames)


class _SkippedNeededFrame(Exception):
    """Sparse decoding skipped a frame a target turned out to need."""


def _sparse_frames(container, stream, targets: list[float], half: float, skipped: list[float], state: dict):
    """Decoded frames (presentation order) of ``stream`` from the current position, with
    FFmpeg's ``skip_frame`` set per packet: ``NONREF`` for packets no target needs (non-reference
    frames among them are not decoded; their times go to ``skipped``), ``DEFAULT`` for packets
    inside a target's +-half window and packets without a time (flush, some AVI).

    Once every target's window has had its packet, the decoder is flushed instead of being fed
    the packets after (only there to push the reordered last frames out); ``state["flushed"]``
    says so."""
    cc = stream.codec_context
    lows = [t - half for t in targets]  # sorted, like the targets
    tb = stream.time_base
    covered: set[int] = set()
    mode = "DEFAULT"
    for packet in container.demux(stream):
        needed = True
        if packet.pts is not None and tb is not None:
            t = float(packet.pts * tb)
            j = bisect.bisect_right(lows, t) - 1  # the last target window starting at or before t
            needed = j >= 0 and t <= targets[j] + half
            if needed:
                covered.add(j)
            else:
                skipped.append(t)
        want = "DEFAULT" if needed else "NONREF"
        if want != mode:
            cc.skip_frame = mode = want
        yield from cc.decode(packet)
        if len(covered) == len(targets) and packet.size:
            # With a variable frame rate a window may hold a second, earlier-shown frame still
            # to come in decode order: look at the next packets (demuxed, not decoded) first.
            for n, later in enumerate(container.demux(stream)):
                if n >= _REORDER_PEEK:
                    break
                if later.pts is not None:
                    t = float(later.pts * tb)
                    j = bisect.bisect_right(lows, t) - 1
                    if j >= 0 and t <= targets[j] + half:
                        raise _SkippedNeededFrame
            state["flushed"] = True
            for frame in cc.decode(None):
                if frame.time_base is None:  # frames out of a flush carry no time base
                    frame.time_base = tb
                yield frame
            return


def _skipped_between(skipped: list[float], lo: float, hi: float) -> bool:
    return any(lo < s < hi for s in skipped)


@dataclass(frozen=True)
class ReferenceMap:
    """Per frame index: ``is_ref`` (False: no other frame is predicted from it, so sparse
    decoding skips it unless it is needed; True where unknown) and the sorted ``keyframes``."""

    is_ref: np.ndarray
    keyframes: np.ndarray


def _avcc_length_size(extradata: bytes | None) -> int | None:
    """NAL length-prefix size of avcC extradata (MP4/MKV); ``None``: Annex B start codes."""
    if extradata and len(extradata) > 4 and extradata[0] == 1:
        return (extradata[4] & 3) + 1
    return None


def _h264_nal_units(data: bytes, length_size: int | None):
    if length_size is not None:
        pos = 0
        while pos + length_size <= len(data):
            size = int.from_bytes(data[pos : pos + length_size], "big")
            pos += length_size
            if size <= 0:
                return
            yield data[pos : pos + size]
            pos += size
    else:
        for unit in data.split(b"\x00\x00\x01"):
            unit = unit.rstrip(b"\x00")
            if unit:
                yield unit


def _h264_is_reference(data: bytes, length_size: int | None) -> bool:
    """H.264: a picture is a reference when its slices' ``nal_ref_idc`` is non-zero (what
    FFmpeg's ``skip_frame = NONREF`` tests). Unknown (no slice found): reference."""
    for unit in _h264_nal_units(data, length_size):
        if unit and (unit[0] & 0x1F) in (1, 5):  # coded slice (non-IDR / IDR)
            return bool(unit[0] & 0x60)
    return True


def check_file(path: str) -> None:
    """The typed error for a missing or empty file, before any backend touches it."""
    if not os.path.isfile(path):
        raise VideoDecodeError(path, "file not found")
    if os.path.getsize(path) == 0:
        raise VideoDecodeError(path, "empty file (0 bytes)")


def _to_rgb(frame, width: int, height: int) -> np.ndarray:
    if frame.width == width and frame.height == height:
        return frame.to_ndarray(format="rgb24")
    return frame.reformat(width=width, height=height, format="rgb24").to_ndarray()


def _av_error() -> type:
    import av

    return av.error.FFmpegError


def decoder_from_name(name: str, threads: int = 1) -> Decoder:
    """``"pyav"`` (default, sparse decoding on), ``"pyav-full"`` (every frame decoded) or
    ``"torchcodec"`` (needs system FFmpeg and the optional extra)."""
    if name == "pyav":
        return PyAVDecoder(threads=threads)
    if name == "pyav-full":
        return PyAVDecoder(threads=threads, skip_nonref=False)
    if name == "torchcodec":
        from ssvar.data.decode_torchcodec import TorchCodecDecoder

        return TorchCodecDecoder()
    raise ValueError(f"unknown decoder {name!r}; choose 'pyav', 'pyav-full' or 'torchcodec'")
