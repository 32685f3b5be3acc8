"""Clip transforms on uint8 video tensors ``[T, C, H, W]`` with torchvision.transforms.v2.

v2 draws a transform's random parameters once per call, so every frame of a clip gets the same
crop, flip and RandAugment ops. Views that must share frames and crop (FixMatch's weak and strong
views, two frame rates of one clip) are concatenated along time, cropped in one call, and split.

Normalisation to float happens on the device (:func:`normalize_video`), not in workers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation knobs shared by every view of a dataset.

    Args:
        crop_size: output side of the square crop.
        weak: ``"random_resized_crop"`` or ``"scale_jitter"`` (random short side in
            ``jitter_range``, then a random crop).
        area_range: RandomResizedCrop area range.
        jitter_range: short-side range for scale jitter.
        hflip: horizontal flip probability (0 for datasets whose classes depend on direction).
        randaugment: the strong view's op set and ranges: ``"torchvision"`` (``v2.RandAugment``:
            14 ops, magnitude a bin of 31) or ``"mmaction2"`` (:class:`VideoRandAugment`,
            MMAction2's ``Imgaug('default')`` used by LTG: 15 ops with Invert and Cutout,
            magnitude a level of 10).
        randaugment_ops, randaugment_magnitude: strong view's RandAugment (N, M). The same
            ``M = 9`` is level 9 of 31 for ``"torchvision"`` (shear ~5 deg, rotate ~9 deg) and
            level 9 of 10 for ``"mmaction2"`` (shear ~15.5 deg, rotate 27 deg).
        randaugment_exclude: RandAugment ops left out of the strong view, for datasets where an
            op changes the label. Names as in :data:`RANDAUGMENT_OPS` (torchvision) or
            :data:`VIDEO_RANDAUGMENT_OPS` (mmaction2); both sets name the shared ops alike
            (``Solarize``, ``Equalize``, ``AutoContrast``, ``Color``, ...), and a name the chosen
            set does not have (``Invert``/``Cutout`` under torchvision, ``Identity`` under
            mmaction2) excludes nothing.
        test_crops: 1 (centre) or 3 (both ends and centre of the long side).
    """

    crop_size: int = 112
    weak: Literal["random_resized_crop", "scale_jitter"] = "random_resized_crop"
    area_range: tuple[float, float] = (0.25, 1.0)
    jitter_range: tuple[int, int] = (128, 160)
    hflip: float = 0.5
    randaugment_ops: int = 2
    randaugment_magnitude: int = 9
    randaugment_exclude: tuple[str, ...] = ()
    test_crops: int = 1
    randaugment: Literal["torchvision", "mmaction2"] = "torchvision"

    def __post_init__(self):
        if self.randaugment not in ("torchvision", "mmaction2"):
            raise ValueError(f"randaugment must be 'torchvision' or 'mmaction2', got {self.randaugment!r}")
        known = set(RANDAUGMENT_OPS) | set(VIDEO_RANDAUGMENT_OPS)
        unknown = sorted(set(self.randaugment_exclude) - known)
        if unknown:
            raise ValueError(f"unknown RandAugment op(s) {unknown}; the ops are {sorted(known)}")
        ops = RANDAUGMENT_OPS if self.randaugment == "torchvision" else VIDEO_RANDAUGMENT_OPS
        if not set(ops) - set(self.randaugment_exclude):
            raise ValueError("randaugment_exclude leaves no RandAugment op")
        if self.randaugment == "mmaction2" and not 0 <= self.randaugment_magnitude <= VideoRandAugment.MAX_LEVEL:
            raise ValueError(
                "randaugment_magnitude is a level of 0..10 for randaugment='mmaction2', got "
                f"{self.randaugment_magnitude}"
            )


def weak_transform(cfg: AugmentConfig) -> v2.Transform:
    if cfg.weak == "random_resized_crop":
        crop = v2.RandomResizedCrop(cfg.crop_size, scale=cfg.area_range, antialias=True)
    elif cfg.weak == "scale_jitter":
        lo, hi = cfg.jitter_range
        crop = v2.Compose(
            [v2.RandomShortestSize(list(range(lo, hi + 1)), antialias=True), v2.RandomCrop(cfg.crop_size)]
        )
    else:
        raise ValueError(f"weak augmentation must be 'random_resized_crop' or 'scale_jitter', got {cfg.weak!r}")
    return v2.Compose([crop, v2.RandomHorizontalFlip(cfg.hflip)])


#: The ops torchvision's RandAugment draws from (uniformly, ``num_ops`` per clip).
RANDAUGMENT_OPS: tuple[str, ...] = tuple(v2.RandAugment._AUGMENTATION_SPACE)


class RestrictedRandAugment(v2.RandAugment):
    """torchvision's RandAugment drawing only from the ops not in ``exclude``."""

    def __init__(self, *args, exclude: tuple[str, ...] = (), **kwargs):
        super().__init__(*args, **kwargs)
        self.exclude = tuple(exclude)

    # RandAugment reads its op table through ``self``; a property (not a stored dict of lambdas)
    # keeps the transform picklable for spawned DataLoader workers.
    @property
    def _AUGMENTATION_SPACE(self):  # noqa: N802 (torchvision's name)
        return {k: v for k, v in v2.RandAugment._AUGMENTATION_SPACE.items() if k not in self.exclude}


#: The ops of MMAction2's ``Imgaug('default')`` (RandAugment of the TPU EfficientNet code without
#: SolarizeAdd), in the order it applies them; the names of the ops torchvision shares are
#: torchvision's.
VIDEO_RANDAUGMENT_OPS: tuple[str, ...] = (
    "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Posterize", "Solarize",
    "Color", "Contrast", "Brightness", "Sharpness", "AutoContrast", "Equalize", "Invert", "Cutout",
)


class VideoRandAugment:
    """RandAugment with MMAction2's ``Imgaug('default')`` op set and ranges (LTG's strong view),
    on uint8 video tensors ``[T, C, H, W]``: ``num_ops`` distinct ops drawn uniformly per clip and
    applied in table order, every frame of the clip with the same parameters.

    At ``level = magnitude / 10`` (MMAction2: 9 of 10) the op parameters are (MMAction2's
    ``mmaction/datasets/transforms/wrappers.py``, ``ImgAug.default_transforms``; imgaug's
    defaults for what it leaves unset):

    ============  ==========================  ==================
    op            parameter                   at level 0.9
    ============  ==========================  ==================
    ShearX/Y      ``17.19 * level`` degrees   15.47 deg
    TranslateX/Y  ``0.2 * level`` of the side 18 %
    Rotate        ``30 * level`` degrees      27 deg
    Posterize     ``max(1, int(4 * level))``  3 bits
    Solarize      ``256 * level``             inverts >= 230.4
    Color, Contrast, Brightness, Sharpness: factor ``1.8 * level + 0.1``  x1.72
    AutoContrast  no cutoff
    Equalize, Invert  (no parameter)
    Cutout        one square, side ``0.2 * level`` of the image side, centre uniform, grey 128  18 %
    ============  ==========================  ==================

    Geometric ops fill with 0 (imgaug's ``cval``) and interpolate bilinearly (imgaug's
    ``order=1``). One difference, our choice: MMAction2 draws the sign of the shear, translate
    and rotate ops once, when the pipeline is built (``random.choice`` in the config), so a
    whole run shears one way; here the sign is drawn per clip, as in RandAugment.

    Randomness comes from torch's global generator (seeded per worker by Lightning).

    Args:
        num_ops: ops per clip (MMAction2: 2).
        magnitude: level, 0..10 (MMAction2: 9).
        exclude: op names (:data:`VIDEO_RANDAUGMENT_OPS`) never drawn.
    """

    MAX_LEVEL = 10

    def __init__(self, num_ops: int = 2, magnitude: float = 9, exclude: tuple[str, ...] = ()):
        unknown = sorted(set(exclude) - set(VIDEO_RANDAUGMENT_OPS) - set(RANDAUGMENT_OPS))
        if unknown:
            raise ValueError(f"unknown op(s) {unknown}; VideoRandAugment has {list(VIDEO_RANDAUGMENT_OPS)}")
        self.ops = tuple(op for op in VIDEO_RANDAUGMENT_OPS if op not in set(exclude))
        if not 1 <= num_ops <= len(self.ops):
            raise ValueError(f"num_ops must be in 1..{len(self.ops)} (the ops left), got {num_ops}")
        if not 0 <= magnitude <= self.MAX_LEVEL:
            raise ValueError(f"magnitude must be a level in 0..{self.MAX_LEVEL}, got {magnitude}")
        self.num_ops = num_ops
        self.magnitude = magnitude

    @staticmethod
    def magnitudes(magnitude: float) -> dict[str, float]:
        """Each op's parameter at ``magnitude`` (unsigned; module table)."""
        level = magnitude / VideoRandAugment.MAX_LEVEL
        return {
            "ShearX": 17.19 * level, "ShearY": 17.19 * level,  # degrees
            "TranslateX": 0.2 * level, "TranslateY": 0.2 * level,  # fraction of the side
            "Rotate": 30.0 * level,  # degrees
            "Posterize": float(max(1, int(4 * level))),  # bits kept
            "Solarize": 256.0 * level,  # threshold
            "Color": 1.8 * level + 0.1, "Contrast": 1.8 * level + 0.1,
            "Brightness": 1.8 * level + 0.1, "Sharpness": 1.8 * level + 0.1,  # enhance factors
            "Cutout": 0.2 * level,  # square side, fraction of the image side
        }

    def __call__(self, video: torch.Tensor) -> torch.Tensor:
        chosen = sorted(torch.randperm(len(self.ops))[: self.num_ops].tolist())  # table order
        for i in chosen:
            video = self.apply(video, self.ops[i])
        return video

    def apply(self, video: torch.Tensor, op: str) -> torch.Tensor:
        """One op on a ``[T, C, H, W]`` uint8 clip, with a fresh sign / Cutout position."""
        m = self.magnitudes(self.magnitude).get(op, 0.0)
        sign = 1.0 if float(torch.rand(())) < 0.5 else -1.0
        h, w = video.shape[-2:]
        bilinear = v2.InterpolationMode.BILINEAR
        if op in ("ShearX", "ShearY"):
            shear = [sign * m, 0.0] if op == "ShearX" else [0.0, sign * m]
            return F.affine(video, angle=0.0, translate=[0, 0], scale=1.0, shear=shear, interpolation=bilinear, fill=0)
        if op in ("TranslateX", "TranslateY"):
            shift = [round(sign * m * w), 0] if op == "TranslateX" else [0, round(sign * m * h)]
            return F.affine(
                video, angle=0.0, translate=shift, scale=1.0, shear=[0.0, 0.0], interpolation=bilinear, fill=0
            )
        if op == "Rotate":
            return F.rotate(video, sign * m, interpolation=bilinear, fill=0)
        if op == "Posterize":
            return F.posterize(video, int(m))
        if op == "Solarize":
            return F.solarize(video, m)
        if op == "Color":
            return F.adjust_saturation(video, m)
        if op == "Contrast":
            return F.adjust_contrast(video, m)
        if op == "Brightness":
            return F.adjust_brightness(video, m)
        if op == "Sharpness":
            return F.adjust_sharpness(video, m)
        if op == "AutoContrast":
            return F.autocontrast(video)
        if op == "Equalize":
            return F.equalize(video)
        if op == "Invert":
            return F.invert(video)
        if op == "Cutout":
            return cutout(video, m)
        raise ValueError(f"unknown op {op!r}")


def cutout(video: torch.Tensor, size: float, fill: int = 128) -> torch.Tensor:
    """One grey square on every frame of ``[..., H, W]``: sides ``round(size * H)`` x
    ``round(size * W)``, centre uniform over the image, clipped at the border (imgaug's
    ``Cutout(nb_iterations=1, squared=True)``, ``cval=128``)."""
    h, w = video.shape[-2:]
    ch, cw = max(1, round(size * h)), max(1, round(size * w))
    cy, cx = float(torch.rand(())) * h, float(torch.rand(())) * w
    y0, x0 = max(0, round(cy - ch / 2)), max(0, round(cx - cw / 2))
    y1, x1 = min(h, round(cy + ch / 2)), min(w, round(cx + cw / 2))
    out = video.clone()
    out[..., y0:y1, x0:x1] = fill
    return out


def strong_transform(cfg: AugmentConfig):
    """Applied on top of the weak view's crop: photometric/geometric RandAugment ops."""
    if cfg.randaugment == "mmaction2":
        return VideoRandAugment(cfg.randaugment_ops, cfg.randaugment_magnitude, exclude=cfg.randaugment_exclude)
    exclude = tuple(op for op in cfg.randaugment_exclude if op in RANDAUGMENT_OPS)  # Invert/Cutout: not in this set
    if exclude:
        return RestrictedRandAugment(num_ops=cfg.randaugment_ops, magnitude=cfg.randaugment_magnitude, exclude=exclude)
    return v2.RandAugment(num_ops=cfg.randaugment_ops, magnitude=cfg.randaugment_magnitude)


@dataclass(frozen=True)
class TemporalWarp:
    """Temporal warping (SVFormer, Xing et al. CVPR 2023): a few anchor frames, each stretched to
    fill part of the gap to the next, replace the clip, so the clip keeps its length but its
    motion is re-timed (some moments frozen, others skipped).

    One draw: pick ``k`` from ``anchors`` (with ``probs``; uniform by default), then ``k``
    distinct sorted positions of the clip. Frames before the first anchor show the first anchor,
    frames after the last show the last, and each gap between consecutive anchors ``a < b`` is
    split at a random point ``m`` in ``(a, b]``: positions ``[a, m)`` show ``a``, ``[m, b)`` show
    ``b``. ``k = 0`` keeps the clip unchanged. The released code's default is
    ``anchors=(0, 2, 4)`` with equal probabilities on 8 frames. Our choice (assumption): ``m`` is
    drawn in ``(a, b]``, so every anchor is shown at least once (the released code draws it in
    ``[a, b]`` and can drop an anchor).

    Randomness comes from torch's global generator (seeded per worker by Lightning), like every
    other augmentation. Use it on a decoded clip (:meth:`__call__`) or, cheaper, on the frame
    indices before decoding (:meth:`indices`; ``ViewSpec(temporal_warp=...)`` does this).

    Args:
        anchors: the possible anchor counts (0: no warp).
        probs: their probabilities (``None``: equal).
    """

    anchors: tuple[int, ...] = (0, 2, 4)
    probs: tuple[float, ...] | None = None

    def __post_init__(self):
        if not self.anchors or any(int(a) != a or a < 0 for a in self.anchors):
            raise ValueError(f"TemporalWarp.anchors must be non-negative integers, got {self.anchors}")
        if self.probs is not None:
            if (
                len(self.probs) != len(self.anchors)
                or any(p < 0 for p in self.probs)
                or abs(sum(self.probs) - 1) > 1e-6
            ):
                raise ValueError(
                    f"TemporalWarp.probs must be {len(self.anchors)} non-negative numbers summing to 1, got "
                    f"{self.probs}"
                )

    def indices(self, length: int) -> np.ndarray:
        """Positions ``[length]`` into a clip of ``length`` frames (non-decreasing, anchors only)."""
        probs = torch.tensor(self.probs if self.probs is not None else [1.0] * len(self.anchors), dtype=torch.float64)
        k = min(int(self.anchors[int(torch.multinomial(probs, 1))]), length)
        if k == 0:
            return np.arange(length)
        pos = torch.randperm(length)[:k].sort().values.tolist()
        out = np.empty(length, dtype=np.int64)
        out[: pos[0]] = pos[0]
        for a, b in zip(pos, pos[1:]):
            m = int(torch.randint(a + 1, b + 1, ()))
            out[a:m], out[m:b] = a, b
        out[pos[-1] :] = pos[-1]
        return out

    def __call__(self, clip: torch.Tensor, dim: int = 0) -> torch.Tensor:
        """The warped clip; time is dimension ``dim`` (0 for ``[T, C, H, W]``)."""
        idx = torch.from_numpy(self.indices(clip.shape[dim])).to(clip.device)
        return clip.index_select(dim, idx)


def test_crops(video: torch.Tensor, crop_size: int, num_crops: int) -> list[torch.Tensor]:
    """Short-side resize to ``crop_size`` then 1 centre crop or 3 crops along the long side."""
    video = F.resize(video, crop_size, antialias=True)
    h, w = video.shape[-2:]
    if num_crops == 1:
        return [F.center_crop(video, [crop_size, crop_size])]
    if num_crops != 3:
        raise ValueError(f"test_crops must be 1 or 3, got {num_crops}")
    if w >= h:
        offsets = [(0, x) for x in (0, (w - crop_size) // 2, w - crop_size)]
    else:
        offsets = [(y, 0) for y in (0, (h - crop_size) // 2, h - crop_size)]
    return [video[..., y : y + crop_size, x : x + crop_size] for y, x in offsets]


def as_video(frames: torch.Tensor) -> tv_tensors.Video:
    """``[T, H, W, C]`` uint8 (decoder output) -> ``[T, C, H, W]`` video tensor."""
    return tv_tensors.Video(frames.permute(0, 3, 1, 2))


def normalize_video(x: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    """uint8 ``[..., C, T, H, W]`` -> float, normalised per channel (run on the device)."""
    mean_t = torch.as_tensor(mean, device=x.device, dtype=torch.float32).view(-1, 1, 1, 1)
    std_t = torch.as_tensor(std, device=x.device, dtype=torch.float32).view(-1, 1, 1, 1)
    return (x.float().div_(255.0) - mean_t) / std_t
