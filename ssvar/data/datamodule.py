"""The semi-supervised DataModule and the ready-made ones (folder, UCF101, HMDB51, Kinetics-400).

Training batches are ``{"labeled": {...}, "unlabeled": {...}}`` (a method that declares no
labelled views, e.g. self-supervised pretraining, gets only ``"unlabeled"``). One epoch is one pass over the
unlabelled pool: ``len(unlabeled) // (world_size * batch_size * mu)`` iterations. The tiny
labelled set is resampled to fill the epoch by :class:`ResampledDistributedSampler`, a
``DistributedSampler`` subclass (:mod:`ssvar.data.samplers`), so Lightning keeps it under DDP
instead of replacing it. Methods that need no unlabelled views (Supervised) get the same number
of iterations per epoch, so every method is compared at equal steps.

Validation uses one centre clip and crop; testing ``test_clips`` uniform clips x ``test_crops``
crops per video, ``[V, C, T, H, W]`` per sample.

The views come from the method (``LightningModule.views()``), so the data module never needs to
know which method it feeds.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import lightning as L
import torch
from lightning.pytorch.utilities import CombinedLoader
from torch.utils.data import DataLoader

from ssvar.data import splits as S
from ssvar.data.dataset import VideoDataset, ViewSpec, collate_skipping, resolve_short_side
from ssvar.data.index import SplitError, VideoIndex, VideoRecord, path_key
from ssvar.data.samplers import (  # noqa: F401  (EvalDistributedSampler: re-exported, its historical home)
    EvalDistributedSampler,
    ResampledDistributedSampler,
    ShuffledDistributedSampler,
    _ResumableSampler,
)
from ssvar.data.sampling import ShortPolicy
from ssvar.data.transforms import AugmentConfig


class _TrainLoader(DataLoader):
    """A training DataLoader that tells Lightning it resumes mid-epoch: its position is kept by
    the data module's ``state_dict`` (epoch and batches done) and restored through its sampler."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state_dict: dict) -> None:
        pass


# --------------------------------------------------------------------------- the base module
@dataclass
class Splits:
    """The four index sets a semi-supervised run needs (val may be the test set)."""

    labeled: VideoIndex
    unlabeled: VideoIndex
    val: VideoIndex
    test: VideoIndex

    @property
    def classes(self) -> list[str]:
        return self.labeled.classes


DEFAULT_VIEWS: dict[str, dict[str, ViewSpec]] = {"labeled": {"weak": ViewSpec("weak")}, "unlabeled": {}}


@runtime_checkable
class DeclaresViews(Protocol):
    """A module that says which views its batches hold (every ssvar method); any other
    LightningModule is fed :data:`DEFAULT_VIEWS` (one weak labelled view)."""

    def views(self) -> dict[str, dict[str, ViewSpec]]: ...


class SemiSupervisedDataModule(L.LightningDataModule):
    """Labelled + unlabelled training loaders, single-view validation and multi-view testing.

    Subclasses say where the videos and split lists are by implementing :meth:`build_splits`.

    Args:
        root: dataset root folder; index paths are relative to it.
        batch_size: labelled clips per iteration per device.
        mu: unlabelled clips per labelled clip (unlabelled batch = ``mu * batch_size``).
        num_workers: DataLoader workers per loader.
        num_frames: clip length T.
        stride: frame stride (temporal sampling interval).
        crop_size: side of the square crop.
        short_side: frames are decoded straight to this short side (default ``crop_size * 8 / 7``).
        weak_aug: ``"random_resized_crop"`` or ``"scale_jitter"``.
        area_range: RandomResizedCrop area range.
        jitter_range: short-side range of ``weak_aug="scale_jitter"`` (frames are decoded at
            ``short_side``, which should be at least the upper end).
        hflip: horizontal flip probability.
        randaugment: strong-view op set: ``"torchvision"`` (``v2.RandAugment``, M a bin of 31)
            or ``"mmaction2"`` (MMAction2's ``Imgaug('default')``, LTG's: M a level of 10;
            :class:`ssvar.data.transforms.VideoRandAugment`).
        randaugment_ops, randaugment_magnitude: strong-view RandAugment (N, M).
        randaugment_exclude: RandAugment ops the strong view never uses (e.g. colour ops where
            colour defines the class); names in :data:`ssvar.data.transforms.RANDAUGMENT_OPS`
            or :data:`~ssvar.data.transforms.VIDEO_RANDAUGMENT_OPS` (a name the chosen set
            lacks excludes nothing).
        test_clips, test_crops: test views per video (clips x crops; crops 1 or 3).
        eval_batch_size: batch size of validation and test (default ``batch_size``).
        labeled_in_unlabeled: keep labelled videos in the unlabelled pool (LTG) instead of
            unlabelled = train - labelled (SVFormer, TimeBalance).
        labeled_list_labels: where a published labelled list gives a video another label than
            the official training split (HMDB51's VideoSSL lists: about 65 clips per list, e.g.
            climb vs climb_stairs), ``"train_list"`` (default) corrects it to the split's label;
            ``"list"`` keeps the list's label, as LTG and SVFormer trained (their paper
            configs). Either way a warning gives the count.
        check_files: at setup, fail on the first listed file that does not exist (with its list
            file and line).
        decoder: ``"pyav"`` (sparse decoding), ``"pyav-full"`` (every frame decoded) or ``"torchcodec"``.
        max_retries: unreadable videos skipped per sample before giving up.
        short_policy: clips longer than the video: ``"shrink_stride"``, ``"loop"`` or ``"repeat_last"``.
        gop_aware_shift: training clips may move by up to this many frames onto frames that are
            cheaper to decode (0: off; see :class:`~ssvar.data.dataset.VideoDataset`).
        seed: seed of the labelled resampler and of generated splits.
        persistent_workers: keep workers between epochs.
        allow_duplicates: accept a video listed twice in one split list (a warning instead of
            the default error naming both list lines).
        allow_empty_classes: accept classes without a labelled video (a warning instead of the
            default error). A labelled video also in the test list is always an error.
        val_fraction: carve a validation set of about this fraction of the training videos that
            are not labelled (per class, group-disjoint from the labelled set and from the
            unlabelled pool, which loses them). ``None`` keeps the data module's own validation
            set, which for most of them is the test set: a warning says so at ``fit``, because
            settings must be chosen on a validation split, never on test accuracy.
        validation_list: a list file of validation videos instead (``path label`` lines, paths relative
            to ``root``); none may be labelled or in the test set; they leave the unlabelled pool.
        val_seed: seed of the ``val_fraction`` draw.
    """

    def __init__(
        self,
        root: str,
        batch_size: int = 8,
        mu: int = 1,
        num_workers: int = 2,
        num_frames: int = 8,
        stride: int = 4,
        crop_size: int = 112,
        short_side: int | None = None,
        weak_aug: Literal["random_resized_crop", "scale_jitter"] = "random_resized_crop",
        area_range: tuple[float, float] = (0.25, 1.0),
        jitter_range: tuple[int, int] = (128, 160),
        hflip: float = 0.5,
        randaugment_ops: int = 2,
        randaugment_magnitude: int = 9,
        randaugment_exclude: tuple[str, ...] = (),
        randaugment: Literal["torchvision", "mmaction2"] = "torchvision",
        test_clips: int = 5,
        test_crops: int = 3,
        eval_batch_size: int | None = None,
        labeled_in_unlabeled: bool = False,
        labeled_list_labels: Literal["train_list", "list"] = "train_list",
        check_files: bool = True,
        decoder: Literal["pyav", "pyav-full", "torchcodec"] = "pyav",
        max_retries: int = 10,
        short_policy: ShortPolicy = "shrink_stride",
        gop_aware_shift: int = 0,
        seed: int = 0,
        persistent_workers: bool = True,
        allow_duplicates: bool = False,
        allow_empty_classes: bool = False,
        val_fraction: float | None = None,
        validation_list: str | None = None,
        val_seed: int = 0,
    ):
        super().__init__()
        if val_fraction is not None and validation_list is not None:
            raise ValueError("give at most one of val_fraction and validation_list")
        if val_fraction is not None and not 0 < val_fraction < 1:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
        self.val_fraction, self.validation_list, self.val_seed = val_fraction, validation_list, val_seed
        self._warned_val_is_test = False
        for name, value in (
            ("batch_size", batch_size),
            ("mu", mu),
            ("num_frames", num_frames),
            ("stride", stride),
            ("crop_size", crop_size),
            ("test_clips", test_clips),
        ):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if test_crops not in (1, 3):
            raise ValueError(f"test_crops must be 1 or 3, got {test_crops}")
        if weak_aug == "scale_jitter" and not crop_size <= jitter_range[0] <= jitter_range[1]:
            raise ValueError(
                f"jitter_range must satisfy crop_size <= low <= high, got {tuple(jitter_range)} with crop_size "
                f"{crop_size}"
            )
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        for name, pair in (("area_range", area_range), ("jitter_range", jitter_range)):
            if len(pair) != 2:
                raise ValueError(f"{name} must be (low, high), got {tuple(pair)}")
        self.root = os.path.expanduser(root) if root else root
        self.batch_size = batch_size
        self.mu = mu
        self.num_workers = num_workers
        self.num_frames = num_frames
        self.stride = stride
        self.short_side = short_side
        self.augment = AugmentConfig(
            crop_size=crop_size,
            weak=weak_aug,
            area_range=(float(area_range[0]), float(area_range[1])),
            jitter_range=(int(jitter_range[0]), int(jitter_range[1])),
            hflip=hflip,
            randaugment_ops=randaugment_ops,
            randaugment_magnitude=randaugment_magnitude,
            randaugment_exclude=tuple(randaugment_exclude),
            randaugment=randaugment,
        )
        self.test_clips = test_clips
        self.test_crops = test_crops
        self.eval_batch_size = eval_batch_size or batch_size
        self.labeled_in_unlabeled = labeled_in_unlabeled
        if labeled_list_labels not in ("train_list", "list"):
            raise ValueError(f"labeled_list_labels must be 'train_list' or 'list', got {labeled_list_labels!r}")
        self.labeled_list_labels = labeled_list_labels
        self.check_files = check_files
        self.decoder = decoder
        self.max_retries = max_retries
        self.short_policy = short_policy
        self.gop_aware_shift = gop_aware_shift
        self.seed = seed
        self.persistent_workers = persistent_workers
        self.allow_duplicates = allow_duplicates
        self.allow_empty_classes = allow_empty_classes
        self._splits: Splits | None = None
        # Where a resumed fit continues: (epoch, batches of it already trained), from a checkpoint.
        self._resume_position: tuple[int, int] | None = None

    # -- what subclasses provide ----------------------------------------------------------
    def build_splits(self) -> Splits:
        """Return labelled / unlabelled / val / test indexes (paths relative to ``root``)."""
        raise NotImplementedError

    def class_names(self) -> list[str]:
        """Class names without building the whole split (override when it is cheaper)."""
        return self.splits.classes

    # -- cached splits --------------------------------------------------------------------
    @property
    def splits(self) -> Splits:
        if self._splits is None:
            sp = self.build_splits()
            if len(sp.labeled) == 0:
                raise SplitError("the labelled set is empty")
            unlabeled_keys = self._check_splits(sp)
            if not self.labeled_in_unlabeled:
                drop = {path_key(r.path) for r in sp.labeled}
                kept = [r for r, k in zip(sp.unlabeled.records, unlabeled_keys) if k not in drop]
                sp.unlabeled = VideoIndex(kept, list(sp.unlabeled.classes))
            if self.val_fraction is not None or self.validation_list is not None:
                if self.validation_list is not None:
                    val = S.read_list(self.validation_list, classes=sp.unlabeled.classes or sp.labeled.classes)
                    S.check_validation_split(val, sp.labeled, sp.test, where=self.validation_list)
                elif self.val_fraction is not None:
                    val = S.make_validation_split(sp.unlabeled, sp.labeled, self.val_fraction, seed=self.val_seed)
                sp.val = val
                sp.unlabeled = sp.unlabeled.without(val)
            self._splits = sp
        return self._splits

    def _check_splits(self, sp: Splits) -> list[str]:
        """The checks of ``ssvar splits verify``, run whenever the splits are built (``setup``):
        a labelled video in the test list is always an error; repeated entries and classes
        without a labelled video are errors unless ``allow_duplicates`` / ``allow_empty_classes``;
        an unlabelled video in the test list is a warning (transductive setups do it on purpose)."""
        errors: list[str] = []
        keys = {}  # every list's path keys, computed once (600,000 entries at Kinetics scale)
        for name, ix in (
            ("labelled", sp.labeled),
            ("unlabelled", sp.unlabeled),
            ("test", sp.test),
            ("validation", sp.val),
        ):
            if ix is sp.test and name == "validation":
                continue
            keys[name] = [path_key(r.path) for r in ix]
            dups = _duplicates(ix, keys[name])
            if dups and not self.allow_duplicates:
                errors.append(
                    f"{len(dups)} repeated {name} video(s) (allow_duplicates=True to accept): {S._examples(dups)}"
                )
            elif dups:
                warnings.warn(f"{len(dups)} repeated {name} video(s): {S._examples(dups)}", stacklevel=3)
        counts = [0] * len(sp.labeled.classes)
        for r in sp.labeled:
            if 0 <= r.label < len(counts):
                counts[r.label] += 1
        empty = [f"{i} {c}" for i, (c, n) in enumerate(zip(sp.labeled.classes, counts)) if n == 0]
        if empty and not self.allow_empty_classes:
            errors.append(
                f"{len(empty)} class(es) with no labelled video (allow_empty_classes=True to accept): "
                f"{S._examples(empty)}"
            )
        elif empty:
            warnings.warn(f"{len(empty)} class(es) with no labelled video: {S._examples(empty)}", stacklevel=3)
        test_keys = set(keys["test"])
        for name, ix in (("labelled", sp.labeled), ("unlabelled", sp.unlabeled)):
            both = [_where(r) for r, k in zip(ix, keys[name]) if k in test_keys]
            if both and name == "labelled":
                errors.append(f"{len(both)} labelled video(s) also in the test list: {S._examples(both)}")
            elif both:
                warnings.warn(
                    f"{len(both)} unlabelled video(s) also in the test list: {S._examples(both)}", stacklevel=3
                )
        if errors:
            raise SplitError("; ".join(errors))
        return keys["unlabelled"]

    @property
    def classes(self) -> list[str]:
        return self.class_names()

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def val_is_test(self) -> bool:
        """True when validation runs on the test videos (settings chosen on it would be chosen on test)."""
        sp = self.splits
        return sp.val is sp.test or {path_key(r.path) for r in sp.val} == {path_key(r.path) for r in sp.test}

    def setup(self, stage: str) -> None:
        sp = self.splits
        validating = self.trainer is None or self.trainer.limit_val_batches != 0
        if stage == "fit" and validating and self.val_is_test and not self._warned_val_is_test:
            self._warned_val_is_test = True
            warnings.warn(
                f"{type(self).__name__} validates on the test set: choose settings on a validation split "
                "instead (val_fraction=0.1 or validation_list=...), and test a final configuration once",
                UserWarning,
                stacklevel=2,
            )
        if self.check_files:
            sets = {
                "fit": (sp.labeled, sp.unlabeled, sp.val),
                "validate": (sp.val,),
                "test": (sp.test,),
                "predict": (sp.test,),
            }
            for ix in sets.get(stage, ()):
                ix.with_root_check(self.root)

    # -- datasets -------------------------------------------------------------------------
    def _method_views(self) -> dict[str, dict[str, ViewSpec]]:
        module = self.trainer.lightning_module if self.trainer is not None else None
        return module.views() if isinstance(module, DeclaresViews) else DEFAULT_VIEWS

    def dataset(
        self,
        index: VideoIndex,
        views: dict[str, ViewSpec],
        *,
        train: bool,
        labeled: bool = True,
        skip_broken: bool = False,
    ) -> VideoDataset:
        return VideoDataset(
            self.root,
            index,
            views,
            num_frames=self.num_frames,
            stride=self.stride,
            augment=self.augment,
            short_side=self.short_side,
            train=train,
            labeled=labeled,
            decoder=self.decoder,
            max_retries=self.max_retries,
            short_policy=self.short_policy,
            skip_broken=skip_broken,
            gop_aware_shift=self.gop_aware_shift,
        )

    def _world(self) -> tuple[int, int]:
        if self.trainer is None:
            return 1, 0
        return self.trainer.world_size, self.trainer.global_rank

    def steps_per_epoch(self) -> int:
        world, _ = self._world()
        return max(1, len(self.splits.unlabeled) // (world * self.batch_size * self.mu))

    def _loader(
        self,
        ds,
        batch_size: int,
        sampler,
        drop_last: bool,
        generator: torch.Generator | None = None,
        collate_fn=None,
        loader_cls: type[DataLoader] = DataLoader,
    ) -> DataLoader:
        return loader_cls(
            ds,
            batch_size=batch_size,
            sampler=sampler,
            collate_fn=collate_fn,
            num_workers=self.num_workers,
            drop_last=drop_last,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=self.persistent_workers and self.num_workers > 0,
            generator=generator,
        )

    def train_dataloader(self):
        views = self._method_views()
        world, rank = self._world()
        sp = self.splits
        steps = self.steps_per_epoch()
        # A resumed fit continues its epoch where the checkpoint left it. The epoch is set here,
        # not only by Lightning's `set_epoch`, because loader workers draw their first indices
        # when the iterator is built, before Lightning sets the epoch.
        epoch, done = self._resume_position or (getattr(self.trainer, "current_epoch", 0), 0)
        self._resume_position = None
        samplers: dict[str, _ResumableSampler] = {}
        datasets = {}
        if views.get("labeled"):  # self-supervised pretraining needs no labelled loader
            datasets["labeled"] = lab = self.dataset(sp.labeled, views["labeled"], train=True)
            samplers["labeled"] = ResampledDistributedSampler(lab, steps * self.batch_size, world, rank, self.seed)
        if not samplers and not views.get("unlabeled"):
            raise ValueError("the method declares neither labelled nor unlabelled training views")
        if views.get("unlabeled"):
            if len(sp.unlabeled) < world * self.batch_size * self.mu:
                raise SplitError(
                    f"the unlabelled pool has {len(sp.unlabeled)} videos ({len(sp.labeled)} of the training videos are "
                    f"labelled), fewer than one batch ({world} x {self.batch_size * self.mu}); "
                    "label fewer videos per class"
                )
            datasets["unlabeled"] = unl = self.dataset(sp.unlabeled, views["unlabeled"], train=True, labeled=False)
            samplers["unlabeled"] = ShuffledDistributedSampler(unl, world, rank, self.seed)
        loaders = {}
        for part, sampler in samplers.items():
            bs = self.batch_size * (self.mu if part == "unlabeled" else 1)
            sampler.resume_at(epoch, done * bs)
            # Own generator: building the iterator never draws from the global RNG (the model's).
            gen = torch.Generator().manual_seed(self.seed)
            loaders[part] = self._loader(datasets[part], bs, sampler, True, gen, loader_cls=_TrainLoader)
        return CombinedLoader(loaders, mode="min_size")

    # -- resume: the training samplers' position --------------------------------------------
    def state_dict(self) -> dict:
        """The training position (epoch, batches of it done), saved in every fit checkpoint."""
        t = self.trainer
        if t is None or t.state.fn != "fit" or not t.training and not t.validating:
            return {}
        done = int(t.fit_loop.epoch_loop.batch_progress.current.processed)  # type: ignore[attr-defined]
        epoch = int(t.current_epoch)
        if done >= t.num_training_batches:  # the epoch is complete: the next one starts afresh
            epoch, done = epoch + 1, 0
        return {"train_position": {"epoch": epoch, "batches": done}}

    def load_state_dict(self, state_dict: dict) -> None:
        pos = state_dict.get("train_position")
        fitting = self.trainer is not None and self.trainer.state.fn == "fit"
        if pos is not None and fitting:  # validate/test from a checkpoint do not move training
            self._resume_position = (int(pos["epoch"]), int(pos["batches"]))

    def _eval_loader(self, index: VideoIndex, clips: int, crops: int) -> DataLoader:
        world, rank = self._world()
        # Evaluation never substitutes a broken video: it is left out, counted and named.
        ds = self.dataset(index, {"video": ViewSpec("test", clips=clips, crops=crops)}, train=False, skip_broken=True)
        # Its own generator: evaluation never draws from the global RNG, so validating (or not)
        # leaves the training stream untouched and resuming stays exact.
        gen = torch.Generator().manual_seed(self.seed)
        return self._loader(
            ds, self.eval_batch_size, EvalDistributedSampler(ds, world, rank), False, gen, collate_skipping
        )

    def val_dataloader(self):
        return self._eval_loader(self.splits.val, 1, 1)

    # -- the labelled set: a list file, or a draw per class or percent -------------------------
    def set_labeled_set(
        self, labeled_list: str | None, labeled_per_class: int | None, labeled_percent: float | None
    ) -> None:
        """Store how the labelled set is chosen, checked once here at construction: exactly one
        of a labelled list file, videos per class or a percentage (drawn with ``seed``)."""
        given = sum(x is not None for x in (labeled_list, labeled_per_class, labeled_percent))
        if given != 1:
            raise ValueError(
                f"{type(self).__name__}: give exactly one of labeled_list, labeled_per_class and labeled_percent "
                f"(got {given})"
            )
        self.labeled_list = labeled_list
        self.labeled_per_class = labeled_per_class
        self.labeled_percent = labeled_percent

    def labeled_set(self, train: VideoIndex, test: VideoIndex | None = None) -> VideoIndex:
        """The labelled videos of ``train`` as :meth:`set_labeled_set` chose them (a drawn set is
        group-disjoint from ``test`` where groups exist)."""
        return _labeled_from(
            train, self.labeled_list, self.labeled_per_class, self.labeled_percent, self.seed, test,
            list_labels=self.labeled_list_labels,
        )

    # -- what a model needs to know of the clips ----------------------------------------------
    def clip_settings(self) -> dict[str, int]:
        """How clips are cut, as a model saves them to predict new videos the same way:
        ``num_frames``, ``stride``, ``crop_size``, ``short_side`` (the size frames are decoded to:
        the dataset's rule, :func:`~ssvar.data.dataset.resolve_short_side`), ``test_clips`` and
        ``test_crops``."""
        crop = int(self.augment.crop_size)
        return {
            "num_frames": int(self.num_frames),
            "stride": int(self.stride),
            "crop_size": crop,
            "short_side": int(resolve_short_side(self.short_side, crop)),
            "test_clips": int(self.test_clips),
            "test_crops": int(self.test_crops),
        }

    def view_name(self, stage: str) -> str:
        """The metric suffix of ``stage``'s views: ``"1view"`` for ``"val"`` (one centre clip and
        crop), ``"{test_clips}x{test_crops}"`` for ``"test"`` and ``"predict"``."""
        if stage == "val":
            return "1view"
        if stage in ("test", "predict"):
            return f"{self.test_clips}x{self.test_crops}"
        raise ValueError(f"stage must be 'val', 'test' or 'predict', got {stage!r}")

    def test_dataloader(self):
        return self._eval_loader(self.splits.test, self.test_clips, self.test_crops)

    def predict_dataloader(self):
        return self._eval_loader(self.splits.test, self.test_clips, self.test_crops)


# --------------------------------------------------------------------------- helpers
def _labeled_from(
    train: VideoIndex,
    labeled_list: str | None,
    labeled_per_class: int | None,
    labeled_percent: float | None,
    seed: int,
    test: VideoIndex | None = None,
    list_labels: str = "train_list",
) -> VideoIndex:
    """The labelled subset of ``train``: from a list file (matched to the train index by path,
    extension ignored) or drawn class-balanced. ``list_labels``: which label wins where the list
    and the training split disagree (``"train_list"`` or ``"list"``)."""
    if labeled_list is None:
        return S.make_labeled_split(
            train,
            per_class=labeled_per_class,
            percent=labeled_percent,
            seed=seed,
            group_disjoint_test=test,
            too_few="error",
        )
    listed = S.read_list(labeled_list, classes=train.classes)
    by_key = {path_key(r.path): r for r in train.records}
    records: list[VideoRecord] = []
    disagree: list[str] = []
    for r in listed.records:
        match = by_key.get(path_key(r.path))
        if match is None:
            raise SplitError(f"{r.origin}: {r.path} is not in the training list")
        if r.label != match.label:
            disagree.append(f"{r.origin} ({r.path}: {r.label} vs {match.label})")
        label = r.label if list_labels == "list" else match.label
        records.append(VideoRecord(match.path, label, match.group, r.origin))
    if disagree:
        # Published lists carry a few labels other than the official split's (HMDB51's VideoSSL
        # lists: climb/climb_stairs, kick/kick_ball, sword/sword_exercise).
        kept = "the list's label (labeled_list_labels='list')" if list_labels == "list" else "the training list's label"
        warnings.warn(
            f"{len(disagree)} labelled video(s) in {labeled_list} have a label other than the training "
            f"list's; using {kept}. First: {disagree[:3]}",
            stacklevel=2,
        )
    return VideoIndex(records, list(train.classes))


class FolderDataModule(SemiSupervisedDataModule):
    """Videos in a folder-per-class tree ``root/<class>/<video>``.

    The test set is a list file (``test_list``) or a ``test_fraction`` held out group-disjointly
    (``groups_csv`` maps paths to source groups, so clips of one source never straddle train and
    test). The labelled set is a list file or ``labeled_per_class`` / ``labeled_percent`` drawn
    with ``seed`` from the remaining videos; every non-test video is in the unlabelled pool.

    Args:
        root: the tree's root.
        labeled_list, labeled_per_class, labeled_percent: exactly one says the labelled set.
        test_list: list file of test videos (``path label`` lines, paths relative to ``root``).
        test_fraction: otherwise, the held-out fraction.
        groups_csv: CSV with ``path`` and ``group``/``source_group`` columns.
        split_seed: seed of the held-out test split (the labelled draw uses ``seed``).
        **kwargs: :class:`SemiSupervisedDataModule` arguments.
    """

    def __init__(
        self,
        root: str,
        labeled_list: str | None = None,
        labeled_per_class: int | None = None,
        labeled_percent: float | None = None,
        test_list: str | None = None,
        test_fraction: float = 0.3,
        groups_csv: str | None = None,
        split_seed: int = 0,
        **kwargs,
    ):
        super().__init__(root=root, **kwargs)
        self.set_labeled_set(labeled_list, labeled_per_class, labeled_percent)
        self.test_list = test_list
        self.test_fraction = test_fraction
        self.groups_csv = groups_csv
        self.split_seed = split_seed
        self._tree: VideoIndex | None = None

    def _index(self) -> VideoIndex:
        if self._tree is None:
            self._tree = S.read_folder_tree(self.root, groups_csv=self.groups_csv)
            if len(self._tree) == 0:
                raise SplitError(f"no videos found under {self.root}")
        return self._tree

    def class_names(self) -> list[str]:
        return self._index().classes

    def build_splits(self) -> Splits:
        tree = self._index()
        if self.test_list:
            test = S.read_list(self.test_list, classes=tree.classes)
            train = tree.without(test)
        else:
            train, test = S.make_group_split(tree, self.test_fraction, seed=self.split_seed)
        labeled = self.labeled_set(train, test)
        return Splits(labeled=labeled, unlabeled=train, val=test, test=test)


class UCF101DataModule(SemiSupervisedDataModule):
    """UCF101 with an official split (1-3) and a labelled list or rate.

    Args:
        root: folder holding ``<Class>/v_<Class>_gXX_cYY.avi``.
        splits_dir: folder with ``classInd.txt``, ``trainlist0N.txt``, ``testlist0N.txt``.
        split: official split id (1, 2, 3).
        labeled_list: a published labelled list (any format ``ssvar.data.lists.read_list`` reads).
        labeled_percent, labeled_per_class: otherwise, draw the labelled set with ``seed``.
        **kwargs: :class:`SemiSupervisedDataModule` arguments. Validation uses the test list.
    """

    def __init__(
        self,
        root: str,
        splits_dir: str,
        split: int = 1,
        labeled_list: str | None = None,
        labeled_percent: float | None = None,
        labeled_per_class: int | None = None,
        **kwargs,
    ):
        super().__init__(root=root, **kwargs)
        if split not in (1, 2, 3):
            raise ValueError(f"UCF101 split must be 1, 2 or 3, got {split}")
        self.splits_dir, self.split = splits_dir, split
        self.set_labeled_set(labeled_list, labeled_per_class, labeled_percent)

    def class_names(self) -> list[str]:
        return S.read_ucf101_classind(os.path.join(self.splits_dir, "classInd.txt"))

    def build_splits(self) -> Splits:
        ci = os.path.join(self.splits_dir, "classInd.txt")
        train = S.read_ucf101_list(os.path.join(self.splits_dir, f"trainlist0{self.split}.txt"), ci)
        test = S.read_ucf101_list(os.path.join(self.splits_dir, f"testlist0{self.split}.txt"), ci)
        labeled = self.labeled_set(train)
        return Splits(labeled=labeled, unlabeled=train, val=test, test=test)


class HMDB51DataModule(SemiSupervisedDataModule):
    """HMDB51 with an official split from the per-class ``*_test_splitN.txt`` files.

    The training pool follows the VideoSSL protocol used by the published semi-supervised lists:
    official train + the "unused" videos (``include_unused=True``).

    Args:
        root: folder holding ``<class>/<video>.avi``.
        splits_dir: folder of ``<class>_test_split<N>.txt`` files.
        split: official split id (1, 2, 3).
        include_unused: add the split's unused videos (flag 0) to the training pool.
        labeled_list, labeled_percent, labeled_per_class: the labelled set.
        **kwargs: :class:`SemiSupervisedDataModule` arguments.
    """

    def __init__(
        self,
        root: str,
        splits_dir: str,
        split: int = 1,
        include_unused: bool = True,
        labeled_list: str | None = None,
        labeled_percent: float | None = None,
        labeled_per_class: int | None = None,
        **kwargs,
    ):
        super().__init__(root=root, **kwargs)
        if split not in (1, 2, 3):
            raise ValueError(f"HMDB51 split must be 1, 2 or 3, got {split}")
        self.splits_dir, self.split, self.include_unused = splits_dir, split, include_unused
        self.set_labeled_set(labeled_list, labeled_per_class, labeled_percent)

    def build_splits(self) -> Splits:
        train, test, unused = S.read_hmdb51_split(self.splits_dir, self.split)
        if self.include_unused:
            train = VideoIndex(train.records + unused.records, list(train.classes))
        labeled = self.labeled_set(train)
        return Splits(labeled=labeled, unlabeled=train, val=test, test=test)


class Kinetics400DataModule(SemiSupervisedDataModule):
    """Kinetics-400 from list files (``path label`` lists or the official CSV annotations).

    Args:
        root: folder holding ``<class>/<video>.mp4``.
        train_list: training list (``.txt`` list or official ``.csv``).
        val_list: validation list, used for validation and testing.
        classes_file: optional class-name file (one per line, label order); default: inferred.
        labeled_list, labeled_percent, labeled_per_class: the labelled set.
        **kwargs: :class:`SemiSupervisedDataModule` arguments.
    """

    def __init__(
        self,
        root: str,
        train_list: str,
        val_list: str,
        classes_file: str | None = None,
        labeled_list: str | None = None,
        labeled_percent: float | None = None,
        labeled_per_class: int | None = None,
        **kwargs,
    ):
        super().__init__(root=root, **kwargs)
        self.train_list, self.val_list, self.classes_file = train_list, val_list, classes_file
        self.set_labeled_set(labeled_list, labeled_per_class, labeled_percent)

    def _read(self, path: str, classes):
        if path.endswith(".csv") and _has_csv_header(path):
            return S.read_kinetics_csv(path, classes)
        return S.read_list(path, classes=classes, label_base=0)

    def build_splits(self) -> Splits:
        classes = S.read_class_names(self.classes_file) if self.classes_file else None
        train = self._read(self.train_list, classes)
        val = self._read(self.val_list, train.classes)
        labeled = self.labeled_set(train)
        return Splits(labeled=labeled, unlabeled=train, val=val, test=val)


def _where(r: VideoRecord) -> str:
    return r.origin or r.path


def _duplicates(ix: VideoIndex, keys: list[str]) -> list[str]:
    """``"file:line repeats file:line"`` for every entry whose video is listed earlier too."""
    seen: dict[str, VideoRecord] = {}
    out: list[str] = []
    if len(set(keys)) == len(keys):
        return out
    for r, k in zip(ix, keys):
        if k in seen:
            out.append(f"{_where(r)} repeats {_where(seen[k])}")
        else:
            seen[k] = r
    return out


def _has_csv_header(path: str) -> bool:
    with open(path, encoding="utf-8") as f:
        return f.readline().lower().startswith("label,")


#: RandAugment ops that recolour SyntheticActions' objects, whose colour is part of the class
#: (``Invert`` exists only in the ``"mmaction2"`` op set; under torchvision's it excludes nothing).
LABEL_CHANGING_OPS: tuple[str, ...] = ("Solarize", "Equalize", "AutoContrast", "Invert")


class SyntheticActionsDataModule(SemiSupervisedDataModule):
    """The embedded default: SyntheticActions videos, generated once into a cache folder.

    Classes come in pairs that differ only in motion (see :mod:`ssvar.data.synthetic`), so
    ``hflip`` defaults to 0: flipping would turn "slide right" into "slide left". Object colour
    is part of what tells the pairs apart, and three RandAugment ops recolour the object
    (Solarize inverts the bright channels, so the red square turns dark cyan; Equalize and
    AutoContrast stretch each channel on its own; with ``randaugment="mmaction2"``, Invert turns
    every colour into its complement), so ``randaugment_exclude`` defaults to those ops here
    (:data:`LABEL_CHANGING_OPS`) and the strong view keeps the label. Benchmark rows
    stored before this default (``benchmarks/RESULTS.md``) ran with every op: add
    ``--data.init_args.randaugment_exclude=[]`` to reproduce them.

    Args:
        root: cache folder (default ``$SSVAR_CACHE/synthetic`` or ``~/.cache/ssvar/synthetic``).
        num_classes, videos_per_class, video_frames, resolution, fps, generator_seed: the
            generated set (``video_frames`` frames per video at ``resolution`` pixels).
        labeled_per_class: labelled videos per class (drawn with ``seed``).
        test_fraction: held-out fraction per class (drawn with ``split_seed``).
        Other arguments: :class:`SemiSupervisedDataModule`, with CPU-sized defaults.
    """

    def __init__(
        self,
        root: str | None = None,
        num_classes: int = 10,
        videos_per_class: int = 30,
        video_frames: int = 48,
        resolution: int = 64,
        fps: int = 25,
        generator_seed: int = 0,
        labeled_per_class: int = 2,
        test_fraction: float = 0.3,
        split_seed: int = 0,
        batch_size: int = 8,
        mu: int = 1,
        num_frames: int = 8,
        stride: int = 2,
        crop_size: int = 56,
        short_side: int | None = 64,
        area_range: tuple[float, float] = (0.5, 1.0),
        hflip: float = 0.0,
        randaugment_exclude: tuple[str, ...] = LABEL_CHANGING_OPS,
        test_clips: int = 2,
        test_crops: int = 1,
        **kwargs,
    ):
        super().__init__(
            root=root or "",
            batch_size=batch_size,
            mu=mu,
            num_frames=num_frames,
            stride=stride,
            crop_size=crop_size,
            short_side=short_side,
            area_range=area_range,
            hflip=hflip,
            randaugment_exclude=randaugment_exclude,
            test_clips=test_clips,
            test_crops=test_crops,
            **kwargs,
        )
        from ssvar.data.synthetic import CLASSES

        if not 2 <= num_classes <= len(CLASSES):
            raise ValueError(f"num_classes must be in [2, {len(CLASSES)}], got {num_classes}")
        self.cache_root = root
        self.gen_kwargs = dict(
            num_classes=num_classes,
            videos_per_class=videos_per_class,
            num_frames=video_frames,
            resolution=resolution,
            fps=fps,
            seed=generator_seed,
        )
        self.labeled_per_class = labeled_per_class
        self.test_fraction = test_fraction
        self.split_seed = split_seed
        self._class_list = CLASSES[:num_classes]

    def class_names(self) -> list[str]:
        return list(self._class_list)

    def _generate(self) -> VideoIndex:
        from ssvar.data.synthetic import generate_synthetic_actions

        self.root, index = generate_synthetic_actions(self.cache_root, progress=True, **self.gen_kwargs)
        return index

    def prepare_data(self) -> None:
        self._generate()  # once per node, before the ranks set up

    def build_splits(self) -> Splits:
        index = self._generate()
        train, test = S.make_group_split(index, self.test_fraction, seed=self.split_seed)
        labeled = S.make_labeled_split(train, per_class=self.labeled_per_class, seed=self.seed, too_few="error")
        return Splits(labeled=labeled, unlabeled=train, val=test, test=test)
