"""SyntheticActions: determinism, real decodable MP4s, the cache, and the motion-pair design."""

from __future__ import annotations

import json
import os
import threading

import av
import numpy as np
import pytest

from ssvar.data.index import VideoIndex
from ssvar.data.synthetic import (
    CLASS_DESCRIPTIONS,
    CLASSES,
    SyntheticActionsSpec,
    generate_synthetic_actions,
    motion_pairs,
    render_video,
)

# A small set keeps every test fast: 3 classes x 2 videos x 12 frames at 32x48.
SMALL = dict(num_classes=3, videos_per_class=2, num_frames=12, resolution=(32, 48), progress=False)


def decode(path: str) -> np.ndarray:
    with av.open(path) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def mtimes(root: str, index: VideoIndex) -> dict[str, int]:
    paths = index.paths() + ["manifest.json"]
    return {p: os.stat(os.path.join(root, p)).st_mtime_ns for p in paths}


# ------------------------------------------------------------------------------ API and spec


def test_classes_and_pairs():
    assert len(CLASSES) >= 10 and len(set(CLASSES)) == len(CLASSES)
    assert set(CLASS_DESCRIPTIONS) == set(CLASSES)
    pairs = motion_pairs()
    assert len(pairs) == len(CLASSES) // 2
    assert all(0 <= a < b < len(CLASSES) for a, b in pairs)
    assert motion_pairs(10) == pairs[:5]  # the default 10 classes are 5 complete pairs
    assert motion_pairs(3) == [(0, 1)]


def test_spec_validation_and_resolution():
    spec = SyntheticActionsSpec(resolution=(64, 80))
    assert (spec.height, spec.width) == (64, 80)
    assert SyntheticActionsSpec(resolution=48).resolution == (48, 48)
    for bad in (
        dict(num_classes=1),
        dict(num_classes=len(CLASSES) + 1),
        dict(resolution=63),
        dict(resolution=8),
        dict(seed=-1),
    ):
        with pytest.raises(ValueError):
            SyntheticActionsSpec(**bad)
    # The cache key follows every knob.
    keys = {
        SyntheticActionsSpec(**kw).cache_key()
        for kw in (dict(), dict(seed=1), dict(num_frames=32), dict(resolution=(64, 80)))
    }
    assert len(keys) == 4


def test_render_is_pure_and_seeded():
    spec = SyntheticActionsSpec(num_frames=16, resolution=(32, 48))
    for c in range(len(CLASSES)):
        v = render_video(c, np.random.default_rng(7), spec)
        assert v.shape == (16, 32, 48, 3) and v.dtype == np.uint8
        np.testing.assert_array_equal(v, render_video(c, np.random.default_rng(7), spec))
        assert not np.array_equal(v, render_video(c, np.random.default_rng(8), spec))
        assert v.std(axis=0).mean() > 1.0  # something moves or blinks
    with pytest.raises(ValueError):
        render_video(len(CLASSES), np.random.default_rng(0), spec)


# ------------------------------------------------------------------------------ files and cache


def test_generate_writes_decodable_deterministic_files(tmp_path):
    root, index = generate_synthetic_actions(tmp_path / "a", seed=3, **SMALL)
    assert os.path.dirname(root) == str(tmp_path / "a")
    assert index.classes == CLASSES[:3] and len(index) == 6
    assert index.labels() == [0, 0, 1, 1, 2, 2]
    assert all(r.group is None and not os.path.isabs(r.path) for r in index)
    assert index.paths()[0] == "square_right/square_right_0000.mp4"
    index.with_root_check(root)

    spec = SyntheticActionsSpec(3, 2, 12, (32, 48), 25, seed=3)
    decoded = {}
    for r in index:
        frames = decode(os.path.join(root, r.path))
        assert frames.shape == (12, 32, 48, 3)
        i = int(r.path[-8:-4])
        rendered = render_video(r.label, spec.video_rng(r.label, i), spec)
        assert np.abs(frames.astype(int) - rendered).mean() < 6  # H.264 of what was rendered
        decoded[r.path] = frames
    with av.open(os.path.join(root, index.paths()[0])) as c:
        s = c.streams.video[0]
        assert s.codec_context.name == "h264" and s.codec_context.format.name == "yuv420p"
        assert float(s.average_rate) == 25

    root_b, index_b = generate_synthetic_actions(tmp_path / "b", seed=3, **SMALL)
    assert index_b.paths() == index.paths()
    for p in index.paths():
        np.testing.assert_array_equal(decode(os.path.join(root_b, p)), decoded[p])

    root_c, _ = generate_synthetic_actions(tmp_path / "b", seed=4, **SMALL)
    assert root_c != root_b
    assert not np.array_equal(decode(os.path.join(root_c, index.paths()[0])), decoded[index.paths()[0]])


def test_cache_reused_and_repaired(tmp_path):
    root, index = generate_synthetic_actions(tmp_path, **SMALL)
    manifest = json.loads(open(os.path.join(root, "manifest.json")).read())
    assert manifest["classes"] == CLASSES[:3]
    assert set(manifest["files"]) == set(index.paths())
    before = mtimes(root, index)

    root2, index2 = generate_synthetic_actions(tmp_path, **SMALL)
    assert root2 == root and index2.paths() == index.paths()
    assert mtimes(root, index) == before  # nothing rewritten

    # A truncated manifest (a crash mid-write, a bad copy) marks the cache incomplete; the
    # temporary folder of a killed generator is cleaned up.
    with open(os.path.join(root, "manifest.json"), "r+") as f:
        f.truncate(20)
    dead = tmp_path / f".{os.path.basename(root)}.tmp-killed"
    (dead / "square_right").mkdir(parents=True)
    root3, _ = generate_synthetic_actions(tmp_path, **SMALL)
    assert root3 == root
    after = mtimes(root, index)
    assert all(after[p] != before[p] for p in before)
    json.loads(open(os.path.join(root, "manifest.json")).read())

    # So does a truncated video.
    victim = os.path.join(root, index.paths()[-1])
    with open(victim, "r+b") as f:
        f.truncate(100)
    generate_synthetic_actions(tmp_path, **SMALL)
    assert decode(victim).shape[0] == 12
    # No temporary or trash folders are left behind.
    assert sorted(n for n in os.listdir(tmp_path) if not n.endswith(".lock")) == [os.path.basename(root)]


def test_concurrent_generation(tmp_path):
    results, errors = [], []

    def worker():
        try:
            results.append(generate_synthetic_actions(tmp_path, **SMALL))
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    roots = {root for root, _ in results}
    assert len(roots) == 1
    root = roots.pop()
    for p in results[0][1].paths():
        assert decode(os.path.join(root, p)).shape == (12, 32, 48, 3)
    assert sorted(n for n in os.listdir(tmp_path) if not n.endswith(".lock")) == [os.path.basename(root)]


def test_default_cache_dir_follows_env(tmp_path, monkeypatch):
    monkeypatch.setenv("SSVAR_CACHE", str(tmp_path))
    root, _ = generate_synthetic_actions(**SMALL)
    assert os.path.dirname(root) == os.path.join(str(tmp_path), "synthetic")


# ------------------------------------------------------------------------------ motion pairs
#
# Within a pair, appearance must not separate the classes: rendered from the same RNG the two
# videos have the same time-averaged colour (for reversal pairs: exactly the same frames in
# reverse order), while that average varies a lot from video to video. A simple motion feature
# computed from pixels, on the other hand, separates independently drawn videos of the two classes.

SPEC = SyntheticActionsSpec(num_frames=48, resolution=64)


def _gray(video: np.ndarray) -> np.ndarray:
    g = video.astype(np.float32).mean(-1)
    for axis in (1, 2, 1, 2):  # two 3-tap box blurs per axis: smoother gradients for the flow
        g = (np.roll(g, 1, axis) + g + np.roll(g, -1, axis)) / 3
    return g


def _flow_terms(video: np.ndarray):
    g = _gray(video)
    mid = (g[1:] + g[:-1]) / 2
    iy, ix = np.gradient(mid, axis=(1, 2))
    it = g[1:] - g[:-1]
    it -= it.mean(axis=(1, 2), keepdims=True)  # remove the brightness flicker
    return ix, iy, it


def _translation(video: np.ndarray) -> np.ndarray:
    """Global Lucas-Kanade translation (u, v) of each frame pair, [T-1, 2], in px/frame."""
    ix, iy, it = _flow_terms(video)
    a = np.stack(
        [
            np.stack([(ix * ix).sum((1, 2)), (ix * iy).sum((1, 2))], -1),
            np.stack([(ix * iy).sum((1, 2)), (iy * iy).sum((1, 2))], -1),
        ],
        -2,
    )
    b = -np.stack([(ix * it).sum((1, 2)), (iy * it).sum((1, 2))], -1)
    return np.linalg.solve(a, b[..., None])[..., 0]


def _affine(video: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Global affine flow fit of each frame pair; returns (curl, divergence), each [T-1].
    Curl > 0 is clockwise on screen (image y grows downwards)."""
    ix, iy, it = _flow_terms(video)
    _, h, w = ix.shape
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    x, y = (x - w / 2) / w, (y - h / 2) / h
    basis = np.stack([ix, ix * x, ix * y, iy, iy * x, iy * y], -1).reshape(len(ix), -1, 6)
    a = basis.transpose(0, 2, 1) @ basis
    b = -(basis.transpose(0, 2, 1) @ it.reshape(len(it), -1, 1))[..., 0]
    p = np.linalg.solve(a, b[..., None])[..., 0]
    # u = p0 + p1 x + p2 y, v = p3 + p4 x + p5 y (x, y normalised by w, h)
    curl = p[:, 4] / w - p[:, 2] / h
    div = p[:, 1] / w + p[:, 5] / h
    return curl, div


def _blink_order(video: np.ndarray) -> float:
    """> 0 when the magenta ring's presence (red channel) leads the cyan diamond's (green)."""
    r = video[..., 0].astype(np.float32).mean((1, 2))
    g = video[..., 1].astype(np.float32).mean((1, 2))
    r, g = r - r.mean(), g - g.mean()
    lead = sum(np.dot(r[:-k], g[k:]) - np.dot(g[:-k], r[k:]) for k in range(1, 7))
    return float(lead / (np.linalg.norm(r) * np.linalg.norm(g) + 1e-6))


def _turning(uv: np.ndarray) -> float:
    """Mean cross product of successive velocities: > 0 when they turn clockwise on screen."""
    return float(np.mean(uv[:-1, 0] * uv[1:, 1] - uv[:-1, 1] * uv[1:, 0]))


# first class of each pair -> motion feature whose sign (or size, for speed) tells the pair apart
MOTION_FEATURES = {
    "square_right": lambda v: np.median(_translation(v)[:, 0]),  # rightwards > 0
    "disc_grow": lambda v: np.median(_affine(v)[1]),  # expanding > 0
    "bar_rotate_cw": lambda v: np.median(_affine(v)[0]),  # clockwise > 0
    "ring_then_diamond": _blink_order,  # ring first > 0
    "triangle_fall_slow": lambda v: -np.median(_translation(v)[:, 1]),  # slow > fast (negated speed)
    "cross_orbit_cw": lambda v: _turning(_translation(v)),  # clockwise > 0
}


@pytest.mark.parametrize("pair", motion_pairs(), ids=lambda p: f"{CLASSES[p[0]]}-{CLASSES[p[1]]}")
def test_motion_pair_differs_only_in_motion(pair):
    a, b = pair
    assert CLASSES[a] in MOTION_FEATURES
    seeds = range(4)
    means_a, means_b = [], []
    for s in seeds:
        va = render_video(a, np.random.default_rng(s), SPEC)
        vb = render_video(b, np.random.default_rng(s), SPEC)
        if CLASSES[b] != "triangle_fall_fast":
            # Reversal pair: the very same frames in the opposite order.
            np.testing.assert_array_equal(va[::-1], vb)
        else:
            # Speed pair: per-frame mean colours match frame by frame (the triangle's area is
            # constant under wrap-around; only the background under it changes).
            fa, fb = va.astype(np.float32).mean((1, 2)), vb.astype(np.float32).mean((1, 2))
            assert np.abs(fa - fb).max() < 2.5
        means_a.append(va.astype(np.float32).mean((0, 1, 2)))
        means_b.append(vb.astype(np.float32).mean((0, 1, 2)))
    means_a, means_b = np.array(means_a), np.array(means_b)
    within_pair = np.abs(means_a - means_b).max()
    across_videos = means_a.std(0).mean()
    assert within_pair < 1.0 < 10 * 1.0 < across_videos  # appearance: nuisance >> class

    feature = MOTION_FEATURES[CLASSES[a]]
    fa = np.array([feature(render_video(a, np.random.default_rng(100 + s), SPEC)) for s in seeds])
    fb = np.array([feature(render_video(b, np.random.default_rng(200 + s), SPEC)) for s in seeds])
    assert fa.min() > fb.max(), (fa, fb)  # motion: separates independently drawn videos
    if CLASSES[b] != "triangle_fall_fast":
        assert fa.min() > 0 > fb.max(), (fa, fb)
