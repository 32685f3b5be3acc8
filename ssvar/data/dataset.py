"""Map-style video dataset of named views.

A sample is a dict: one uint8 tensor per view (``[C, T, H, W]``, or ``[V, C, T, H, W]`` for
multi-clip/multi-crop/multi-scale views), ``label`` (-1 for unlabelled samples), ``index``,
``hidden_label`` for unlabelled samples (the true label where known: monitoring only, never a
loss), and ``decode_failures`` (how many broken videos were skipped to produce this sample).

Each video is opened once per sample; the frames of every view are decoded in one pass.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Literal, Mapping

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors

from ssvar.components.temporal_gradient import split_rgb_tg
from ssvar.data.decode import Decoder, ReferenceMap, VideoDecodeError, VideoInfo, decoder_from_name
from ssvar.data.index import VideoIndex
from ssvar.data.sampling import ShortPolicy, clip_indices, gop_aware_shift, random_centre, uniform_centres
from ssvar.data.transforms import AugmentConfig, TemporalWarp, as_video, strong_transform, test_crops, weak_transform

log = logging.getLogger(__name__)


def resolved_short_side(short_side: int | None, crop_size: int) -> int:
    """The short side frames are decoded to: ``short_side``, or ``crop_size * 8 / 7`` (the
    256/224 ratio of the ImageNet and Kinetics recipes) when it is not given."""
    return int(short_side or round(crop_size * 8 / 7))


@dataclass(frozen=True)
class ViewSpec:
    """One view a method needs from each sample.

    Args:
        aug: ``"weak"`` (random crop + flip), ``"strong"`` (weak + RandAugment) or ``"test"``
            (short-side resize + centre/three crops).
        num_frames: frames per clip; ``None`` takes the data module's ``num_frames``.
        stride: frame stride; ``None`` takes the data module's ``stride`` times ``stride_factor``.
        stride_factor: multiplies the default stride (two frame rates from one decode: views with
            factors 1 and 2 around the same centre).
        stride_divisor: divides the default stride (rounded down, at least 1): a view at a *higher*
            frame rate than the data module's clips, e.g. ActNetFormer's auxiliary network
            (``stride_divisor=2``) while the primary network keeps the default stride, which is
            also the stride of the evaluation views.
        scales: long clips at several temporal scales: stride multipliers, stacked as
            ``[S, C, T, H, W]``.
        same_as: share the crop (and the frames, when the timing matches) with another view; a
            ``strong`` view with ``same_as="weak"`` is RandAugment applied on the weak view's crop.
        clips: number of uniformly spaced clips (evaluation views).
        crops: 1 or 3 spatial crops (evaluation views).
        next_offset: also deliver, for every frame ``t`` of the clip, frame ``t + next_offset``
            (clamped to the last frame), with the same crop and augmentation, as a second half of
            the time axis: ``[C, 2T, H, W]``. Temporal gradients are computed from it on the device
            (``next_offset=1``: consecutive frames; ``=stride``: "slow" gradient of sampled frames).
        window: ``"shared"`` (default): in training, every view of a sample is placed around one
            random centre frame; ``"own"``: this view draws its own random centre (another
            temporal window of the same video, as SVFormer's released strong view). Evaluation
            views ignore it.
        temporal_warp: re-time the clip's frames with a :class:`~ssvar.data.transforms.TemporalWarp`
            (SVFormer's strong view). Applied to the frame indices before decoding, so only the
            anchor frames are decoded; any crop/RandAugment then applies to the warped clip.
        offsets: clip centres relative to the sample's shared centre, in frames: one clip per
            offset, stacked ``[V, C, T, H, W]`` (with ``clips > 1``: every offset around every
            uniform centre). Consecutive sub-clips tiling another view's span come from
            :func:`ssvar.data.sampling.tiling_offsets` (TimeBalance/TCLR's dense clips).
        independent_clips: each clip of a multi-clip view draws its own augmentation (crop, flip,
            RandAugment) instead of sharing one draw. Such a view cannot take part in ``same_as``.
        fit_to_centre: in training, this view does not limit where the shared centre is drawn
            (by default the centre is drawn so that every shared view fits): its clips are placed
            around the centre the other views drew, slid inside the video when they overhang,
            and, when longer than the video, given a smaller stride (``short_policy``). ACL+MTL's
            long clips: the short clip's position is drawn over the whole video.
        gradient: deliver the temporal gradient of frames ``t`` and ``t + next_offset`` (needs
            ``next_offset``), ``[C, T, H, W]``, taken in the worker after the crop and flip and
            *before* a ``strong`` view's RandAugment, which then draws its ops for the gradient
            image itself (LTG's strong temporal-gradient view).
    """

    aug: Literal["weak", "strong", "test"] = "weak"
    num_frames: int | None = None
    stride: int | None = None
    stride_factor: int = 1
    stride_divisor: int = 1
    scales: tuple[int, ...] | None = None
    same_as: str | None = None
    clips: int = 1
    crops: int = 1
    next_offset: int | None = None
    window: Literal["shared", "own"] = "shared"
    temporal_warp: TemporalWarp | None = None
    offsets: tuple[float, ...] | None = None
    independent_clips: bool = False
    fit_to_centre: bool = False
    gradient: bool = False

    def __post_init__(self):
        if self.aug not in ("weak", "strong", "test"):
            raise ValueError(f"ViewSpec.aug must be 'weak', 'strong' or 'test', got {self.aug!r}")
        if self.clips < 1 or self.crops not in (1, 3):
            raise ValueError(f"ViewSpec needs clips >= 1 and crops in (1, 3), got {self.clips}, {self.crops}")
        if self.stride_factor < 1 or self.stride_divisor < 1:
            raise ValueError(f"ViewSpec.stride_factor and stride_divisor must be >= 1, got {self.stride_factor}, {self.stride_divisor}")
        if self.next_offset is not None and self.next_offset < 1:
            raise ValueError(f"ViewSpec.next_offset must be >= 1, got {self.next_offset}")
        if self.window not in ("shared", "own"):
            raise ValueError(f"ViewSpec.window must be 'shared' or 'own', got {self.window!r}")
        if self.temporal_warp is not None and not isinstance(self.temporal_warp, TemporalWarp):
            raise TypeError(f"ViewSpec.temporal_warp must be a TemporalWarp, got {type(self.temporal_warp).__name__}")
        if self.offsets is not None:
            if len(self.offsets) == 0:
                raise ValueError("ViewSpec.offsets must hold at least one offset")
            object.__setattr__(self, "offsets", tuple(float(o) for o in self.offsets))
        if self.independent_clips and self.same_as is not None:
            raise ValueError("ViewSpec.independent_clips cannot be combined with same_as")
        if self.gradient and (self.next_offset is None or self.aug == "test"):
            raise ValueError("ViewSpec.gradient needs next_offset and a training view ('weak' or 'strong')")


def _extent(view: ViewSpec, length: int, stride: int) -> int:
    """Frames spanned around the shared centre by a view's clips (its offsets included)."""
    span = (length - 1) * stride + 1
    if not view.offsets:
        return span
    return span + 2 * int(np.ceil(max(abs(o) for o in view.offsets)))


def _strides(view: ViewSpec, stride: int) -> list[int]:
    base = view.stride if view.stride is not None else max(1, stride * view.stride_factor // view.stride_divisor)
    return [base * s for s in view.scales] if view.scales else [base]


class VideoDataset(Dataset):
    """Decode, sample and augment named views of the videos in ``index``.

    Args:
        root: dataset root; record paths are relative to it.
        index: the videos and their labels.
        views: view name -> :class:`ViewSpec`.
        num_frames, stride: default clip length and stride of every view.
        augment: crop size and augmentation knobs.
        short_side: frames are converted straight to this short side while decoding
            (default ``crop_size * 8 / 7``, e.g. 128 for 112).
        train: random clip centres (train) or uniformly spaced ones (evaluation).
        labeled: ``False`` hides the label: ``label`` is -1 and the truth goes to ``hidden_label``.
        decoder: ``"pyav"`` (sparse decoding), ``"pyav-full"`` or ``"torchcodec"``.
        max_retries: broken videos skipped (replaced by random others) before giving up.
        short_policy: what a clip does in a video shorter than its span (see :mod:`sampling`).
        skip_broken: never substitute: a broken video gives a marker sample
            (``{"index", "skipped", "reason"}``) that :func:`collate_skipping` leaves out of the
            batch and lists in ``batch["skipped"]``. Evaluation uses it (a substituted video would
            be scored twice and the broken one never); training replaces broken videos.
        gop_aware_shift: training only, off (0) by default: move each sample's frames (every
            view together) by up to this many frames to where they are cheapest to decode
            (needed frames on reference frames, which are decoded anyway, and a shorter run
            from the keyframe; see :func:`ssvar.data.sampling.gop_aware_shift`). Changes which
            frames are sampled (slightly biased towards such positions), never what a frame
            decodes to. Reads each video's frame types once per worker (packets only, H.264;
            other codecs count every frame as a reference). Decoders ``"pyav"``/``"pyav-full"``.
    """

    def __init__(
        self,
        root: str,
        index: VideoIndex,
        views: Mapping[str, ViewSpec],
        *,
        num_frames: int = 8,
        stride: int = 4,
        augment: AugmentConfig = AugmentConfig(),
        short_side: int | None = None,
        train: bool = True,
        labeled: bool = True,
        decoder: str = "pyav",
        max_retries: int = 10,
        short_policy: ShortPolicy = "shrink_stride",
        skip_broken: bool = False,
        gop_aware_shift: int = 0,
    ):
        if not views:
            raise ValueError("a dataset needs at least one view")
        for name, v in views.items():
            if v.same_as is not None and v.same_as not in views:
                raise ValueError(f"view {name!r} has same_as={v.same_as!r}, which is not a view ({list(views)})")
            if v.same_as is not None and views[v.same_as].independent_clips:
                raise ValueError(f"view {name!r} is same_as {v.same_as!r}, whose clips are augmented independently")
        if gop_aware_shift < 0:
            raise ValueError(f"gop_aware_shift must be >= 0, got {gop_aware_shift}")
        if gop_aware_shift and decoder not in ("pyav", "pyav-full"):
            raise ValueError(f"gop_aware_shift needs the decoder 'pyav' or 'pyav-full', got {decoder!r}")
        if len(index) == 0:
            raise ValueError(f"empty video index for dataset at {root}")
        self.root = root
        self.index = index
        # What workers read per sample, as numpy arrays: reading Python records from a forked
        # worker touches their reference counts and copies them into every worker, page by page
        # (at Kinetics scale ~150 MB per worker per epoch); arrays are never copied.
        self._paths = PathArray([r.path for r in index.records])
        self._labels = np.fromiter((r.label for r in index.records), dtype=np.int64, count=len(index))
        self.views = dict(views)
        self.num_frames = num_frames
        self.stride = stride
        self.augment = augment
        self.short_side = resolved_short_side(short_side, augment.crop_size)
        self.train = train
        self.labeled = labeled
        self.decoder_name = decoder
        self._decoder: Decoder | None = None
        self._bad: set[int] = set()  # indices found unreadable (per worker process)
        self.max_retries = max_retries
        self.short_policy = short_policy
        self.skip_broken = skip_broken
        self.gop_aware_shift = gop_aware_shift
        self._refs: dict[str, ReferenceMap] = {}  # per worker: frame types of videos seen
        self._weak = weak_transform(augment)
        self._strong = strong_transform(augment)

    def __len__(self) -> int:
        return len(self._labels)

    @property
    def decoder(self) -> Decoder:
        if self._decoder is None:  # built lazily, inside each worker
            self._decoder = decoder_from_name(self.decoder_name)
        return self._decoder

    def path(self, i: int) -> str:
        p = self._paths[i]
        return p if os.path.isabs(p) else os.path.join(self.root, p)

    # -- frame plan ----------------------------------------------------------------------
    def _plan(self, info: VideoInfo) -> dict[str, list[np.ndarray]]:
        """Frame indices per view: a list of clips (clips x scales), each an index array."""
        n = info.num_frames
        lengths = {k: v.num_frames or self.num_frames for k, v in self.views.items()}
        spans = [
            _extent(v, lengths[k], s)
            for k, v in self.views.items()
            if v.window == "shared" and not v.fit_to_centre
            for s in _strides(v, self.stride)
        ]
        plan: dict[str, list[np.ndarray]] = {}
        if self.train:
            centre = random_centre(n, max(spans, default=1), _TorchRNG())
        for k, v in self.views.items():
            strides = _strides(v, self.stride)
            span = max((lengths[k] - 1) * s + 1 for s in strides)
            if self.train and v.clips == 1:
                centres = [random_centre(n, span, _TorchRNG()) if v.window == "own" else centre]
            else:
                centres = uniform_centres(n, span, v.clips)
            if v.offsets:  # sub-clips around each centre, all from this one decode
                centres = [c + o for c in centres for o in v.offsets]
            plan[k] = [clip_indices(n, lengths[k], s, c, self.short_policy) for c in centres for s in strides]
            if v.temporal_warp is not None:  # re-timed before decoding: only the anchors are decoded
                plan[k] = [c[v.temporal_warp.indices(len(c))] for c in plan[k]]
            if v.next_offset:  # frames t and t + offset, decoded in the same pass
                plan[k] = [np.concatenate([c, np.minimum(c + v.next_offset, n - 1)]) for c in plan[k]]
        return plan

    # -- sample --------------------------------------------------------------------------
    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        """Sample ``key``: an index, or ``(index, seed)`` from ssvar's training samplers: the
        sample's random draws (clip position, crop, augmentation, replacement of a broken video)
        then come from its own seed, the same in any worker and after a resume."""
        if isinstance(key, tuple):
            i, seed = key
            with torch.random.fork_rng(devices=[]):
                torch.default_generator.manual_seed(int(seed))
                return self._sample(int(i))
        return self._sample(key)

    def _sample(self, i: int) -> dict:
        if self.skip_broken:
            try:
                return self._load(i)
            except VideoDecodeError as e:
                log.warning("leaving out unreadable video (not substituted): %s", e)
                return {"index": i, "skipped": e.path, "reason": e.reason}
        failures = 0
        tried: list[str] = []
        while True:
            try:
                sample = self._load(i)
                break
            except VideoDecodeError as e:
                failures += 1
                tried.append(e.path)
                if i not in self._bad:  # warn once per file and worker
                    log.warning("skipping unreadable video: %s", e)
                self._bad.add(i)
                if failures > self.max_retries or len(self._bad) >= len(self):
                    raise RuntimeError(
                        f"{failures} unreadable videos in a row, giving up: {tried}. "
                        "Run `ssvar check-videos ROOT` to list broken files."
                    ) from e
                i = self._replacement()
        sample["decode_failures"] = failures
        return sample

    def _replacement(self) -> int:
        """A random index not yet known to be broken (in this worker)."""
        good = len(self) - len(self._bad)
        k = int(torch.randint(good, (1,)).item())
        for j in range(len(self)):  # the k-th index that is not known bad
            if j not in self._bad:
                if k == 0:
                    return j
                k -= 1
        raise AssertionError("unreachable")

    def _load(self, i: int) -> dict:
        label = int(self._labels[i])
        plans: dict[str, list[np.ndarray]] = {}

        def plan(info: VideoInfo):
            plans.update(self._plan(info))
            if self.train and self.gop_aware_shift:
                self._shift_to_cheap_frames(path, plans, info)
            return np.concatenate([c for clips in plans.values() for c in clips])

        path = self.path(i)
        if self.train and self.gop_aware_shift:  # the decoder reads the frame types (once per video)
            frames, kept, _ = self.decoder.decode(path, plan, short_side=self.short_side, references=self._refs)
        else:
            frames, kept, _ = self.decoder.decode(path, plan, short_side=self.short_side)
        pos = {f: j for j, f in enumerate(kept)}
        clips = {k: [frames[[pos[int(f)] for f in c]] for c in v] for k, v in plans.items()}
        out = self._augment(clips)
        out["index"] = i
        if self.labeled:
            out["label"] = label
        else:
            out["label"] = -1
            out["hidden_label"] = label
        return out

    def _shift_to_cheap_frames(self, path: str, plans: dict[str, list[np.ndarray]], info: VideoInfo) -> None:
        refs = self._refs[path]  # filled by the decoder from the open file before the plan
        wanted = np.concatenate([c for clips in plans.values() for c in clips])
        margin = getattr(self.decoder, "seek_margin", 8)
        s = gop_aware_shift(wanted, info.num_frames, refs.is_ref, refs.keyframes, self.gop_aware_shift, margin)
        if s:
            for k in plans:
                plans[k] = [c + s for c in plans[k]]

    def _augment(self, clips: dict[str, list[torch.Tensor]]) -> dict:
        out: dict[str, torch.Tensor] = {}
        crop = self.augment.crop_size
        # Evaluation views: deterministic crops, no sharing needed.
        for k, v in self.views.items():
            if v.aug == "test":
                views = [c for clip in clips[k] for c in test_crops(as_video(clip), crop, v.crops)]
                out[k] = _stack(views)
        # Train views: one geometric draw per crop group (a view and the views that are same_as it).
        groups: dict[str, list[str]] = {}
        for k, v in self.views.items():
            if v.aug != "test":
                groups.setdefault(self._root_of(k), []).append(k)
        for members in groups.values():
            parts = [as_video(c) for k in members for c in clips[k]]
            sizes = [p.shape[0] for p in parts]
            if self.views[members[0]].independent_clips:  # one draw per clip (never shared)
                cropped = [self._weak(p) for p in parts]
            else:
                cropped = torch.split(self._weak(torch.cat(parts)), sizes)
            j = 0
            for k in members:
                n = len(clips[k])
                views = list(cropped[j : j + n])
                j += n
                if self.views[k].gradient:  # [2T, C, H, W] frames t | t + k -> gradient [T, C, H, W]
                    views = [tv_tensors.Video(split_rgb_tg(x, time_dim=0)[1]) for x in views]
                if self.views[k].aug == "strong":
                    views = [self._strong(x) for x in views]
                out[k] = _stack(views)
        return out

    def _root_of(self, k: str) -> str:
        seen = {k}
        while self.views[k].same_as is not None:
            k = self.views[k].same_as
            if k in seen:
                raise ValueError(f"views form a same_as cycle through {k!r}")
            seen.add(k)
        return k


class PathArray:
    """Strings stored as one UTF-8 byte array plus offsets: ``paths[i]`` decodes one on demand."""

    def __init__(self, paths: list[str]):
        encoded = [p.encode("utf-8") for p in paths]
        self._offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(b) for b in encoded], out=self._offsets[1:])
        self._bytes = np.frombuffer(b"".join(encoded), dtype=np.uint8).copy()

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __getitem__(self, i: int) -> str:
        a, b = self._offsets[i], self._offsets[i + 1]
        return self._bytes[a:b].tobytes().decode("utf-8")


def _stack(views: list[torch.Tensor]) -> torch.Tensor:
    """``[T, C, H, W]`` clips -> ``[C, T, H, W]`` (one) or ``[V, C, T, H, W]`` (several)."""
    t = [torch.Tensor(v).permute(1, 0, 2, 3).contiguous() for v in views]
    return t[0] if len(t) == 1 else torch.stack(t)


class _TorchRNG:
    """numpy-Generator-like ``uniform`` drawn from torch's RNG, so ``seed_everything(workers=True)``
    makes clip positions reproducible like every other augmentation."""

    @staticmethod
    def uniform(lo: float, hi: float) -> float:
        return lo + (hi - lo) * float(torch.rand(()))


def collate_skipping(samples: list[dict]) -> dict:
    """Collate evaluation samples, leaving out the videos that could not be decoded: they are
    listed by path in ``batch["skipped"]`` (the batch may hold no video at all)."""
    from torch.utils.data import default_collate

    good = [s for s in samples if "skipped" not in s]
    if good:
        batch = default_collate(good)
    else:
        empty = torch.empty(0, dtype=torch.long)
        batch = {"video": torch.empty(0, dtype=torch.uint8), "label": empty, "index": empty.clone()}
    batch["skipped"] = [s["skipped"] for s in samples if "skipped" in s]
    return batch


def with_labels_hidden(ds: VideoDataset) -> VideoDataset:
    """A shallow copy of ``ds`` that returns samples as unlabelled."""
    new = object.__new__(VideoDataset)
    new.__dict__.update(ds.__dict__)
    new.labeled = False
    return new


__all__ = ["ViewSpec", "VideoDataset", "collate_skipping", "with_labels_hidden"]
