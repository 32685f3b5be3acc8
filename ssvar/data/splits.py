"""Read, make and check the split lists of video datasets.

Parsers turn every list format in use (official UCF101/HMDB51 splits, MMAction2 video and
raw-frame lists, SVFormer ``.csv``, Kinetics-400 annotation CSV, folder-per-class trees) into
a :class:`~ssvar.data.index.VideoIndex` whose labels are 0-based and whose records remember
``"file:line"``. Generators draw class-balanced labelled subsets and leak-free (group-disjoint)
test splits with a local, seeded RNG; :func:`verify_split` checks a split for leaks and holes.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import re
import sys
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from ssvar.data.index import VIDEO_EXTENSIONS, SplitError, VideoIndex, VideoRecord, path_key

__all__ = [
    "SplitReport",
    "make_group_split",
    "make_labeled_split",
    "read_class_names",
    "read_folder_tree",
    "read_groups_csv",
    "read_hmdb51_split",
    "read_kinetics_csv",
    "read_list",
    "read_ucf101_classind",
    "read_ucf101_list",
    "splits_main",
    "ucf101_group",
    "verify_split",
    "format_list",
    "write_list",
]

PathLike = str | os.PathLike

_UCF_GROUP = re.compile(r"^v_.+_(g\d+)_c\d+$")
_MAX_EXAMPLES = 5


# --------------------------------------------------------------------------- helpers


def _lines(path: PathLike) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of the non-blank lines, with CR/LF and outer blanks removed."""
    try:
        # utf-8-sig drops a byte-order mark, which Windows tools put in front of CSV files
        with open(path, encoding="utf-8-sig", newline="") as f:
            for lineno, line in enumerate(f, 1):
                text = line.strip()
                if text:
                    yield lineno, text
    except FileNotFoundError:
        raise SplitError(f"list file not found: {path}") from None
    except UnicodeDecodeError as e:
        raise SplitError(f"{path}: not a UTF-8 text file ({e})") from None


def _origin(path: PathLike, lineno: int) -> str:
    return f"{os.fspath(path)}:{lineno}"


def _int(text: str, what: str, where: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise SplitError(f"{where}: {what} must be an integer, got {text!r}") from None


def _norm(path: str) -> str:
    if "\\" not in path and not path.startswith("./"):  # the common case, for every list line
        return path
    p = path.replace("\\", "/")
    while p.startswith("./"):
        p = p[2:]
    return p


def _first_dir(path: str) -> str | None:
    parts = _norm(path).strip("/").split("/")
    return parts[0] if len(parts) > 1 else None


def _has_video_ext(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in VIDEO_EXTENSIONS


def _examples(items: Sequence[str]) -> str:
    shown = ", ".join(items[:_MAX_EXAMPLES])
    more = len(items) - _MAX_EXAMPLES
    return shown + (f" (and {more} more)" if more > 0 else "")


def _where(r: VideoRecord) -> str:
    return f"{r.path} ({r.origin})" if r.origin else r.path


def ucf101_group(path: str) -> str | None:
    """The ``gNN`` group of a UCF101 file name ``v_<Class>_gNN_cMM[.avi]``, else None."""
    name = path.replace("\\", "/").rsplit("/", 1)[-1]
    if not name.startswith("v_"):  # cheap test first: this runs for every line of every list
        return None
    m = _UCF_GROUP.search(path_key(name))
    return m.group(1) if m else None


# --------------------------------------------------------------------------- parsers


def read_groups_csv(path: PathLike) -> dict[str, str]:
    """``{relative path: group}`` from a CSV whose header has ``path`` and ``group`` (or
    ``source_group``); other columns are ignored. Rows with an empty group are left out."""
    try:
        f = open(path, encoding="utf-8-sig", newline="")
    except FileNotFoundError:
        raise SplitError(f"groups file not found: {path}") from None
    with f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        column = next((c for c in ("group", "source_group") if c in header), None)
        if "path" not in header or column is None:
            raise SplitError(f"{_origin(path, 1)}: header needs 'path' and 'group' or 'source_group' columns, got {header}")
        groups: dict[str, str] = {}
        for row in reader:
            where = _origin(path, reader.line_num)
            p, g = _norm((row.get("path") or "").strip()), (row.get(column) or "").strip()
            if not p:
                raise SplitError(f"{where}: empty path")
            if not g:
                continue
            if groups.get(p, g) != g:
                raise SplitError(f"{where}: {p} is in group {g!r} but an earlier row says {groups[p]!r}")
            groups[p] = g
    return groups


def read_folder_tree(
    root: PathLike,
    classes: Sequence[str] | None = None,
    extensions: Iterable[str] = VIDEO_EXTENSIONS,
    groups_csv: PathLike | None = None,
    progress: bool = False,
) -> VideoIndex:
    """Index a ``root/<class>/.../<video>`` tree.

    The class is the first directory level; classes are sorted alphabetically unless
    ``classes`` fixes the label order (a class directory not in ``classes`` is an error, a listed
    class without a directory just has no videos). Paths are relative to ``root`` with forward
    slashes, sorted. Files directly under ``root`` and hidden entries are ignored. With
    ``groups_csv`` (see :func:`read_groups_csv`) each video gets its group; videos not in the
    CSV get group None (``verify_split`` and ``make_group_split`` treat them as their own group).
    There is no list line to point at, so ``origin`` is the video file itself.
    """
    root = Path(root)
    if not root.is_dir():
        raise SplitError(f"dataset root is not a directory: {root}")
    exts = {e.lower() if e.startswith(".") else "." + e.lower() for e in extensions}
    dirs = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if classes is None:
        classes = dirs
    else:
        classes = list(classes)
        unknown = sorted(set(dirs) - set(classes))
        if unknown:
            raise SplitError(f"{root}: class folders not in the given classes: {_examples(unknown)}")
    label_of = {c: i for i, c in enumerate(classes)}

    groups = {path_key(p): g for p, g in read_groups_csv(groups_csv).items()} if groups_csv is not None else {}
    files: list[str] = []
    walk = [d for d in dirs if d in label_of]
    if progress:
        from tqdm.auto import tqdm

        walk = tqdm(walk, desc=f"scanning {root.name}", unit="class")
    for cls in walk:
        for dirpath, dirnames, filenames in os.walk(root / cls, followlinks=True):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            rel = Path(dirpath).relative_to(root).as_posix()
            files += [f"{rel}/{n}" for n in filenames if not n.startswith(".") and os.path.splitext(n)[1].lower() in exts]
    _check_same_stem(root, sorted(files))
    records = [
        VideoRecord(rel, label_of[rel.split("/", 1)[0]], groups.get(path_key(rel)), os.fspath(root / rel))
        for rel in sorted(files)
    ]
    return VideoIndex(records, list(classes))


def _check_same_stem(root: PathLike, files: list[str]) -> None:
    """Two files that differ only in their video extension (``x.mp4`` and ``x.avi``) are one video
    to every list format (lists match videos without extension): refuse to guess which one."""
    by_key: dict[str, list[str]] = defaultdict(list)
    for rel in files:
        by_key[path_key(rel)].append(rel)
    clashes = [v for v in by_key.values() if len(v) > 1]
    if clashes:
        per_class = Counter(v[0].split("/", 1)[0] for v in clashes)
        where = ", ".join(f"{c} ({n})" for c, n in sorted(per_class.items()))
        raise SplitError(
            f"{root}: {len(clashes)} video(s) stored twice under one name with different extensions, "
            f"per class: {where}; e.g. {' and '.join(clashes[0])}. Keep one file per video."
        )


def read_ucf101_classind(path: PathLike) -> list[str]:
    """Class names from UCF101's ``classInd.txt`` (``<1-based index> <Name>`` lines, in order)."""
    classes: list[str] = []
    for lineno, text in _lines(path):
        where = _origin(path, lineno)
        fields = text.split()
        if len(fields) != 2:
            raise SplitError(f"{where}: expected '<index> <ClassName>', got {text!r}")
        index = _int(fields[0], "class index", where)
        if index != len(classes) + 1:
            raise SplitError(f"{where}: class index {index} out of order (expected {len(classes) + 1})")
        classes.append(fields[1])
    if not classes:
        raise SplitError(f"{path}: no classes")
    return classes


def read_class_names(path: PathLike) -> list[str]:
    """Class names from a ``classInd.txt``-style file, or from one name per line."""
    lines = [text for _, text in _lines(path)]
    if lines and all(len(t.split()) == 2 and t.split()[0].isdigit() for t in lines):
        return read_ucf101_classind(path)
    return lines


def read_ucf101_list(list_path: PathLike, classind_path: PathLike) -> VideoIndex:
    """An official UCF101 ``trainlistNN.txt`` (``path <1-based label>``) or ``testlistNN.txt``
    (``path``, label from the class folder) as 0-based records grouped by ``gNN``."""
    classes = read_ucf101_classind(classind_path)
    # case-insensitive: some copies spell the folder HandStandPushups
    by_name = {c.lower(): i for i, c in enumerate(classes)}
    records = []
    for lineno, text in _lines(list_path):
        where = _origin(list_path, lineno)
        fields = text.split()
        if len(fields) not in (1, 2):
            raise SplitError(f"{where}: expected '<Class>/<file>.avi [label]', got {text!r}")
        path = _norm(fields[0])
        folder = _first_dir(path)
        dir_label = by_name.get(folder.lower()) if folder else None
        if len(fields) == 2:
            label = _int(fields[1], "label", where) - 1
            if not 0 <= label < len(classes):
                raise SplitError(f"{where}: label {label + 1} out of range 1..{len(classes)}")
            if dir_label is not None and dir_label != label:
                raise SplitError(f"{where}: label {label + 1} is {classes[label]!r} but the folder is {folder!r}")
        elif dir_label is None:
            raise SplitError(f"{where}: folder {folder!r} of {path!r} is not a class of {classind_path}")
        else:
            label = dir_label
        records.append(VideoRecord(path, label, ucf101_group(path), where))
    return VideoIndex(records, classes)


def read_hmdb51_split(split_dir: PathLike, split: int = 1) -> tuple[VideoIndex, VideoIndex, VideoIndex]:
    """HMDB51's official ``testTrainMulti_7030_splits`` layout: one ``<class>_test_split<N>.txt``
    per class with ``<file>.avi <flag>`` lines (1 train, 2 test, 0 unused).

    Returns ``(train, test, unused)``; classes alphabetical; paths ``<class>/<file>``; group None.
    """
    split_dir = Path(split_dir)
    suffix = f"_test_split{split}.txt"
    files = sorted(split_dir.glob(f"*{suffix}")) if split_dir.is_dir() else []
    if not files:
        raise SplitError(f"{split_dir}: no '*{suffix}' files")
    classes = sorted(f.name[: -len(suffix)] for f in files)
    parts: dict[int, list[VideoRecord]] = {0: [], 1: [], 2: []}
    for label, cls in enumerate(classes):
        file = split_dir / f"{cls}{suffix}"
        for lineno, text in _lines(file):
            where = _origin(file, lineno)
            fields = text.split()
            if len(fields) != 2:
                raise SplitError(f"{where}: expected '<file>.avi <0|1|2>', got {text!r}")
            flag = _int(fields[1], "flag", where)
            if flag not in parts:
                raise SplitError(f"{where}: flag {flag} is not 0 (unused), 1 (train) or 2 (test)")
            parts[flag].append(VideoRecord(f"{cls}/{fields[0]}", label, None, where))
    return tuple(VideoIndex(parts[k], list(classes)) for k in (1, 2, 0))  # type: ignore[return-value]


def read_list(
    path: PathLike,
    classes: Sequence[str] | None = None,
    label_base: Literal[0, 1, "auto"] = "auto",
    path_prefix: str | None = None,
    extension: str | None = None,
) -> VideoIndex:
    """Read a ``path [num_frames] label`` list: MMAction2 video lists (``path label``), raw-frame
    lists (``path num_frames label``; the frame count is ignored), SVFormer ``.csv`` (space
    separated, CRLF), Kinetics ``*_videos.txt``, UCF101 train/test lists.

    ``label_base``: 0, 1, or ``"auto"``: 1-based only if the smallest label is 1 and the largest
    equals the number of classes (``len(classes)`` if given, else the number of distinct labels).
    With ``classes`` given this is exact for valid files; without, a 0-based subset that lacks
    class 0 would pass for 1-based, so give ``label_base`` for such files.
    ``path_prefix``: stripped from paths that start with it (lists with absolute storage paths).
    ``extension`` (e.g. ``".avi"``): appended to paths without a video extension (raw-frame lists).
    Lines holding only a path take the label of their class folder; that needs ``classes``.
    Without ``classes``, names come from the first folder of the paths of each label (a label
    seen in two folders is an error; a label never seen is named ``unknown_<label>``).
    UCF101-style names (``v_<Class>_gNN_cMM``) get their ``gNN`` group, other records None.
    """
    if label_base not in (0, 1, "auto"):
        raise ValueError(f"label_base must be 0, 1 or 'auto', got {label_base!r}")
    if extension and not extension.startswith("."):
        extension = "." + extension
    prefix = _norm(path_prefix).rstrip("/") + "/" if path_prefix else None
    raw: list[tuple[str, int | None, str]] = []
    origin = _origin(path, 0)[:-1]  # "file:" once; + line number per line
    for lineno, text in _lines(path):
        where = origin + str(lineno)
        fields = text.split()
        if len(fields) > 3:
            raise SplitError(f"{where}: expected 'path [num_frames] label', got {len(fields)} fields: {text!r}")
        if len(fields) == 3:
            _int(fields[1], "frame count", where)
        label = _int(fields[-1], "label", where) if len(fields) > 1 else None
        if label is not None and label < 0:
            raise SplitError(f"{where}: negative label {label}")
        p = _norm(fields[0])
        if prefix and p.startswith(prefix):
            p = p[len(prefix) :]
        if extension and not _has_video_ext(p):
            p += extension
        raw.append((p, label, where))

    labels = [lab for _, lab, _ in raw if lab is not None]
    n_expected = len(classes) if classes is not None else len(set(labels))
    if label_base == "auto":
        label_base = 1 if labels and min(labels) == 1 and max(labels) == n_expected else 0
    if classes is not None:
        class_names = list(classes)
    else:
        class_names = _infer_classes(raw, label_base)
    by_name = {c.lower(): i for i, c in enumerate(class_names)}

    records = []
    for p, label, where in raw:
        if label is None:
            folder = _first_dir(p)
            if classes is None or folder is None or folder.lower() not in by_name:
                raise SplitError(f"{where}: no label, and the folder of {p!r} is not a known class (pass classes)")
            label = by_name[folder.lower()]
        else:
            label -= label_base
            if not 0 <= label < len(class_names):
                lo, hi = label_base, len(class_names) - 1 + label_base
                raise SplitError(f"{where}: label {label + label_base} out of range {lo}..{hi} ({label_base}-based)")
        records.append(VideoRecord(p, label, ucf101_group(p), where))
    return VideoIndex(records, class_names)


def _infer_classes(raw: list[tuple[str, int | None, str]], label_base: int) -> list[str]:
    seen: dict[int, tuple[str, str]] = {}
    for p, label, where in raw:
        if label is None:
            raise SplitError(f"{where}: no label; pass classes to label videos by their folder")
        folder = _first_dir(p)
        if folder is None:
            raise SplitError(f"{where}: cannot infer a class name from {p!r} (no folder); pass classes")
        first = seen.setdefault(label, (folder, where))
        if first[0] != folder:
            raise SplitError(
                f"{where}: label {label} is folder {folder!r} here but {first[0]!r} at {first[1]}; "
                "pass classes if the labels are right and the folders differ"
            )
    if not seen:
        return []
    n = max(seen) - label_base + 1
    return [seen[i + label_base][0] if i + label_base in seen else f"unknown_{i}" for i in range(n)]


def read_kinetics_csv(path: PathLike, classes: Sequence[str] | None = None, extension: str = ".mp4") -> VideoIndex:
    """A Kinetics annotation CSV (``label,youtube_id,time_start,time_end,split[,is_cc]``).

    Paths are ``<label>/<youtube_id>_<start:06d>_<end:06d>.mp4`` with spaces in the label
    replaced by underscores (the folder names of every public copy); rows without a label (the
    test set) have no folder and label -1. Labels index ``classes`` (default: the labels of the
    file, sorted alphabetically, which is the standard order); class names are returned with
    underscores so ``classes[label]`` is the folder name. Group = the YouTube id.
    """
    rows = []
    try:
        f = open(path, encoding="utf-8-sig", newline="")
    except FileNotFoundError:
        raise SplitError(f"list file not found: {path}") from None
    with f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        missing = {"youtube_id", "time_start", "time_end"} - set(header)
        if missing:
            raise SplitError(f"{_origin(path, 1)}: Kinetics CSV header lacks {sorted(missing)}, got {header}")
        for row in reader:
            where = _origin(path, reader.line_num)
            try:
                start, end = int(float(row["time_start"])), int(float(row["time_end"]))
            except (TypeError, ValueError):
                raise SplitError(f"{where}: time_start/time_end must be numbers, got {row}") from None
            yid = (row["youtube_id"] or "").strip()
            if not yid:
                raise SplitError(f"{where}: empty youtube_id")
            rows.append(((row.get("label") or "").strip(), yid, start, end, where))

    def folder(name: str) -> str:
        return name.replace(" ", "_")

    names = sorted({r[0] for r in rows if r[0]}) if classes is None else list(classes)
    label_of = {folder(c): i for i, c in enumerate(names)}
    records = []
    for name, yid, start, end, where in rows:
        clip = f"{yid}_{start:06d}_{end:06d}{extension}"
        if not name:
            records.append(VideoRecord(clip, -1, yid, where))
            continue
        if folder(name) not in label_of:
            raise SplitError(f"{where}: label {name!r} is not one of the {len(names)} classes")
        records.append(VideoRecord(f"{folder(name)}/{clip}", label_of[folder(name)], yid, where))
    return VideoIndex(records, [folder(c) for c in names])


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

    chosen: list[int] = []
    short: list[str] = []
    for label in range(max(index.num_classes, max(by_class, default=-1) + 1)):
        members = sorted(by_class.get(label, []), key=lambda i: index.records[i].path)
        n = len(members)
        want = per_class if per_class is not None else max(1, math.floor(n * percent / 100 + 0.5))
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
    pool = [i for i, r in enumerate(train.records) if path_key(r.path) not in lab_keys and (r.group is None or r.group not in lab_groups)]
    if len(pool) < 2:
        raise SplitError(f"cannot draw a validation set: only {len(pool)} training video(s) are neither labelled nor share a group with a labelled one")
    _, val = make_group_split(train.subset(pool), fraction, seed=seed)
    return val


def check_validation_split(val: VideoIndex, labeled: VideoIndex, test: VideoIndex, where: str = "validation_list") -> None:
    """A validation list must name neither a labelled nor a test video."""
    for other, what in ((labeled, "labelled"), (test, "test")):
        keys = {path_key(r.path) for r in other}
        clash = [r for r in val if path_key(r.path) in keys]
        if clash:
            r = clash[0]
            raise SplitError(f"{r.origin or where}: {r.path} is a {what} video; a validation video must be neither labelled nor in the test set ({len(clash)} such)")


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
        for name, counts in (("labelled", self.labeled_counts), ("unlabelled", self.unlabeled_counts), ("test", self.test_counts)):
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
                cols = [str(x[c]) if x is not None else "-" for x in (self.labeled_counts, self.unlabeled_counts, self.test_counts)]
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
        num_classes = 1 + max((r.label for ix in (labeled, unlabeled, test, index) if ix is not None for r in ix), default=-1)
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
            warns.append(f"{name}: {len(mislabeled)} video(s) whose folder is another class than their label: {_examples(mislabeled)}")

    labeled_counts = counts(labeled) or []
    empty = [f"{i} {classes[i]}" for i in range(num_classes) if labeled_counts[i] == 0]
    if empty:
        errors.append(f"{len(empty)} class(es) with no labelled video: {_examples(empty)}")

    def overlap(a: VideoIndex, b: VideoIndex) -> list[str]:
        keys = {path_key(r.path) for r in b}
        return [_where(r) for r in a if path_key(r.path) in keys]

    if test is not None:
        for name, ix in (("labelled", labeled), ("unlabelled", unlabeled)):
            if ix is not None and (both := overlap(ix, test)):
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
        for name, ix in (("labelled", labeled), ("unlabelled", unlabeled)):
            if ix is not None:
                keys = {path_key(r.path) for r in index}
                missing = [_where(r) for r in ix if path_key(r.path) not in keys]
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


# --------------------------------------------------------------------------- command line


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ssvar splits", description="Make and check semi-supervised split lists.")
    sub = parser.add_subparsers(dest="command", required=True)

    make = sub.add_parser("make", help="draw a class-balanced labelled list (and a group-disjoint test list)")
    src = make.add_mutually_exclusive_group(required=True)
    src.add_argument("--root", help="folder-per-class video tree")
    src.add_argument("--list", help="train list file (path [frames] label)")
    src.add_argument("--dataset", choices=["ucf101", "hmdb51", "kinetics400"], help="official split files in --splits-dir")
    make.add_argument("--classes", help="class names for --list (classInd.txt or one name per line)")
    make.add_argument("--splits-dir", help="folder of the official split files for --dataset")
    make.add_argument("--split", type=int, default=1, help="official split number (ucf101, hmdb51)")
    make.add_argument("--groups", help="CSV path,group (or source_group) for --root")
    size = make.add_mutually_exclusive_group(required=True)
    size.add_argument("--per-class", type=int, help="labelled videos per class")
    size.add_argument("--percent", type=float, help="labelled percent of each class")
    make.add_argument("--seed", type=int, default=0)
    make.add_argument("--out", required=True, help="labelled list to write")
    make.add_argument("--unlabeled-out", help="also write the rest of the train pool here")
    make.add_argument("--test-out", help="write the test list here (official test list, or the group split)")
    make.add_argument("--test-fraction", type=float, help="hold out this fraction as a group-disjoint test split")

    verify = sub.add_parser("verify", help="check a split for leaks and empty classes")
    verify.add_argument("--labeled", required=True)
    verify.add_argument("--test", required=True)
    verify.add_argument("--unlabeled")
    verify.add_argument("--train", help="the full train list the others must come from")
    verify.add_argument("--classes", help="classInd.txt or one class name per line")
    verify.add_argument("--num-classes", type=int)
    verify.add_argument(
        "--labeled-in-unlabeled", choices=["ok", "warning", "error"], default="warning",
        help="how to report labelled videos that are also in the unlabelled list",
    )
    verify.add_argument("-v", "--verbose", action="store_true", help="print the counts of every class")
    return parser


def _load_pool(args: argparse.Namespace) -> tuple[VideoIndex, VideoIndex | None]:
    """The train pool and, for official splits, the official test list."""
    if args.root:
        return read_folder_tree(args.root, groups_csv=args.groups, progress=True), None
    if args.list:
        classes = read_class_names(args.classes) if args.classes else None
        return read_list(args.list, classes=classes), None
    if not args.splits_dir:
        raise SplitError("--dataset needs --splits-dir")
    d = Path(args.splits_dir)
    if args.dataset == "ucf101":
        classind = d / "classInd.txt"
        return read_ucf101_list(d / f"trainlist{args.split:02d}.txt", classind), read_ucf101_list(d / f"testlist{args.split:02d}.txt", classind)
    if args.dataset == "hmdb51":
        train, test, _ = read_hmdb51_split(d, args.split)
        return train, test
    # Kinetics-400 has one official split: train.csv / validate.csv (or val.csv)
    train = read_kinetics_csv(d / "train.csv")
    val = next((d / n for n in ("validate.csv", "val.csv") if (d / n).exists()), None)
    return train, read_kinetics_csv(val, classes=train.classes) if val else None


def _check_make_args(args: argparse.Namespace) -> None:
    """Everything that can be checked before reading or writing anything."""
    if args.test_out and args.test_fraction is None and not args.dataset:
        raise SplitError("--test-out needs an official split (--dataset) or --test-fraction")
    if args.test_fraction is not None and not 0 < args.test_fraction < 1:
        raise SplitError(f"--test-fraction must be in (0, 1), got {args.test_fraction}")
    outs = [o for o in (args.out, args.unlabeled_out, args.test_out) if o]
    if len({os.path.abspath(o) for o in outs}) < len(outs):
        raise SplitError(f"--out, --unlabeled-out and --test-out must be different files, got {outs}")
    for o in outs:
        if os.path.isdir(o):
            raise SplitError(f"output {o} is a folder; give a file name")


def _make(args: argparse.Namespace) -> int:
    _check_make_args(args)
    pool, test = _load_pool(args)
    if args.test_fraction is not None:
        pool, test = make_group_split(pool, args.test_fraction, args.seed)
    if args.test_out and test is None:
        raise SplitError("--test-out: this dataset folder has no official test list (validate.csv); use --test-fraction")
    labeled = make_labeled_split(pool, per_class=args.per_class, percent=args.percent, seed=args.seed)
    unlabeled = pool.without(labeled)
    # Every list is formatted (and so checked) before the first one is written.
    outputs = [(args.out, labeled)]
    if args.unlabeled_out:
        outputs.append((args.unlabeled_out, unlabeled))
    if args.test_out:
        outputs.append((args.test_out, test))
    texts = [(path, format_list(ix)) for path, ix in outputs]
    from ssvar.fileio import atomic_write_text

    for path, text in texts:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, text)
    written = [path for path, _ in texts]
    report = verify_split(labeled, unlabeled, test, index=pool, num_classes=pool.num_classes)
    print(f"pool: {len(pool)} videos, {pool.num_classes} classes (seed {args.seed})")
    print(report.format())
    print("wrote " + ", ".join(written))
    return 0 if report.ok else 1


def _verify(args: argparse.Namespace) -> int:
    classes = read_class_names(args.classes) if args.classes else None

    def load(path: str | None) -> VideoIndex | None:
        return read_list(path, classes=classes) if path else None

    labeled, unlabeled, test, train = (load(p) for p in (args.labeled, args.unlabeled, args.test, args.train))
    if classes is None:
        # each list names only the classes it holds; use the most complete one for all
        widest = max((ix for ix in (train, labeled, unlabeled, test) if ix is not None), key=lambda ix: ix.num_classes)
        for ix in (labeled, unlabeled, test, train):
            if ix is not None:
                ix.classes = list(widest.classes)
    report = verify_split(labeled, unlabeled, test, index=train, num_classes=args.num_classes, labeled_in_unlabeled=args.labeled_in_unlabeled)
    print(report.format(verbose=args.verbose))
    return 0 if report.ok else 1


def splits_main(argv: list[str]) -> int:
    """``ssvar splits make|verify ...``; returns the exit status (1 on errors)."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as e:  # argparse exits on --help and on usage errors
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    try:
        return _make(args) if args.command == "make" else _verify(args)
    except SplitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
