"""SyntheticActions: the embedded default dataset of procedurally generated action videos.

Every video is rendered from a seeded local RNG (so it does not depend on generation order) and
written once as a real H.264 MP4 (yuv420p, via PyAV) into a folder-per-class tree::

    <cache>/<class_name>/<class_name>_<i:04d>.mp4
    <cache>/manifest.json        knobs, classes and per-file sizes; written last, marks completion

so the library's real decode path runs on it. The cache folder is
``<base>/<hash of the knobs and GENERATOR_VERSION>`` with ``base`` the ``root`` argument, else
``$SSVAR_CACHE/synthetic``, else ``~/.cache/ssvar/synthetic``.

The classes come in pairs (``motion_pairs()``). The two classes of a pair show the same shapes in the
same colours with the same nuisance distribution and differ *only in motion*:

* opposite direction or temporal order: the second class is exactly the first played backwards
  (square sliding right/left, disc growing/shrinking, bar spinning clockwise/anticlockwise, ring-
  then-diamond/diamond-then-ring blinking, cross orbiting clockwise/anticlockwise). Rendered from
  the same RNG the two videos hold the very same frames in reverse order, so no per-frame (or
  time-averaged) appearance feature can tell them apart;
* speed: a triangle falling slowly or fast (with wrap-around, every position is equally likely in
  every frame for both).

Different pairs differ in appearance (shape and colour). Every motion is constant-velocity with
wrap-around or periodic (period 14-24 frames), so any window of an 8-frame clip at stride 2-4 shows
it. Nuisances drawn per video: background colour and low-frequency texture, per-pixel grain, a
slight per-frame brightness flicker, a distractor (random shape, colour, size, slow drift), object
colour jitter, size, start position, orientation and phase.

Augmentations that mirror or reverse motion change the label here: a horizontal flip turns
``square_right`` into ``square_left`` (and clockwise into anticlockwise), playing a clip backwards
swaps every reversal pair. Leave them off for this set.

Public API: :data:`CLASSES`, :data:`CLASS_DESCRIPTIONS`, :class:`SyntheticActionsSpec`,
:func:`render_video` (pure), :func:`generate_synthetic_actions`, :func:`motion_pairs`,
:func:`default_cache_dir`.
"""

from __future__ import annotations

import colorsys
import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import av
import numpy as np
from tqdm.auto import tqdm

from ssvar.data.index import VideoIndex, VideoRecord

__all__ = [
    "CLASSES",
    "CLASS_DESCRIPTIONS",
    "GENERATOR_VERSION",
    "SyntheticActionsSpec",
    "default_cache_dir",
    "generate_synthetic_actions",
    "motion_pairs",
    "render_video",
]

#: Bump whenever rendering or encoding changes: it is part of the cache folder's hash.
GENERATOR_VERSION = 1

# (name, pair kind, description). Classes 2k and 2k+1 form a motion pair, so the first 10 classes
# are 5 complete pairs.
_CLASS_TABLE: list[tuple[str, str, str]] = [
    ("square_right", "slide", "A red square slides right at constant speed, wrapping around at the edge."),
    ("square_left", "slide", "The same red square slides left (square_right played backwards)."),
    ("disc_grow", "pulse", "A green disc grows from small to large, snaps back and grows again (sawtooth)."),
    ("disc_shrink", "pulse", "The same green disc shrinks from large to small and snaps back (disc_grow backwards)."),
    ("bar_rotate_cw", "spin", "A blue bar spins clockwise (on screen) about its centre."),
    ("bar_rotate_ccw", "spin", "The same blue bar spins anticlockwise (bar_rotate_cw backwards)."),
    (
        "ring_then_diamond",
        "blink",
        "A magenta ring and a cyan diamond blink in a cycle: ring appears, diamond appears, ring "
        "vanishes, diamond vanishes.",
    ),
    (
        "diamond_then_ring",
        "blink",
        "The same ring and diamond in the opposite order: diamond appears first and vanishes first "
        "(ring_then_diamond backwards).",
    ),
    (
        "triangle_fall_slow",
        "fall",
        "A yellow downward triangle falls slowly (0.35-0.55 px/frame at 64 px), wrapping around.",
    ),
    ("triangle_fall_fast", "fall", "The same yellow triangle falls fast (1.5-2.1 px/frame at 64 px), wrapping around."),
    ("cross_orbit_cw", "orbit", "An orange cross circles a fixed point clockwise (on screen) without turning itself."),
    ("cross_orbit_ccw", "orbit", "The same orange cross circles anticlockwise (cross_orbit_cw backwards)."),
]

#: Class names in label order.
CLASSES: list[str] = [name for name, _, _ in _CLASS_TABLE]
#: A one-line description of each class.
CLASS_DESCRIPTIONS: dict[str, str] = {name: text for name, _, text in _CLASS_TABLE}

_BASE = 64.0  # the resolution the pixel sizes and speeds below are quoted at

_RED = (220.0, 50.0, 50.0)
_GREEN = (60.0, 200.0, 80.0)
_BLUE = (70.0, 120.0, 240.0)
_MAGENTA = (215.0, 60.0, 215.0)
_CYAN = (40.0, 205.0, 215.0)
_YELLOW = (235.0, 215.0, 50.0)
_ORANGE = (250.0, 140.0, 30.0)


def motion_pairs(num_classes: int | None = None) -> list[tuple[int, int]]:
    """Class-index pairs that differ only in motion (among the first ``num_classes`` classes)."""
    n = len(CLASSES) if num_classes is None else num_classes
    return [(a, a + 1) for a in range(0, len(CLASSES) - 1, 2) if a + 1 < n]


@dataclass(frozen=True)
class SyntheticActionsSpec:
    """The knobs of one SyntheticActions set (everything that changes its pixels).

    ``resolution`` is ``H`` (square) or ``(H, W)``; both must be even (yuv420p) and >= 16.
    ``num_classes`` takes the first N of :data:`CLASSES`.
    """

    num_classes: int = 10
    videos_per_class: int = 30
    num_frames: int = 48
    resolution: int | tuple[int, int] = 64
    fps: int = 25
    seed: int = 0

    def __post_init__(self):
        res = self.resolution
        hw = (int(res), int(res)) if isinstance(res, (int, np.integer)) else tuple(int(v) for v in res)
        if len(hw) != 2:
            raise ValueError(f"resolution must be an int or (height, width), got {res!r}")
        object.__setattr__(self, "resolution", hw)
        if not 2 <= self.num_classes <= len(CLASSES):
            raise ValueError(f"num_classes must be in [2, {len(CLASSES)}], got {self.num_classes}")
        if self.videos_per_class < 1:
            raise ValueError(f"videos_per_class must be >= 1, got {self.videos_per_class}")
        if self.num_frames < 2:
            raise ValueError(f"num_frames must be >= 2, got {self.num_frames}")
        if min(hw) < 16 or hw[0] % 2 or hw[1] % 2:
            raise ValueError(f"resolution must be even and >= 16 (H.264 yuv420p), got {res!r}")
        if self.fps <= 0:
            raise ValueError(f"fps must be > 0, got {self.fps}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)``: ``resolution`` as normalised by the constructor."""
        res = self.resolution
        return (res, res) if isinstance(res, int) else res

    @property
    def height(self) -> int:
        return self.size[0]

    @property
    def width(self) -> int:
        return self.size[1]

    @property
    def classes(self) -> list[str]:
        return CLASSES[: self.num_classes]

    def to_dict(self) -> dict:
        return {
            "num_classes": self.num_classes,
            "videos_per_class": self.videos_per_class,
            "num_frames": self.num_frames,
            "resolution": list(self.size),
            "fps": self.fps,
            "seed": self.seed,
        }

    def cache_key(self) -> str:
        """16 hex digits of a hash of the knobs and :data:`GENERATOR_VERSION`."""
        blob = json.dumps(
            {"generator": "ssvar.SyntheticActions", "version": GENERATOR_VERSION, **self.to_dict()}, sort_keys=True
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def video_rng(self, class_id: int, i: int) -> np.random.Generator:
        """The local RNG of video ``i`` of class ``class_id`` (independent of generation order and of
        ``num_classes`` / ``videos_per_class``: a bigger set extends a smaller one)."""
        return np.random.default_rng([self.seed, class_id, i])

    def relative_path(self, class_id: int, i: int) -> str:
        name = CLASSES[class_id]
        return f"{name}/{name}_{i:04d}.mp4"


# ---------------------------------------------------------------------------------------------
# Rendering: float32 [T, H, W, 3] frames, shapes drawn as anti-aliased signed-distance masks
# ---------------------------------------------------------------------------------------------


class _Canvas:
    """Pixel-centre coordinates, broadcastable against per-frame parameters of shape [T, 1, 1]."""

    def __init__(self, spec: SyntheticActionsSpec):
        self.T, self.H, self.W = spec.num_frames, spec.height, spec.width
        self.S = float(min(self.H, self.W))  # sizes are fractions of the short side
        self.px = self.S / _BASE  # speeds are quoted in pixels/frame at 64 px
        self.t = np.arange(self.T, dtype=np.float32)
        self.ys = (np.arange(self.H, dtype=np.float32) + 0.5).reshape(1, self.H, 1)
        self.xs = (np.arange(self.W, dtype=np.float32) + 0.5).reshape(1, 1, self.W)


def _sdf_disc(u, v, r):
    return np.sqrt(u * u + v * v) - r


def _sdf_ring(u, v, r):
    return np.abs(np.sqrt(u * u + v * v) - 0.8 * r) - 0.2 * r


def _sdf_square(u, v, r):
    return np.maximum(np.abs(u), np.abs(v)) - r


def _sdf_diamond(u, v, r):
    return (np.abs(u) + np.abs(v) - r) * np.float32(0.70710678)


def _sdf_triangle(u, v, r):
    """Equilateral triangle with circumradius ``r`` pointing up (-v, as image y grows down)."""
    edges = np.maximum(np.float32(0.8660254) * np.abs(u) - 0.5 * v, v)
    return edges - 0.5 * r


def _sdf_bar(u, v, r):
    return np.maximum(np.abs(u) - r, np.abs(v) - 0.22 * r)


def _sdf_cross(u, v, r):
    au, av_ = np.abs(u), np.abs(v)
    w = 0.3 * r
    return np.minimum(np.maximum(au - r, av_ - w), np.maximum(au - w, av_ - r))


_SDF: dict[str, Callable] = {
    "disc": _sdf_disc,
    "ring": _sdf_ring,
    "square": _sdf_square,
    "diamond": _sdf_diamond,
    "triangle": _sdf_triangle,
    "bar": _sdf_bar,
    "cross": _sdf_cross,
}
_DISTRACTOR_SHAPES = ("disc", "ring", "square", "diamond", "triangle", "cross")


def _per_frame(x) -> np.ndarray:
    """A scalar or a [T] array as float32 [T or 1, 1, 1]."""
    return np.asarray(x, dtype=np.float32).reshape(-1, 1, 1)


def _shape_alpha(cv: _Canvas, shape: str, cx, cy, r, angle=0.0, wrap: bool = False) -> np.ndarray:
    """Coverage in [0, 1] of ``shape`` centred at (cx, cy) with size ``r`` rotated by ``angle``
    (radians, clockwise on screen); each argument a scalar or per-frame [T]. With ``wrap`` the
    canvas is a torus: what leaves one edge enters at the opposite one (area stays constant)."""
    cx, cy, r, angle = _per_frame(cx), _per_frame(cy), _per_frame(r), _per_frame(angle)
    dx = cv.xs - cx  # [T, 1, W]
    dy = cv.ys - cy  # [T, H, 1]
    if wrap:
        dx = (dx + cv.W / 2) % cv.W - cv.W / 2
        dy = (dy + cv.H / 2) % cv.H - cv.H / 2
    if np.any(angle != 0):
        c, s = np.cos(angle), np.sin(angle)
        dx, dy = c * dx + s * dy, c * dy - s * dx  # rotate the point by -angle into the shape's frame
    return np.clip(0.5 - _SDF[shape](dx, dy, r), 0.0, 1.0)


def _paint(frames: np.ndarray, alpha: np.ndarray, colour) -> None:
    """Alpha-blend ``colour`` (RGB) over ``frames`` [T, H, W, 3] in place."""
    a = alpha[..., None]
    frames += a * (np.asarray(colour, dtype=np.float32) - frames)


def _jitter(rng: np.random.Generator, colour, amount: float = 25.0) -> np.ndarray:
    return np.clip(np.asarray(colour) + rng.uniform(-amount, amount, size=3), 0, 255)


def _lerp_matrix(n_out: int, n_in: int) -> np.ndarray:
    """[n_out, n_in] linear-interpolation weights (bilinear upsampling of a coarse grid)."""
    pos = (np.arange(n_out) + 0.5) / n_out * (n_in - 1)
    i0 = np.minimum(np.floor(pos).astype(int), n_in - 2)
    w = (pos - i0).astype(np.float32)
    m = np.zeros((n_out, n_in), dtype=np.float32)
    m[np.arange(n_out), i0] = 1 - w
    m[np.arange(n_out), i0 + 1] = w
    return m


def _background(cv: _Canvas, rng: np.random.Generator) -> np.ndarray:
    """Dark-to-mid base colour + coloured low-frequency texture + static grain + brightness flicker."""
    base = rng.uniform(15, 120, size=3)
    coarse = rng.normal(0.0, 1.0, size=(5, 5, 3)) * rng.uniform(5, 20)
    texture = np.einsum("hi,ijc,wj->hwc", _lerp_matrix(cv.H, 5), coarse.astype(np.float32), _lerp_matrix(cv.W, 5))
    grain = rng.normal(0.0, 3.0, size=(cv.H, cv.W, 1))
    flicker = rng.normal(0.0, 1.5, size=(cv.T, 1, 1, 1))
    still = (base + texture + grain).astype(np.float32)
    return (still[None] + flicker).astype(np.float32)


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    h, s, v = rng.uniform(0, 1), rng.uniform(0.3, 0.9), rng.uniform(0.45, 0.95)
    return np.array(colorsys.hsv_to_rgb(h, s, v)) * 255


def _draw_distractor(frames: np.ndarray, cv: _Canvas, rng: np.random.Generator) -> None:
    """A smaller object of random shape and colour drifting slowly in a random direction."""
    shape = _DISTRACTOR_SHAPES[rng.integers(len(_DISTRACTOR_SHAPES))]
    colour = _random_colour(rng)
    r = rng.uniform(0.05, 0.09) * cv.S
    x0, y0 = rng.uniform(0, cv.W), rng.uniform(0, cv.H)
    speed, heading = rng.uniform(0, 0.5) * cv.px, rng.uniform(0, 2 * np.pi)
    angle = rng.uniform(0, 2 * np.pi)
    cx = x0 + speed * np.cos(heading) * cv.t
    cy = y0 + speed * np.sin(heading) * cv.t
    _paint(frames, _shape_alpha(cv, shape, cx, cy, r, angle, wrap=True), colour)


# One function per motion type. Each draws the *first* class of its pair and consumes the RNG
# identically for both classes; ``variant`` (0 or 1) is the member of the pair, used only where
# the second class is not simply the first played backwards.


def _draw_slide(frames, cv: _Canvas, rng, variant: int) -> None:
    """Square translating right at constant speed (0.8-1.4 px/frame), wrapping around."""
    r = rng.uniform(0.09, 0.14) * cv.S
    y = rng.uniform(r, cv.H - r)
    x0 = rng.uniform(0, cv.W)
    speed = rng.uniform(0.8, 1.4) * cv.px
    tilt = rng.uniform(-0.35, 0.35)
    colour = _jitter(rng, _RED)
    _paint(frames, _shape_alpha(cv, "square", x0 + speed * cv.t, y, r, tilt, wrap=True), colour)


def _draw_pulse(frames, cv: _Canvas, rng, variant: int) -> None:
    """Disc whose radius rises linearly from small to large over a 14-22 frame period (sawtooth)."""
    r_min = rng.uniform(0.05, 0.08) * cv.S
    r_max = rng.uniform(0.22, 0.28) * cv.S
    period, phase = rng.uniform(14, 22), rng.uniform(0, 1)
    cx, cy = rng.uniform(r_max, cv.W - r_max), rng.uniform(r_max, cv.H - r_max)
    colour = _jitter(rng, _GREEN)
    frac = (cv.t / period + phase) % 1.0
    _paint(frames, _shape_alpha(cv, "disc", cx, cy, r_min + (r_max - r_min) * frac), colour)


def _draw_spin(frames, cv: _Canvas, rng, variant: int) -> None:
    """Bar rotating clockwise about its centre at 0.07-0.14 rad/frame (< pi/2 per 4 frames, so a
    stride-4 clip cannot alias the direction of the half-turn-symmetric bar)."""
    half_len = rng.uniform(0.2, 0.3) * cv.S
    cx, cy = rng.uniform(half_len, cv.W - half_len), rng.uniform(half_len, cv.H - half_len)
    omega, theta0 = rng.uniform(0.07, 0.14), rng.uniform(0, np.pi)
    colour = _jitter(rng, _BLUE)
    _paint(frames, _shape_alpha(cv, "bar", cx, cy, half_len, theta0 + omega * cv.t), colour)


def _draw_blink(frames, cv: _Canvas, rng, variant: int) -> None:
    """Ring on during the first half of a 16-24 frame cycle, diamond on from 1/4 to 3/4: each frame
    shows ring only, both, diamond only or nothing, a quarter of the time each."""
    r_ring, r_diamond = rng.uniform(0.1, 0.15, size=2) * cv.S
    period, phase = rng.uniform(16, 24), rng.uniform(0, 1)
    xs = [rng.uniform(0.18, 0.35) * cv.W, rng.uniform(0.65, 0.82) * cv.W]
    if rng.random() < 0.5:
        xs.reverse()
    ys = rng.uniform(0.2, 0.8, size=2) * cv.H
    c_ring, c_diamond = _jitter(rng, _MAGENTA), _jitter(rng, _CYAN)
    frac = (cv.t / period + phase) % 1.0
    ring_on = _per_frame(frac < 0.5)
    diamond_on = _per_frame((frac >= 0.25) & (frac < 0.75))
    _paint(frames, _shape_alpha(cv, "ring", xs[0], ys[0], r_ring) * ring_on, c_ring)
    _paint(frames, _shape_alpha(cv, "diamond", xs[1], ys[1], r_diamond) * diamond_on, c_diamond)


def _draw_fall(frames, cv: _Canvas, rng, variant: int) -> None:
    """Downward triangle falling with wrap-around: slow (variant 0, 0.35-0.55 px/frame) or fast
    (variant 1, 1.5-2.1 px/frame). Every other draw is shared by the two variants."""
    r = rng.uniform(0.1, 0.14) * cv.S
    x, y0 = rng.uniform(r, cv.W - r), rng.uniform(0, cv.H)
    u = rng.uniform(0, 1)
    speed = (1.5 + 0.6 * u if variant else 0.35 + 0.2 * u) * cv.px
    colour = _jitter(rng, _YELLOW)
    _paint(frames, _shape_alpha(cv, "triangle", x, y0 + speed * cv.t, r, np.pi, wrap=True), colour)


def _draw_orbit(frames, cv: _Canvas, rng, variant: int) -> None:
    """Cross (fixed orientation) circling a point clockwise at 0.10-0.18 rad/frame."""
    radius = rng.uniform(0.15, 0.24) * cv.S
    r = rng.uniform(0.08, 0.11) * cv.S
    m = radius + r
    cx0 = rng.uniform(min(m, cv.W / 2), max(cv.W - m, cv.W / 2))
    cy0 = rng.uniform(min(m, cv.H / 2), max(cv.H - m, cv.H / 2))
    omega, theta0 = rng.uniform(0.10, 0.18), rng.uniform(0, 2 * np.pi)
    tilt = rng.uniform(0, np.pi / 2)
    colour = _jitter(rng, _ORANGE)
    theta = theta0 + omega * cv.t
    _paint(
        frames, _shape_alpha(cv, "cross", cx0 + radius * np.cos(theta), cy0 + radius * np.sin(theta), r, tilt), colour
    )


# kind -> (draw function, whether the pair's second class is the first played backwards)
_KINDS: dict[str, tuple[Callable, bool]] = {
    "slide": (_draw_slide, True),
    "pulse": (_draw_pulse, True),
    "spin": (_draw_spin, True),
    "blink": (_draw_blink, True),
    "fall": (_draw_fall, False),
    "orbit": (_draw_orbit, True),
}


def render_video(class_id: int, rng: np.random.Generator, spec: SyntheticActionsSpec) -> np.ndarray:
    """Render one video of class ``class_id`` as uint8 ``[T, H, W, 3]`` (RGB). Pure: no I/O, the
    pixels depend only on ``class_id``, the state of ``rng`` and ``spec``'s frames and resolution.

    The two classes of a motion pair consume ``rng`` identically, so with equal RNG states they
    show the same scene; for every pair but the speed pair the second is the first reversed in time.
    """
    if not 0 <= class_id < len(CLASSES):
        raise ValueError(f"class_id must be in [0, {len(CLASSES)}), got {class_id}")
    cv = _Canvas(spec)
    frames = _background(cv, rng)
    _draw_distractor(frames, cv, rng)
    draw, reversed_pair = _KINDS[_CLASS_TABLE[class_id][1]]
    variant = class_id % 2
    draw(frames, cv, rng, variant)
    if reversed_pair and variant:
        frames = frames[::-1]
    return np.ascontiguousarray(np.clip(np.rint(frames), 0, 255).astype(np.uint8))


# ---------------------------------------------------------------------------------------------
# Writing and caching
# ---------------------------------------------------------------------------------------------

# keyint 16: keyframes every 16 frames keep seeks cheap; scenecut=0 keeps the GOP fixed (the
# sawtooth resets would otherwise insert keyframes); mbtree=0: with macroblock-tree rate control,
# x264 gave different bytes from run to run when several encoders ran at once in one process
# (measured with x264 in PyAV 18.1; fine without it), and the set must be reproducible.
_X264_OPTIONS = {"crf": "22", "preset": "medium", "x264-params": "keyint=16:min-keyint=16:scenecut=0:mbtree=0"}


def _write_mp4(path: str, video: np.ndarray, fps: int) -> None:
    """Encode uint8 [T, H, W, 3] RGB frames as H.264 yuv420p MP4."""
    with av.open(path, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps, options=dict(_X264_OPTIONS))
        stream.height, stream.width = video.shape[1:3]
        stream.pix_fmt = "yuv420p"
        # One x264 thread per file: files are encoded in parallel instead (frames are tiny).
        stream.codec_context.thread_count = 1
        stream.codec_context.thread_type = "NONE"
        for image in video:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())


def default_cache_dir() -> str:
    """``$SSVAR_CACHE/synthetic`` when set, else ``$XDG_CACHE_HOME`` (default ``~/.cache``)
    ``/ssvar/synthetic``. Each knob set gets its own hashed subfolder below it."""
    env = os.environ.get("SSVAR_CACHE")
    if env:
        return os.path.join(os.path.expanduser(env), "synthetic")
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "ssvar", "synthetic")


def _build_index(spec: SyntheticActionsSpec) -> VideoIndex:
    records = [
        VideoRecord(path=spec.relative_path(c, i), label=c, group=None)
        for c in range(spec.num_classes)
        for i in range(spec.videos_per_class)
    ]
    return VideoIndex(records, list(spec.classes))


def _is_complete(folder: str, spec: SyntheticActionsSpec, index: VideoIndex) -> bool:
    """A readable manifest for these knobs whose every file exists with its recorded size."""
    try:
        with open(os.path.join(folder, "manifest.json"), encoding="utf-8") as f:
            manifest = json.load(f)
        files = manifest["files"]
        if manifest["version"] != GENERATOR_VERSION or manifest["spec"] != spec.to_dict():
            return False
        if sorted(files) != sorted(index.paths()):
            return False
        return all(os.path.getsize(os.path.join(folder, p)) == size > 0 for p, size in files.items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def _write_dataset(folder: str, spec: SyntheticActionsSpec, progress: bool) -> None:
    for name in spec.classes:
        os.makedirs(os.path.join(folder, name), exist_ok=True)

    def make(job: tuple[int, int]) -> tuple[str, int]:
        class_id, i = job
        path = spec.relative_path(class_id, i)
        full = os.path.join(folder, path)
        _write_mp4(full, render_video(class_id, spec.video_rng(class_id, i), spec), spec.fps)
        return path, os.path.getsize(full)

    jobs = [(c, i) for c in range(spec.num_classes) for i in range(spec.videos_per_class)]
    # numpy and x264 release the GIL for most of the work: a few threads use the cores.
    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
        done = tqdm(pool.map(make, jobs), total=len(jobs), desc="SyntheticActions", unit="video", disable=not progress)
        sizes = dict(done)
    manifest = {
        "generator": "ssvar.data.synthetic",
        "version": GENERATOR_VERSION,
        "spec": spec.to_dict(),
        "classes": list(spec.classes),
        "descriptions": {name: CLASS_DESCRIPTIONS[name] for name in spec.classes},
        "motion_pairs": [list(p) for p in motion_pairs(spec.num_classes)],
        "files": sizes,
    }
    tmp = os.path.join(folder, "manifest.json.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1)
    os.replace(tmp, os.path.join(folder, "manifest.json"))  # written last: marks completion


def _file_lock(path: str):
    """An inter-process lock on ``path``, or ``None`` without the ``filelock`` package (a
    dependency of torch, so normally present; without it the temp-dir + rename stays safe)."""
    try:
        from filelock import FileLock
    except ImportError:  # pragma: no cover
        return None
    return FileLock(path)


def _remove(path: str) -> None:
    """Delete a file or folder tree; rename it aside first so the name is free at once."""
    if not os.path.lexists(path):
        return
    trash = f"{path}.trash-{os.getpid()}-{os.urandom(4).hex()}"
    try:
        os.rename(path, trash)
    except OSError:
        trash = path
    if os.path.isdir(trash) and not os.path.islink(trash):
        shutil.rmtree(trash, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            os.remove(trash)


def generate_synthetic_actions(
    root: str | os.PathLike | None = None,
    *,
    num_classes: int = 10,
    videos_per_class: int = 30,
    num_frames: int = 48,
    resolution: int | tuple[int, int] = 64,
    fps: int = 25,
    seed: int = 0,
    progress: bool = True,
) -> tuple[str, VideoIndex]:
    """Make sure the SyntheticActions set for these knobs exists on disk; return ``(dataset_root,
    index)``.

    The set lives in ``<root>/<spec.cache_key()>`` (``root`` defaults to :func:`default_cache_dir`).
    A folder with a valid ``manifest.json`` is reused as is; a missing, partial or corrupt one is
    (re)generated into a temporary sibling folder and renamed into place under a file lock, so
    concurrent processes (DDP ranks) never see a half-written set. Index paths are relative to
    the returned root, labels are class indices, groups are ``None``.
    """
    spec = SyntheticActionsSpec(num_classes, videos_per_class, num_frames, resolution, fps, seed)
    base = os.path.abspath(os.path.expanduser(os.fspath(root) if root is not None else default_cache_dir()))
    key = spec.cache_key()
    final = os.path.join(base, key)
    index = _build_index(spec)
    if _is_complete(final, spec, index):
        return final, index

    os.makedirs(base, exist_ok=True)
    lock = _file_lock(os.path.join(base, f".{key}.lock"))
    with lock if lock is not None else contextlib.nullcontext():
        if _is_complete(final, spec, index):  # another process finished while we waited
            return final, index
        if lock is not None:  # leftovers of killed runs (a live generator would hold the lock)
            for name in os.listdir(base):
                if name.startswith(f".{key}.tmp-") or name.startswith(f"{key}.trash-"):
                    _remove(os.path.join(base, name))
        tmp = tempfile.mkdtemp(prefix=f".{key}.tmp-", dir=base)
        try:
            os.chmod(tmp, 0o755)
            _write_dataset(tmp, spec, progress)
            _remove(final)  # partial or corrupt
            try:
                os.rename(tmp, final)
            except OSError:
                # Someone without the lock (no filelock) put a set there first: use theirs if valid.
                if not _is_complete(final, spec, index):
                    raise
                shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return final, index
