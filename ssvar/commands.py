"""The argument parsing of the ``ssvar`` subcommands that are not LightningCLI's.

Each ``*_main(argv)`` parses the arguments after the command name, calls the library (which
knows nothing of ``argparse``) and returns the exit status; :data:`ssvar.cli.COMMANDS` names
them. Library modules are imported inside each command, so ``ssvar splits`` and
``ssvar check-videos`` start without torch or Lightning.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

__all__ = ["check_videos_main", "configs_main", "predict_videos_main", "prepare_videos_main", "splits_main"]


# --------------------------------------------------------------------------- ssvar splits


def _splits_parser() -> argparse.ArgumentParser:
    from ssvar.data.lists import OFFICIAL_DATASETS

    parser = argparse.ArgumentParser(prog="ssvar splits", description="Make and check semi-supervised split lists.")
    sub = parser.add_subparsers(dest="command", required=True)

    make = sub.add_parser("make", help="draw a class-balanced labelled list (and a group-disjoint test list)")
    src = make.add_mutually_exclusive_group(required=True)
    src.add_argument("--root", help="folder-per-class video tree")
    src.add_argument("--list", help="train list file (path [frames] label)")
    src.add_argument("--dataset", choices=list(OFFICIAL_DATASETS), help="official split files in --splits-dir")
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


def _load_pool(args: argparse.Namespace):
    """The train pool and, for official splits, the official test list."""
    from ssvar.data import lists
    from ssvar.data.index import SplitError

    if args.root:
        return lists.read_folder_tree(args.root, groups_csv=args.groups, progress=True), None
    if args.list:
        classes = lists.read_class_names(args.classes) if args.classes else None
        return lists.read_list(args.list, classes=classes), None
    if not args.splits_dir:
        raise SplitError("--dataset needs --splits-dir")
    return lists.read_official_split(args.dataset, args.splits_dir, args.split)


def _check_make_args(args: argparse.Namespace) -> None:
    """Everything that can be checked before reading or writing anything."""
    from ssvar.data.index import SplitError

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


def _splits_make(args: argparse.Namespace) -> int:
    from ssvar.data import splits as S
    from ssvar.fileio import atomic_write_text

    _check_make_args(args)
    pool, test = _load_pool(args)
    if args.test_fraction is not None:
        pool, test = S.make_group_split(pool, args.test_fraction, args.seed)
    if args.test_out and test is None:
        raise S.SplitError(
            "--test-out: this dataset folder has no official test list (validate.csv); use --test-fraction"
        )
    labeled = S.make_labeled_split(pool, per_class=args.per_class, percent=args.percent, seed=args.seed)
    unlabeled = pool.without(labeled)
    # Every list is formatted (and so checked) before the first one is written.
    outputs = [(args.out, labeled)]
    if args.unlabeled_out:
        outputs.append((args.unlabeled_out, unlabeled))
    if args.test_out:
        outputs.append((args.test_out, test))
    texts = [(path, S.format_list(ix)) for path, ix in outputs]
    for path, text in texts:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, text)
    written = [path for path, _ in texts]
    report = S.verify_split(labeled, unlabeled, test, index=pool, num_classes=pool.num_classes)
    print(f"pool: {len(pool)} videos, {pool.num_classes} classes (seed {args.seed})")
    print(report.format())
    print("wrote " + ", ".join(written))
    return 0 if report.ok else 1


def _splits_verify(args: argparse.Namespace) -> int:
    from ssvar.data import splits as S

    classes = S.read_class_names(args.classes) if args.classes else None

    def load(path: str | None):
        return S.read_list(path, classes=classes) if path else None

    labeled, unlabeled, test, train = (load(p) for p in (args.labeled, args.unlabeled, args.test, args.train))
    if classes is None:
        # each list names only the classes it holds; use the most complete one for all
        given = [ix for ix in (train, labeled, unlabeled, test) if ix is not None]
        widest = max(given, key=lambda ix: ix.num_classes)
        for ix in given:
            ix.classes = list(widest.classes)
    report = S.verify_split(
        labeled, unlabeled, test, index=train, num_classes=args.num_classes,
        labeled_in_unlabeled=args.labeled_in_unlabeled,
    )
    print(report.format(verbose=args.verbose))
    return 0 if report.ok else 1


def splits_main(argv: list[str]) -> int:
    """``ssvar splits make|verify ...``; returns the exit status (1 on errors)."""
    from ssvar.data.index import SplitError

    try:
        args = _splits_parser().parse_args(argv)
    except SystemExit as e:  # argparse exits on --help and on usage errors
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    try:
        return _splits_make(args) if args.command == "make" else _splits_verify(args)
    except SplitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


# --------------------------------------------------------------------------- ssvar check-videos


def check_videos_main(argv: list[str]) -> int:
    """``ssvar check-videos ROOT``: exit status 1 when any video is bad."""
    from dataclasses import asdict

    from ssvar.data.check import check_videos, find_videos

    p = argparse.ArgumentParser(
        prog="ssvar check-videos", description="Find unreadable or too-short videos before training."
    )
    p.add_argument("root", help="folder to scan recursively for video files")
    p.add_argument("--min-frames", type=int, default=8, help="videos with fewer frames are reported (default 8)")
    p.add_argument("--quick", action="store_true", help="decode only the first frame (misses truncated files)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--all-extensions", action="store_true", help="check every file, not only video extensions")
    p.add_argument("--json", action="store_true", help="print one JSON object per bad file")
    args = p.parse_args(argv)
    if not os.path.isdir(args.root):
        p.error(f"not a directory: {args.root}")
    if args.all_extensions:
        paths = [os.path.join(d, f) for d, _, fs in os.walk(args.root) for f in sorted(fs)]
    else:
        paths = find_videos(args.root)
    results = check_videos(paths, args.min_frames, full=not args.quick, workers=args.workers)
    bad = [r for r in results if not r.ok]
    for r in bad:
        print(json.dumps(asdict(r)) if args.json else f"BAD  {os.path.relpath(r.path, args.root)}: {r.problem}")
    print(f"{len(results)} videos checked, {len(bad)} bad", file=sys.stderr if args.json else sys.stdout)
    return 1 if bad else 0


# --------------------------------------------------------------------------- ssvar prepare-videos


def prepare_videos_main(argv: list[str]) -> int:
    """``ssvar prepare-videos SRC DST``: exit status 1 when any video failed, 130 when interrupted."""
    from ssvar.data.prepare import MANIFEST, PrepareSettings, prepare_videos

    d = PrepareSettings()
    p = argparse.ArgumentParser(
        prog="ssvar prepare-videos",
        description="re-encode a dataset once so that training decodes it fast.",
        epilog="Train on DST with the same split files (or the rewritten ones in DST) and "
               "short_side no larger than --short-side.")
    p.add_argument("src", help="dataset root (videos anywhere below it; list paths are relative to it)")
    p.add_argument("dst", help="output root (created); same relative paths, extension .mp4")
    p.add_argument("--list", action="append", dest="lists", metavar="FILE",
                   help="prepare only the videos this split list names ('path [label]' lines, relative to SRC); "
                        "repeatable; each list is written to DST with paths ending in .mp4")
    p.add_argument("--short-side", type=int, default=d.short_side,
                   help=f"output short side in pixels, never upscaled (default {d.short_side})")
    p.add_argument("--gop", type=int, default=d.gop, help=f"a keyframe every GOP frames (default {d.gop})")
    p.add_argument("--crf", type=int, default=d.crf, help=f"x264 quality, lower is better (default {d.crf})")
    p.add_argument("--preset", default=d.preset, help=f"x264 preset (default {d.preset})")
    p.add_argument("--tune", default=d.tune, help=f"x264 tune, '' for none (default {d.tune}: faster decoding)")
    p.add_argument("--bframes", type=int, default=d.bframes, help=f"x264 B-frames (default {d.bframes})")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes (default: all CPUs)")
    p.add_argument("--overwrite", action="store_true", help="redo every video, even those a previous run finished")
    p.add_argument("--no-copy-other", action="store_true", help="do not copy non-video files (notes, CSVs) of the tree")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    try:
        settings = PrepareSettings(short_side=args.short_side, gop=args.gop, crf=args.crf, preset=args.preset,
                                   tune=args.tune, bframes=args.bframes)
        for lp in args.lists or []:
            if not os.path.isfile(lp):
                p.error(f"--list: no such file: {lp}")
        results = prepare_videos(args.src, args.dst, settings, args.lists, args.workers, args.overwrite,
                                 not args.no_copy_other, not args.quiet)
    except (ValueError, OSError) as e:
        p.error(str(e))
    except KeyboardInterrupt:
        print("interrupted: finished videos are kept; run the same command again to resume", file=sys.stderr)
        return 130
    bad = [r for r in results.values() if r.status == "failed"]
    for r in sorted(bad, key=lambda r: r.source):
        print(f"FAILED  {r.source}: {r.problem}")
    done = sum(r.status == "done" for r in results.values())
    skipped = sum(r.status == "skipped" for r in results.values())
    cpu = sum(r.cpu_seconds for r in results.values() if r.status == "done")
    per = f", {cpu / done:.2f} s CPU per video" if done else ""
    print(f"{len(results)} videos: {done} prepared, {skipped} skipped (done before), {len(bad)} failed{per}; "
          f"manifest {os.path.join(args.dst, MANIFEST)}")
    return 1 if bad else 0


# --------------------------------------------------------------------------- ssvar predict-videos


def predict_videos_main(argv: list[str]) -> int:
    """``ssvar predict-videos --ckpt CKPT VIDEO...``: exit status 1 when a video could not be read,
    2 when the checkpoint cannot be used."""
    import torch

    from ssvar.predict import find_video_files, format_table, load_model, predict_videos

    p = argparse.ArgumentParser(
        prog="ssvar predict-videos",
        description="Top-k classes of video files (or folders of videos) from a checkpoint of any ssvar method.",
        epilog="`ssvar predict --config X.yaml --ckpt_path CKPT` predicts a data module's test list instead "
               "(to predictions.csv).",
    )
    p.add_argument("videos", nargs="+", help="video files and/or folders (searched recursively)")
    p.add_argument("--ckpt", "--ckpt_path", dest="ckpt", required=True,
                   help="checkpoint written by `ssvar fit` (or Lightning)")
    p.add_argument("--top-k", type=int, default=5, help="classes to show per video (default 5)")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.add_argument("--clips", type=int, help="clips per video (default: the test clips saved in the checkpoint)")
    p.add_argument("--crops", type=int, choices=(1, 3), help="crops per clip (default: from the checkpoint)")
    p.add_argument("--num-frames", type=int, help="frames per clip (default: from the checkpoint)")
    p.add_argument("--stride", type=int, help="frame stride (default: from the checkpoint)")
    p.add_argument("--crop-size", type=int, help="crop side in pixels (default: from the checkpoint)")
    p.add_argument("--model-config", help="YAML with a `model:` section, for checkpoints trained from Python")
    p.add_argument("--decoder", choices=("pyav", "torchcodec"), default="pyav")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)
    videos = find_video_files(args.videos)
    if not videos:
        p.error(f"no video files in {args.videos}")
    model_config = None
    if args.model_config:
        from ssvar.config_files import ConfigError, load_config

        try:  # a recipe made of fragments has its model in one of them
            model_config = load_config(args.model_config).get("model")
        except (OSError, ConfigError) as e:
            p.error(str(e))
        if not model_config:
            p.error(f"{args.model_config} has no `model:` section")
    try:
        model = load_model(args.ckpt, model_config=model_config)
    except (ValueError, RuntimeError, FileNotFoundError) as e:  # CheckpointError is a ValueError
        print(f"ssvar predict-videos: {e}", file=sys.stderr)
        return 2
    preds = predict_videos(
        model, videos, top_k=args.top_k, clips=args.clips, crops=args.crops, num_frames=args.num_frames,
        stride=args.stride, crop_size=args.crop_size, decoder=args.decoder, device=args.device, progress=True,
    )
    if args.format == "json":
        print(json.dumps([pr.as_dict() for pr in preds], indent=2))
    else:
        print(format_table(preds))
    return 1 if any(pr.error for pr in preds) else 0


# --------------------------------------------------------------------------- ssvar configs


def configs_main(argv: list[str]) -> int:
    """``ssvar configs list|copy|path``."""

    from ssvar.config_files import ConfigError, config_dir, config_path, describe_config, list_configs, self_contained

    p = argparse.ArgumentParser(
        prog="ssvar configs", description="The configs shipped with ssvar, usable by name (`--config demo`)."
    )
    sub = p.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("list", help="list the shipped configs with their first comment line")
    ls.add_argument("pattern", nargs="?", default="", help="only names containing this text")
    ls.add_argument("--paths", action="store_true", help="print the files' paths instead")
    cp = sub.add_parser("copy", help="copy a shipped config out to edit it")
    cp.add_argument("name", help="a shipped config name, e.g. demo or methods/fixmatch")
    cp.add_argument("dest", nargs="?", default=".", help="file or folder (default: the current folder)")
    cp.add_argument("--force", action="store_true", help="overwrite an existing file")
    ph = sub.add_parser("path", help="print the file of a shipped config")
    ph.add_argument("name")
    args = p.parse_args(argv)
    try:
        if args.command == "list":
            names = [n for n in list_configs() if args.pattern in n]
            width = max((len(n) for n in names), default=0) + 2
            for n in names:
                path = config_dir() / f"{n}.yaml"
                print(str(path) if args.paths else f"{n:<{width}}{describe_config(path)}".rstrip())
            return 0
        src = config_path(args.name)
        if args.command == "path":
            print(src)
            return 0
        dest = Path(args.dest)
        if dest.is_dir() or args.dest.endswith(("/", os.sep)):
            dest = dest / src.name
        if dest.exists() and not args.force:
            print(f"ssvar configs: {dest} exists; use --force to overwrite", file=sys.stderr)
            return 2
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(self_contained(src), encoding="utf-8")  # fragments merged in: works outside the package
        print(f"copied {args.name} to {dest}")
        return 0
    except (FileNotFoundError, ConfigError) as e:
        print(f"ssvar configs: {e}", file=sys.stderr)
        return 2
