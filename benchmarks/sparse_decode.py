"""Sparse decoding: decode-only CPU time of ssvar's ``PyAVDecoder`` with and without
``skip_nonref`` against the decode-only bound of ``benchmarks/data_throughput.py``.

Same clips for all three (8 x 8 by default, seeded random positions, ssvar's sampler), one
thread, frames converted to rgb24 at short side 128, no augmentation. Every sparse clip is
checked to be bit-identical to the full decode (the run stops on the first difference).

    python benchmarks/sparse_decode.py                       # every 5th video of surv_fight, 2 repeats
    python benchmarks/sparse_decode.py --root /tmp/surv_fight_128
    python benchmarks/sparse_decode.py --gop-aware-shift 2   # also: sparse on GOP-shifted clips

With ``--gop-aware-shift N`` a fourth column decodes each clip moved by the GOP-aware sampler
(``VideoDataset(gop_aware_shift=N)``), its frame types read by the decoder from the packets
of the open file on a video's first visit (cached per worker in training, as here), and
checked bit-identical to a full decode of the shifted indices; the bound stays the bound of the
unshifted clip (as defined before the option).

A benchmark, not a test: prints the figures; exits 0 unless a sparse clip differs.
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_ROOT = HERE.parents[1] / "shared" / "data" / "surv_fight"


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default=str(DEFAULT_ROOT))
    p.add_argument("--every", type=int, default=5, help="take every n-th video of the sorted tree")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--stride", type=int, default=8)
    p.add_argument("--short-side", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--gop-aware-shift", type=int, default=0, help="also time the GOP-aware sampler (max frames moved)")
    args = p.parse_args(argv)

    import numpy as np
    import torch

    torch.set_num_threads(1)
    spec = importlib.util.spec_from_file_location("data_throughput_bench", HERE / "data_throughput.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    from ssvar.data.decode import PyAVDecoder, resized_shape
    from ssvar.data.sampling import clip_indices, gop_aware_shift, random_centre
    from ssvar.data.splits import read_folder_tree

    index = read_folder_tree(args.root)
    paths = [str(Path(args.root) / r.path) for r in index.records][:: args.every]
    rng = np.random.default_rng(args.seed)
    span = (args.frames - 1) * args.stride + 1
    probe = PyAVDecoder()
    plans = []
    for path in paths:
        info = probe.probe(path)
        idx = clip_indices(info.num_frames, args.frames, args.stride, random_centre(info.num_frames, span, rng))
        plans.append((path, idx, *resized_shape(info.width, info.height, args.short_side)))
    decoders = {"full": PyAVDecoder(skip_nonref=False), "sparse": PyAVDecoder(skip_nonref=True)}
    cpu = {"bound": 0.0, "full": 0.0, "sparse": 0.0, "shifted": 0.0, "shifted bound": 0.0}
    refs: dict = {}
    shifts: list[int] = []
    for _ in range(args.repeats):
        for path, idx, w, h in plans:
            c0 = time.process_time()
            bench.decode_bound(path, idx, w, h)
            cpu["bound"] += time.process_time() - c0
            out = {}
            for name, dec in decoders.items():
                c0 = time.process_time()
                out[name] = dec.decode(path, lambda info: idx, args.short_side)[0]
                cpu[name] += time.process_time() - c0
            if not torch.equal(out["full"], out["sparse"]):
                raise SystemExit(f"sparse decoding differs from the full decode on {path} (frames {idx.tolist()})")
            if args.gop_aware_shift:
                chosen = {}

                def plan(info, path=path, idx=idx):  # as VideoDataset(gop_aware_shift=N) plans
                    r = refs[path]
                    chosen["s"] = gop_aware_shift(idx, info.num_frames, r.is_ref, r.keyframes, args.gop_aware_shift)
                    return idx + chosen["s"]

                c0 = time.process_time()
                shifted = decoders["sparse"].decode(path, plan, args.short_side, references=refs)[0]
                cpu["shifted"] += time.process_time() - c0
                s = chosen["s"]
                moved = idx + s
                c0 = time.process_time()
                bench.decode_bound(path, moved, w, h)
                cpu["shifted bound"] += time.process_time() - c0
                shifts.append(s)
                if not torch.equal(shifted, decoders["full"].decode(path, lambda info: moved, args.short_side)[0]):
                    raise SystemExit(
                        f"shifted sparse decoding differs from the full decode on {path} (frames {moved.tolist()})"
                    )
    n = args.repeats * len(plans)
    ms = {k: 1000 * v / n for k, v in cpu.items()}
    print(
        f"{len(plans)} videos x {args.repeats} repeats, {args.frames}x{args.stride} clips, short side "
        f"{args.short_side}; "
        f"CPU ms per clip: bound {ms['bound']:.1f}, ssvar full {ms['full']:.1f}, ssvar sparse {ms['sparse']:.1f}; "
        f"bound / sparse = {ms['bound'] / ms['sparse']:.2f}x, full / sparse = {ms['full'] / ms['sparse']:.2f}x; "
        "every sparse clip bit-identical to the full decode"
    )
    if args.gop_aware_shift:
        moved = sum(1 for s in shifts if s)
        print(f"GOP-aware shift <= {args.gop_aware_shift}: sparse on shifted clips {ms['shifted']:.1f} ms per clip "
              f"(probe included); bound (unshifted) / shifted sparse = {ms['bound'] / ms['shifted']:.2f}x, "
              f"bound of the shifted clips {ms['shifted bound']:.1f} ms ({ms['shifted bound'] / ms['shifted']:.2f}x); "
              f"{moved} of {len(shifts)} clips moved, mean |shift| {sum(map(abs, shifts)) / len(shifts):.2f}; "
              "every shifted clip bit-identical to the full decode of the shifted indices")
    return ms


if __name__ == "__main__":
    main()
