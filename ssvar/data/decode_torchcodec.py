"""Video decoding with TorchCodec (optional backend: ``pip install ssvar[torchcodec]``).

TorchCodec links against the *system* FFmpeg shared libraries (FFmpeg 4 or newer), which PyAV's
wheels do not provide. On Debian/Ubuntu, for example::

    apt-get install -y --no-install-recommends libavcodec59 libavformat59 libavutil57 \\
        libswscale6 libswresample4 libavdevice59 libavfilter8
    pip install "ssvar[torchcodec]"

Importing :mod:`ssvar` never imports TorchCodec: it is loaded when a
:class:`TorchCodecDecoder` is built, and a missing package or missing FFmpeg libraries raise an
:class:`ImportError` that says what to install.

The frame grid is the one :class:`~ssvar.data.decode.PyAVDecoder` uses: index ``i`` is the frame
shown at ``start + i / fps``. Each index is looked up with ``get_frames_played_at`` at
``start + (i + 0.5) / fps``, i.e. with half a grid period of tolerance for timestamp jitter,
which for constant-frame-rate files picks exactly the frames PyAV picks. For variable-frame-rate
files it is the frame on screen half a period after the grid time (PyAV takes the first frame
within half a period of it): the two backends can differ by a frame inside fast bursts. Indices
past the last frame repeat the last frame.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F

from ssvar.data.decode import FramePlan, VideoDecodeError, VideoInfo, check_file, resized_shape

_INSTALL_HINT = (
    "The 'torchcodec' decoder needs the torchcodec package (`pip install ssvar[torchcodec]`, "
    "matching your torch version) and the system FFmpeg shared libraries (FFmpeg 4 or newer), e.g. "
    "`apt-get install libavcodec59 libavformat59 libavutil57 libswscale6 libswresample4 "
    "libavdevice59 libavfilter8` on Debian 12 or `conda install ffmpeg`. "
    "Or use decoder='pyav' (the default; PyAV bundles FFmpeg)."
)


def _import_video_decoder():
    """``torchcodec.decoders.VideoDecoder``, or an ``ImportError`` explaining what is missing.

    TorchCodec raises ``RuntimeError`` (or ``OSError``) rather than ``ImportError`` when it is
    installed but cannot load its FFmpeg-linked core library: at import in older releases, at
    the first ``VideoDecoder`` in newer ones (0.17 imports fine without FFmpeg), so the core
    library is loaded here explicitly.
    """
    try:
        from torchcodec.decoders import VideoDecoder

        _load_core_libraries()
    except ModuleNotFoundError as e:
        if e.name and e.name.split(".")[0] == "torchcodec":
            raise ImportError(f"torchcodec is not installed. {_INSTALL_HINT}") from e
        raise ImportError(f"torchcodec could not be imported ({e}). {_INSTALL_HINT}") from e
    except (ImportError, RuntimeError, OSError) as e:
        raise ImportError(
            f"torchcodec is installed but failed to load ({type(e).__name__}: {_load_reason(e)}); "
            f"usually the system FFmpeg libraries are missing or torchcodec does not match "
            f"torch {torch.__version__}. {_INSTALL_HINT}"
        ) from e
    return VideoDecoder


def _load_core_libraries() -> None:
    """Load torchcodec's FFmpeg-dependent libraries now (raises when FFmpeg is missing)."""
    try:
        from torchcodec._core import ops
    except ImportError:  # another layout: loading happens at import or on first use
        return
    load = getattr(ops, "load_core_libraries", None)
    if callable(load):
        load()


def _is_load_failure(e: BaseException) -> bool:
    return isinstance(e, (RuntimeError, OSError)) and "load libtorchcodec" in str(e)


def torchcodec_status() -> tuple[bool, str]:
    """``(True, version)`` when TorchCodec imports and loads, else ``(False, why)``."""
    try:
        _import_video_decoder()
    except ImportError as e:
        return False, str(e)
    import torchcodec

    return True, str(getattr(torchcodec, "__version__", "unknown"))


class TorchCodecDecoder:
    """Decode with ``torchcodec.decoders.VideoDecoder`` on the CPU.

    Args:
        seek_mode: ``"exact"`` (default: scans the packet index once per open, so frame counts
            and seeks are exact; also the faster mode on short clips) or ``"approximate"``
            (trusts the header).
        num_ffmpeg_threads: FFmpeg decoding threads per video; 1 is best with several
            DataLoader workers.
    """

    def __init__(self, seek_mode: Literal["exact", "approximate"] = "exact", num_ffmpeg_threads: int = 1):
        if seek_mode not in ("exact", "approximate"):
            raise ValueError(f"seek_mode must be 'exact' or 'approximate', got {seek_mode!r}")
        self._VideoDecoder = _import_video_decoder()  # fail early, with the install hint
        self.seek_mode = seek_mode
        self.num_ffmpeg_threads = num_ffmpeg_threads

    def __getstate__(self):  # picklable for DataLoader workers: re-import there
        state = dict(self.__dict__)
        state.pop("_VideoDecoder", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._VideoDecoder = _import_video_decoder()

    # -- opening and metadata -------------------------------------------------------------
    def _open(self, path: str):
        check_file(path)
        try:
            decoder = self._VideoDecoder(
                path,
                seek_mode=self.seek_mode,
                num_ffmpeg_threads=self.num_ffmpeg_threads,
                device="cpu",
                dimension_order="NCHW",
            )
            return decoder, self._grid(decoder, path)
        except VideoDecodeError:
            raise
        except Exception as e:  # RuntimeError/ValueError from FFmpeg: not a readable video
            if _is_load_failure(e):  # torchcodec itself is unusable, not this file
                raise ImportError(f"torchcodec failed to load ({_load_reason(e)}). {_INSTALL_HINT}") from e
            raise VideoDecodeError(path, f"{type(e).__name__}: {_first_line(e)}") from None

    @staticmethod
    def _grid(decoder, path: str) -> tuple[VideoInfo, float, float]:
        """``(info, start, end)``: the frame grid's origin and the stream's end, in seconds."""
        m = decoder.metadata
        start = float(m.begin_stream_seconds or 0.0)
        end = m.end_stream_seconds if m.end_stream_seconds is not None else m.duration_seconds
        end = float(end) if _positive(end) else None
        num = int(m.num_frames) if _positive(m.num_frames) else None
        # The header's nominal rate (exact for constant-rate files, e.g. 30000/1001) unless the
        # content contradicts it (variable frame rate, a bogus header): then the measured
        # average. The last frame's duration may be missing, so the content's frame period lies
        # between duration / num and duration / (num - 1).
        fps = float(m.average_fps_from_header) if _positive(m.average_fps_from_header) else 0.0
        if num and end is not None and end > start:
            lo, hi = (num - 1) / (end - start), num / (end - start)
            if not fps or not lo * 0.98 <= fps <= hi * 1.02:
                fps = hi
        if not fps:
            fps = 25.0  # no usable rate: assume a common one rather than fail (as PyAV does)
        if num is None and end is not None:
            num = int(round((end - start) * fps))
        if not num or num <= 0:
            raise VideoDecodeError(path, "the stream has no frames")
        if end is None:
            end = start + num / fps
        if not m.width or not m.height:
            raise VideoDecodeError(path, "the video stream has no frame size")
        return VideoInfo(num_frames=num, fps=fps, width=int(m.width), height=int(m.height)), start, end

    def probe(self, path: str) -> VideoInfo:
        return self._open(path)[1][0]

    # -- decoding -------------------------------------------------------------------------
    def decode(self, path: str, plan: FramePlan, short_side: int | None = None):
        decoder, (info, start, end) = self._open(path)
        wanted = sorted({int(i) for i in plan(info)})
        if not wanted:
            raise ValueError("the frame plan selected no frames")
        if wanted[0] < 0:
            raise ValueError(f"negative frame index {wanted[0]} in the frame plan")
        try:
            frames = self._decode_indices(decoder, info, start, end, wanted)  # [N, 3, H, W]
            if frames.shape[0] != len(wanted):
                raise VideoDecodeError(path, f"got {frames.shape[0]} frames for {len(wanted)} indices")
            frames = _resize(frames, short_side)
            return frames.permute(0, 2, 3, 1).contiguous(), wanted, info
        except VideoDecodeError:
            raise
        except Exception as e:  # corrupt packets, truncated files
            raise VideoDecodeError(path, f"{type(e).__name__}: {_first_line(e)}") from None

    @staticmethod
    def _decode_indices(decoder, info: VideoInfo, start: float, end: float, wanted: list[int]) -> torch.Tensor:
        # Half a grid period of tolerance: the frame whose time is within +-half of the grid time
        # (constant frame rate with jittery timestamps), else the frame on screen.
        times = [start + (i + 0.5) / info.fps for i in wanted]
        inside = [k for k, t in enumerate(times) if t < end]
        past = len(wanted) - len(inside)  # past the last frame: inside is a prefix (sorted)
        parts = []
        if inside:
            parts.append(decoder.get_frames_played_at([times[k] for k in inside]).data)
        if past:
            last = decoder.get_frame_at(len(decoder) - 1).data  # [3, H, W]
            parts.append(last.unsqueeze(0).expand(past, *last.shape))
        return parts[0] if len(parts) == 1 else torch.cat(parts)


def _resize(frames: torch.Tensor, short_side: int | None) -> torch.Tensor:
    """uint8 ``[N, 3, H, W]`` resized so the short side is ``short_side`` (bilinear, antialiased)."""
    h, w = frames.shape[-2:]
    out_w, out_h = resized_shape(w, h, short_side)
    if (out_w, out_h) == (w, h):
        return frames
    try:  # torch's native uint8 path (fast, channels-last input as decoded)
        return F.interpolate(frames, size=(out_h, out_w), mode="bilinear", antialias=True, align_corners=False)
    except (RuntimeError, NotImplementedError):  # builds without the uint8 kernel
        out = F.interpolate(frames.float(), size=(out_h, out_w), mode="bilinear", antialias=True, align_corners=False)
        return out.round_().clamp_(0, 255).to(torch.uint8)


def _positive(x) -> bool:
    return x is not None and math.isfinite(float(x)) and float(x) > 0


def _load_reason(e: BaseException) -> str:
    """The first line of torchcodec's (long) loading error, without its "Likely causes:"."""
    return _first_line(e).replace("Likely causes:", "").strip()


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
