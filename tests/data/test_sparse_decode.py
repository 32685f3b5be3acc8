"""Sparse decoding (``PyAVDecoder(skip_nonref=True)``, the default) returns exactly the frames of
a full decode while decoding fewer frames on streams with non-reference frames (B-frames)."""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch

from ssvar.data import decode as decode_mod
from ssvar.data.decode import PyAVDecoder


def texture(i: int, h: int, w: int) -> np.ndarray:
    """A moving random texture: x264 (default settings) codes it with B-frames, some of them
    non-reference, so skipping them is measurable and any wrong frame is visible."""
    base = np.random.default_rng(0).integers(0, 255, (h, 2 * w, 3), dtype=np.uint8)
    return np.ascontiguousarray(base[:, i % w : i % w + w])


def count_frames(path: str, skip: str) -> int:
    with av.open(path) as c:
        s = c.streams.video[0]
        s.codec_context.skip_frame = skip
        return sum(1 for _ in c.decode(s))


@pytest.fixture
def bframe_video(video_factory):
    path = video_factory("b.mp4", num_frames=64, width=64, height=48, content=texture)
    assert count_frames(path, "NONREF") < 0.8 * count_frames(path, "DEFAULT")  # it has non-reference frames
    return path


@pytest.fixture
def decoded_counter(monkeypatch):
    """How many frames the sparse path got out of FFmpeg (per call, appended)."""
    counts: list[int] = []
    real = decode_mod._sparse_frames

    def counting(*args, **kwargs):
        counts.append(0)
        for f in real(*args, **kwargs):
            counts[-1] += 1
            yield f

    monkeypatch.setattr(decode_mod, "_sparse_frames", counting)
    return counts


PLANS = [
    list(range(0, 57, 8)),  # 8x8 from the start
    list(range(5, 62, 8)),  # 8x8 in the middle, with a seek
    list(range(3, 40, 4)),  # stride 4
    [1, 2, 3, 30, 31, 63],  # dense bits, and the last frame
    [10, 20, 60, 70, 80],  # past the end: the last frame repeated
]


@pytest.mark.parametrize("plan", PLANS)
@pytest.mark.parametrize("short_side", [None, 24])
def test_sparse_equals_full_decode(bframe_video, plan, short_side, decoded_counter):
    full_frames, full_idx, _ = PyAVDecoder(skip_nonref=False, seek_margin=4).decode(
        bframe_video, lambda i: plan, short_side
    )
    frames, idx, _ = PyAVDecoder(skip_nonref=True, seek_margin=4).decode(bframe_video, lambda i: plan, short_side)
    assert idx == full_idx
    assert torch.equal(frames, full_frames)  # bit-identical
    assert decoded_counter, "the sparse path was not used"


def test_sparse_decodes_fewer_frames(bframe_video, decoded_counter):
    plan = list(range(0, 57, 8))
    PyAVDecoder(skip_nonref=True).decode(bframe_video, lambda i: plan)
    assert decoded_counter[-1] < 50  # a full decode up to frame 56 (+ reorder delay) gives >= 57


def write_mpeg4_bframes(path: str, num_frames: int = 40) -> str:
    with av.open(path, mode="w") as c:
        s = c.add_stream("mpeg4", rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        s.codec_context.max_b_frames = 2
        for i in range(num_frames):
            c.mux(s.encode(av.VideoFrame.from_ndarray(texture(i, 48, 64), format="rgb24")))
        c.mux(s.encode(None))
    return path


def test_mpeg4_bframes(tmp_path):
    """MPEG-4 Part 2 in AVI (UCF101/HMDB51's codec) with B-frames: same frames."""
    path = write_mpeg4_bframes(str(tmp_path / "b.avi"))
    assert count_frames(path, "NONREF") < count_frames(path, "DEFAULT")
    plan = list(range(2, 40, 5))
    full = PyAVDecoder(skip_nonref=False).decode(path, lambda i: plan)[0]
    sparse = PyAVDecoder(skip_nonref=True).decode(path, lambda i: plan)[0]
    assert torch.equal(full, sparse)


def test_variable_frame_rate_target_on_a_skipped_frame_falls_back(video_factory):
    """A target between two frames takes the frame on screen, which sparse decoding may have
    skipped: the decoder notices and decodes in full, so the result is still exact."""
    pts = [int(i * 40) for i in range(30)] + [1200 + 200 + int(i * 40) for i in range(30)]  # a 200 ms gap
    path = video_factory("vfr.mp4", num_frames=60, width=64, height=48, vfr_pts=pts, content=texture)
    for plan in ([31, 33, 35, 40], list(range(0, 60, 3)), [29, 30, 31, 32, 33, 34, 35]):
        full = PyAVDecoder(skip_nonref=False).decode(path, lambda i: plan)[0]
        sparse = PyAVDecoder(skip_nonref=True).decode(path, lambda i: plan)[0]
        assert torch.equal(full, sparse), plan
