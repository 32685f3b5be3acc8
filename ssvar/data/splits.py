"""Make and check the split lists of video datasets.

Generators draw class-balanced labelled subsets and leak-free (group-disjoint) test and
validation splits with a local, seeded RNG; :func:`verify_split` checks a split for leaks and
holes; :func:`write_list` writes a list that :func:`read_list` reads back. The readers of every
list format live in :mod:`ssvar.data.lists` and are re-exported here.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from ssvar.data.index import SplitError, VideoIndex, VideoRecord, path_key
from ssvar.data.lists import (  # noqa: F401  (re-exported: the readers' historical home)
    OFFICIAL_DATASETS,
    PathLike,
    _examples,
    _first_dir,
    _where,
    read_class_names,
    read_folder_tree,
    read_groups_csv,
    read_hmdb51_split,
    read_kinetics_csv,
    read_list,
    read_official_split,
    read_ucf101_classind,
    read_ucf101_list,
    ucf101_group,
)

__all__ = [
    "OFFICIAL_DATASETS",
    "SplitReport",
    "check_validation_split",
    "format_list",
    "make_group_split",
    "make_labeled_split",
    "make_validation_split",
    "read_class_names",
    "read_folder_tree",
    "read_groups_csv",
    "read_hmdb51_split",
    "read_kinetics_csv",
    "read_list",
    "read_official_split",
    "read_ucf101_classind",
    "read_ucf101_list",
    "ucf101_group",
    "verify_split",
    "write_list",
]


# --------------------------------------------------------------------------- generators


def make_labeled_split(
    index: VideoIndex,
    *,
    per_class: int | None = None,
    percent: float | None = None,
    seed: int = 0,
    group_disjoint_test: VideoIndex | None = None,
    too_few: Literal["warn", "error"] = "warn",
) -> VideoIndex:
    """Draw a class-balanced labelled subset of ``index``: ``per_class`` videos of every class,
    or ``percent`` % of each class (rounded half up, at least 1).

    Each class draws from its own ``numpy.random.default_rng([seed, label])`` over its videos
    sorted by path, so the result does not depend on the list order or on the other classes,
    and for one seed a smaller draw is a subset of a larger one (nested splits). Global RNG
    state is never touched. A class with fewer videos than asked gives all it has (with a
    warning). With ``group_disjoint_test``, videos that are in that test index or share a group
    with it are never drawn. Records keep the order of ``index``; videos with label -1 are skipped.
    ``too_few="error"``: a class with fewer videos than asked is a :class:`SplitError` naming the
    classes and their counts (the data modules use it).
    """
    if (per_class is None) == (percent is None):
        raise ValueError("give exactly one of per_class and percent")
    if per_class is not None and per_class < 1:
        raise ValueError(f"per_class must be >= 1, got {per_class}")
    if percent is not None and not 0 < percent <= 100:
        raise ValueError(f"percent must be in (0, 100], got {percent}")
    banned_paths: set[str] = set()
    banned_groups: set[str] = set()
    if group_disjoint_test is not None:
        banned_paths = {path_key(r.path) for r in group_disjoint_test}
        banned_groups = {r.group for r in group_disjoint_test if r.group is not None}

    by_class: dict[int, list[int]] = defaultdict(list)
    for i, r in enumerate(index.records):
        if r.label >= 0 and path_key(r.path) not in banned_paths and r.group not in banned_groups:
            by_class[r.label].append(i)

    def wanted(n: int) -> int:
        if per_class is not None:
            return per_class
        assert percent is not None  # exactly one of the two, checked above
        return max(1, math.floor(n * percent / 100 + 0.5))

    chosen: list[int] = []
    short: list[str] = []
    for label in range(max(index.num_classes, max(by_class, default=-1) + 1)):
        members = sorted(by_class.get(label, []), key=lambda i: index.records[i].path)
        n = len(members)
        want = wanted(n)
        if n < want:
            name = index.classes[label] if label < index.num_classes else str(label)
            short.append(f"{name} ({n} < {want})")
        order = np.random.default_rng([seed, label]).permutation(n)
        chosen += [members[j] for j in order[:want]]
    if short and too_few == "error":
        raise SplitError(
            f"{len(short)} class(es) have fewer training videos than the labelled videos asked for "
            f"(class (videos < asked)): {_examples(short)}; ask for fewer labelled videos per class"
        )
    if short:
        warnings.warn(f"classes with fewer videos than asked, all taken: {_examples(short)}", stacklevel=2)
    return index.subset(chosen)


def make_validation_split(train: VideoIndex, labeled: VideoIndex, fraction: float, seed: int = 0) -> VideoIndex:
    """A validation set of about ``fraction`` of the not-labelled videos of ``train``, drawn per
    class and group-disjointly (:func:`make_group_split`): no validation video is labelled, and
    none shares a source group with a labelled video or with a video left in ``train``.

    Videos that share a group with a labelled one are never drawn. The caller removes the result
    from the unlabelled pool, so validation videos are never trained on, with or without labels.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {fraction}")
    lab_keys = {path_key(r.path) for r in labeled}
    lab_groups = {r.group for r in labeled if r.group is not None}
    pool = [
        i
        for i, r in enumerate(train.records)
        if path_key(r.path) not in lab_keys and (r.group is None or r.group not in lab_groups)
    ]
    if len(pool) < 2:
        raise SplitError(
            f"cannot draw a validation set: only {len(pool)} training video(s) are neither labelled nor share a group "
            "with a labelled one"
        )
    _, val = make_group_split(train.subset(pool), fraction, seed=seed)
    return val


def check_validation_split(
    val: VideoIndex, labeled: VideoIndex, test: VideoIndex, where: str = "validation_list"
) -> None:
    """A validation list must name neither a labelled nor a test video."""
    for other, what in ((labeled, "labelled"), (test, "test")):
        keys = {path_key(r.path) for r in other}
        clash = [r for r in val if path_key(r.path) in keys]
        if clash:
            r = clash[0]
            raise SplitError(
                f"{r.origin or where}: {r.path} is a {what} video; a validation video must be neither labelled nor in "
                f"the test set ({len(clash)} such)"
            )


def make_group_split(
    index: VideoIndex, test_fraction: float, seed: int = 0, tries: int = 32
) -> tuple[VideoIndex, VideoIndex]:
    """Split ``index`` into ``(train, test)`` keeping every group wholly on one side (no source
    video leaks into both), with about ``test_fraction`` of each class in test.

    Records with group None count as a group of their own. Groups are visited in a random
    order (``numpy.random.default_rng(seed)``) and each goes to test when that brings the
    per-class test counts closer to their targets; of ``tries`` such greedy passes the closest
    fit wins (exact stratification is impossible in general when groups mix classes or are large).
    """
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    members: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(index.records):
        members[r.group if r.group is not None else f"\0{i}"].append(i)
    names = sorted(members)
    n_classes = max(index.num_classes, max((r.label for r in index), default=-1) + 1)
    # class -1 (unknown label) is counted in an extra last column
    counts = np.zeros((len(names), n_classes + 1))
    for g, name in enumerate(names):
        for i in members[name]:
            counts[g, index.records[i].label] += 1
    target = counts.sum(axis=0) * test_fraction
    rng = np.random.default_rng(seed)
    best: tuple[float, list[int]] = (math.inf, [])
    for _ in range(tries):
        deficit = target.copy()
        chosen = []
        for g in rng.permutation(len(names)):
            # the squared distance to the targets shrinks iff |c|^2 < 2 c.deficit
            if counts[g] @ counts[g] < 2 * (counts[g] @ deficit):
                deficit -= counts[g]
                chosen.append(g)
        if deficit @ deficit < best[0]:
            best = (float(deficit @ deficit), chosen)
    test = [i for g in best[1] for i in members[names[g]]]
    if not test or len(test) == len(index):
        raise SplitError(f"cannot split {len(members)} group(s) so that {test_fraction:.0%} goes to test")
    test_set = set(test)
    return index.subset([i for i in range(len(index)) if i not in test_set]), index.subset(test)


def format_list(index: VideoIndex, fmt: Literal["path label", "path"] = "path label") -> str:
    """The text :func:`write_list` writes (raises :class:`SplitError` before anything is written)."""
    if fmt not in ("path label", "path"):
        raise ValueError(f"fmt must be 'path label' or 'path', got {fmt!r}")
    lines = []
    for r in index:
        if any(ch.isspace() for ch in r.path):
            raise SplitError(f"cannot write a path with white space to a list: {_where(r)}")
        if fmt == "path":
            lines.append(r.path)
        elif r.label < 0:
            raise SplitError(f"cannot write an unlabelled video as labelled: {_where(r)}")
        else:
            lines.append(f"{r.path} {r.label}")
    return "".join(line + "\n" for line in lines)


def write_list(index: VideoIndex, path: PathLike, fmt: Literal["path label", "path"] = "path label") -> None:
    """Write ``<relative/path> <0-based label>`` lines (or paths only), LF line ends, no header,
    atomically (a temporary file renamed over ``path``: never half a list).

    ``read_list(path, classes=index.classes)`` reads it back identically.
    """
    from ssvar.fileio import atomic_write_text

    text = format_list(index, fmt)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)


# --------------------------------------------------------------------------- verification


@dataclass
class SplitReport:
    """Outcome of :func:`verify_split`: errors make the split unusable, warnings deserve a look."""

    classes: list[str]
    labeled_counts: list[int]
    unlabeled_counts: list[int] | None = None
    test_counts: list[int] | None = None
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def format(self, verbose: bool = False) -> str:
        """A readable summary; ``verbose`` lists the counts of every class."""
        out = [f"classes: {len(self.classes)}"]
        for name, counts in (
            ("labelled", self.labeled_counts),
            ("unlabelled", self.unlabeled_counts),
            ("test", self.test_counts),
        ):
            if counts is None:
                continue
            line = f"{name}: {sum(counts)} videos"
            if counts:
                lo, hi = int(np.argmin(counts)), int(np.argmax(counts))
                line += f", per class min {counts[lo]} ({self.classes[lo]}), max {counts[hi]} ({self.classes[hi]})"
            out.append(line)
        if verbose:
            out.append("per class (labelled / unlabelled / test):")
            for c, name in enumerate(self.classes):
                cols = [
                    str(x[c]) if x is not None else "-"
                    for x in (self.labeled_counts, self.unlabeled_counts, self.test_counts)
                ]
                out.append(f"  {c:4d} {name}: {' / '.join(cols)}")
        out += [f"ERROR: {e}" for e in self.errors]
        out += [f"warning: {w}" for w in self.warnings]
        out.append("OK" if self.ok else f"FAILED: {len(self.errors)} error(s)")
        return "\n".join(out)


def verify_split(
    labeled: VideoIndex,
    unlabeled: VideoIndex | None = None,
    test: VideoIndex | None = None,
    index: VideoIndex | None = None,
    num_classes: int | None = None,
    *,
    labeled_in_unlabeled: Literal["ok", "warning", "error"] = "warning",
) -> SplitReport:
    """Check a semi-supervised split; videos are matched with :func:`path_key` (extensions ignored).

    Errors: a labelled or unlabelled video also in ``test``; a class with no labelled video;
    labels out of range (-1 is allowed for unlabelled videos); duplicates within a list;
    labelled/unlabelled videos missing from the train ``index`` when given; a group (when
    known) both in test and in labelled/unlabelled/``index``. Labelled videos in ``unlabeled``
    are reported per ``labeled_in_unlabeled`` (LTG keeps labelled ⊂ unlabelled, SVFormer does
    not). Warnings: a video whose folder is a class name other than its label's.
    """
    classes = next((ix.classes for ix in (labeled, index, unlabeled, test) if ix is not None and ix.classes), [])
    if num_classes is None:
        num_classes = len(classes)
    if num_classes == 0:
        num_classes = 1 + max(
            (r.label for ix in (labeled, unlabeled, test, index) if ix is not None for r in ix), default=-1
        )
    classes = list(classes[:num_classes]) + [str(i) for i in range(len(classes), num_classes)]
    errors: list[str] = []
    warns: list[str] = []
    lists = {"labelled": labeled, "unlabelled": unlabeled, "test": test, "train index": index}
    given = {name: ix for name, ix in lists.items() if ix is not None}

    def counts(ix: VideoIndex | None) -> list[int] | None:
        if ix is None:
            return None
        c = Counter(r.label for r in ix)
        return [c.get(i, 0) for i in range(num_classes)]

    for name, ix in given.items():
        lowest = 0 if name == "labelled" else -1
        bad = [f"{_where(r)}: {r.label}" for r in ix if not lowest <= r.label < num_classes]
        if bad:
            errors.append(f"{name}: {len(bad)} label(s) outside {lowest}..{num_classes - 1}: {_examples(bad)}")
        seen: dict[str, VideoRecord] = {}
        dups = []
        for r in ix:
            k = path_key(r.path)
            if k in seen:
                dups.append(f"{_where(r)} repeats {seen[k].origin or seen[k].path}")
            seen.setdefault(k, r)
        if dups:
            errors.append(f"{name}: {len(dups)} duplicate video(s): {_examples(dups)}")
        mislabeled = _folder_label_mismatches(ix, classes)
        if mislabeled:
            warns.append(
                f"{name}: {len(mislabeled)} video(s) whose folder is another class than their label: "
                f"{_examples(mislabeled)}"
            )

    labeled_counts = counts(labeled) or []
    empty = [f"{i} {classes[i]}" for i in range(num_classes) if labeled_counts[i] == 0]
    if empty:
        errors.append(f"{len(empty)} class(es) with no labelled video: {_examples(empty)}")

    def overlap(a: VideoIndex, b: VideoIndex) -> list[str]:
        keys = {path_key(r.path) for r in b}
        return [_where(r) for r in a if path_key(r.path) in keys]

    if test is not None:
        for name, part in (("labelled", labeled), ("unlabelled", unlabeled)):
            if part is not None and (both := overlap(part, test)):
                errors.append(f"{len(both)} {name} video(s) also in the test list: {_examples(both)}")
        test_groups = {r.group for r in test if r.group is not None}
        for name, ix in given.items():
            if name == "test":
                continue
            shared = sorted({r.group for r in ix if r.group in test_groups})
            if shared:
                errors.append(f"{len(shared)} group(s) in both {name} and test: {_examples(shared)}")
    if unlabeled is not None and labeled_in_unlabeled != "ok" and (both := overlap(labeled, unlabeled)):
        msg = f"{len(both)} labelled video(s) also in the unlabelled list: {_examples(both)}"
        (errors if labeled_in_unlabeled == "error" else warns).append(msg)
    if index is not None:
        for name, part in (("labelled", labeled), ("unlabelled", unlabeled)):
            if part is not None:
                keys = {path_key(r.path) for r in index}
                missing = [_where(r) for r in part if path_key(r.path) not in keys]
                if missing:
                    errors.append(f"{len(missing)} {name} video(s) not in the train index: {_examples(missing)}")

    return SplitReport(classes, labeled_counts, counts(unlabeled), counts(test), errors, warns)


def _folder_label_mismatches(ix: VideoIndex, classes: list[str]) -> list[str]:
    def key(name: str) -> str:
        return name.lower().replace(" ", "_")

    known = {key(c) for c in classes}
    out = []
    for r in ix:
        folder = _first_dir(r.path)
        if folder and 0 <= r.label < len(classes) and key(folder) in known and key(folder) != key(classes[r.label]):
            out.append(f"{_where(r)} has label {r.label} ({classes[r.label]})")
    return out


def __getattr__(name: str):
    if name == "splits_main":  # the command moved to the CLI layer; kept importable from here
        from ssvar.commands import splits_main

        return splits_main
    raise AttributeError(f"module 'ssvar.data.splits' has no attribute {name!r}")
