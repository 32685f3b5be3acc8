"""Read the split lists of video datasets.

Parsers turn every list format in use (official UCF101/HMDB51 splits, MMAction2 video and
raw-frame lists, SVFormer ``.csv``, Kinetics-400 annotation CSV, folder-per-class trees) into
a :class:`~ssvar.data.index.VideoIndex` whose labels are 0-based and whose records remember
``"file:line"``. :mod:`ssvar.data.splits` draws and checks splits from them.
"""

from __future__ import annotations

import csv
import os
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Literal

from ssvar.data.index import VIDEO_EXTENSIONS, SplitError, VideoIndex, VideoRecord, path_key

__all__ = [
    "OFFICIAL_DATASETS",
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
            raise SplitError(
                f"{_origin(path, 1)}: header needs 'path' and 'group' or 'source_group' columns, got {header}"
            )
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
            files += [
                f"{rel}/{n}" for n in filenames if not n.startswith(".") and os.path.splitext(n)[1].lower() in exts
            ]
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


OFFICIAL_DATASETS = ("ucf101", "hmdb51", "kinetics400")


def read_official_split(dataset: str, splits_dir: PathLike, split: int = 1) -> tuple[VideoIndex, VideoIndex | None]:
    """``(train, test)`` of an official split in ``splits_dir``: UCF101's ``classInd.txt`` and
    ``trainlistNN.txt``/``testlistNN.txt``, HMDB51's ``*_test_splitN.txt``, or Kinetics-400's
    ``train.csv`` and ``validate.csv`` (or ``val.csv``; test None when neither exists).
    ``split`` numbers the UCF101/HMDB51 splits (1-3); Kinetics-400 has one."""
    d = Path(splits_dir)
    if dataset == "ucf101":
        classind = d / "classInd.txt"
        train = read_ucf101_list(d / f"trainlist{split:02d}.txt", classind)
        return train, read_ucf101_list(d / f"testlist{split:02d}.txt", classind)
    if dataset == "hmdb51":
        train, test, _ = read_hmdb51_split(d, split)
        return train, test
    if dataset != "kinetics400":
        raise ValueError(f"dataset must be one of {', '.join(OFFICIAL_DATASETS)}, got {dataset!r}")
    train = read_kinetics_csv(d / "train.csv")
    val = next((d / n for n in ("validate.csv", "val.csv") if (d / n).exists()), None)
    return train, read_kinetics_csv(val, classes=train.classes) if val else None
