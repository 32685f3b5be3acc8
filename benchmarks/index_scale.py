"""Kinetics-scale index: data module setup time, labelled/unlabelled split time, the file check, and
memory per loader worker after an epoch over the index.

A Kinetics-700-sized list (600,000 entries, 700 classes) is generated; no video is decoded
(``check_files`` off), so the figures are the index's own cost. With ``--files`` the file check
also runs for real over a folder of 600,000 empty files.

Per-worker memory: a user with 8 GPUs and 10 workers each runs 80 loader processes, so what
matters is the memory each worker makes private over an epoch (USS = private clean + dirty pages,
from ``/proc/<pid>/smaps_rollup``). Python objects (lists of records and strings) are copied into
each worker page by page as their reference counts are touched ("copy-on-read"); numpy arrays are
not.

    nice -n 10 python benchmarks/index_scale.py --entries 600000 --workers 4 [--files]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np
import torch
from torch.utils.data import DataLoader, RandomSampler

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ssvar.data.datamodule import Kinetics400DataModule  # noqa: E402
from ssvar.data.dataset import VideoDataset, ViewSpec  # noqa: E402


def write_lists(folder: str, entries: int, classes: int, val_entries: int) -> tuple[str, str]:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, classes, entries + val_entries)
    train = os.path.join(folder, "train.txt")
    val = os.path.join(folder, "val.txt")
    with open(train, "w") as f:
        f.writelines(
            f"class_{y:03d}/{i:07d}_yt-{i * 7919 % 10**9:09d}_000010_000020.mp4 {y}\n"
            for i, y in enumerate(labels[:entries])
        )
    with open(val, "w") as f:
        f.writelines(f"class_{y:03d}/v{i:07d}.mp4 {y}\n" for i, y in enumerate(labels[entries:]))
    return train, val


def uss_mb(pid: int) -> float:
    """Private (unique) memory of a process in MB."""
    fields = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2 and parts[0].endswith(":"):
                fields[parts[0][:-1]] = int(parts[1])
    return (fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)) / 1024


class IndexOnly(VideoDataset):
    """The real dataset with decoding replaced by reading the sample's index entry."""

    def _load(self, i: int) -> dict:
        return {"index": i, "path_len": len(self.path(i))}


def worker_memory(ds: VideoDataset, workers: int, batch_size: int) -> dict:
    loader = DataLoader(
        ds,
        batch_size=batch_size,
        sampler=RandomSampler(ds, generator=torch.Generator().manual_seed(0)),
        num_workers=workers,
        persistent_workers=True,
    )
    it = iter(loader)
    next(it)
    pids = [w.pid for w in it._workers]
    start = [uss_mb(p) for p in pids]
    n = 1
    for _ in it:
        n += 1
    end = [uss_mb(p) for p in pids]
    del it, loader
    return {"batches": n, "uss_start_mb": [round(x, 1) for x in start], "uss_end_mb": [round(x, 1) for x in end],
            "growth_mb_per_worker": round(float(np.mean(np.subtract(end, start))), 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--entries", type=int, default=600_000)
    p.add_argument("--classes", type=int, default=700)
    p.add_argument("--val-entries", type=int, default=35_000)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--files", action="store_true", help="also check a folder of as many empty files")
    p.add_argument("--out", default=None, help="write the figures as JSON here")
    args = p.parse_args()
    torch.set_num_threads(1)
    tmp = tempfile.mkdtemp(prefix="ssvar_index_scale_")
    try:
        t0 = time.perf_counter()
        train, val = write_lists(tmp, args.entries, args.classes, args.val_entries)
        out: dict = {
            "entries": args.entries,
            "classes": args.classes,
            "list_write_s": round(time.perf_counter() - t0, 2),
        }

        dm = Kinetics400DataModule(
            os.path.join(tmp, "videos"), train, val, labeled_percent=1.0, check_files=False, num_workers=args.workers
        )
        t0, c0 = time.perf_counter(), time.process_time()
        dm.setup("fit")
        out["setup_s"] = round(time.perf_counter() - t0, 2)
        out["setup_cpu_s"] = round(time.process_time() - c0, 2)  # wall time varies on a shared machine
        sp = dm.splits
        out["labeled"], out["unlabeled"] = len(sp.labeled), len(sp.unlabeled)

        from ssvar.data import splits as S

        train_ix = S.read_list(train, label_base=0)
        t0, c0 = time.perf_counter(), time.process_time()
        lab = S.make_labeled_split(train_ix, percent=1.0, seed=0)
        unl = train_ix.without(lab)
        out["split_s"] = round(time.perf_counter() - t0, 2)
        out["split_cpu_s"] = round(time.process_time() - c0, 2)
        assert len(unl) == args.entries - len(lab)

        if args.files:
            root = os.path.join(tmp, "videos")
            t0 = time.perf_counter()
            for r in train_ix.records + sp.val.records:
                full = os.path.join(root, r.path)
                os.makedirs(os.path.dirname(full), exist_ok=True)
                open(full, "wb").close()
            out["make_files_s"] = round(time.perf_counter() - t0, 1)
            dm_files = Kinetics400DataModule(root, train, val, labeled_percent=1.0, check_files=True)
            t0, c0 = time.perf_counter(), time.process_time()
            dm_files.setup("fit")
            out["setup_with_file_check_s"] = round(time.perf_counter() - t0, 2)
            out["setup_with_file_check_cpu_s"] = round(time.process_time() - c0, 2)

        ds = IndexOnly(dm.root, sp.unlabeled, {"weak": ViewSpec("weak")}, train=True)
        parent = uss_mb(os.getpid())
        out["parent_uss_mb"] = round(parent, 1)
        out["workers"] = args.workers
        out.update(worker_memory(ds, args.workers, args.batch_size))
        print(json.dumps(out, indent=2))
        if args.out:
            with open(args.out, "w") as f:
                json.dump(out, f, indent=2)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
