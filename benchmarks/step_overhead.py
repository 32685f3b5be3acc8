"""Step-time overhead of a method: a real Lightning training step vs the passes it must do.

For FixMatch a step must do: a no-grad forward of the weak unlabelled batch (student or EMA
teacher), forward + backward of the labelled and the strong unlabelled batch (two passes, as
FixMatch's default; one concatenated pass with ``--joint``, as ``joint_forward=True``), and an
optimiser step (plus an EMA update with a teacher). This script times

* ``bare``: exactly those passes in a plain PyTorch loop (same backbone, same batches);
* ``step``: the method's training step run by a Lightning ``Trainer`` (loss bookkeeping,
  pseudo-label monitoring, logging, EMA update), timed from batch start to batch end with the
  batch already in memory, so data loading is excluded from both.

For ActNetFormer (``--method actnetformer``) a step must do: one forward + backward of the primary
network over the labelled, weak and strong clips together, the same for the auxiliary network on
its (higher frame rate) clips, the two projection heads and the NT-Xent loss on the weak clips,
the cross pseudo-label losses, and one optimiser step over both networks. ``bare`` does exactly
that in plain PyTorch; ``step`` is the Lightning step of :class:`ssvar.methods.ActNetFormer`.

Target: step / bare <= 1.15. Usage::

    python benchmarks/step_overhead.py --backbone tiny3d --batch 8 --mu 1 --steps 30
    python benchmarks/step_overhead.py --backbone r3d18 --frames 8 --size 112 --batch 4 --teacher ema
    python benchmarks/step_overhead.py --method actnetformer --backbone tiny3d --aux tinyvit --batch 4 --mu 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from ssvar.components import EMATeacher
from ssvar.methods import ActNetFormer, FixMatch
from ssvar.models import R3D18, SlowOnlyR50, TimeSformer, Tiny3D


class _FixedBatches(Dataset):
    """The same pre-built batch at every index (no decoding, no augmentation)."""

    def __init__(self, batch: dict, n: int):
        self.batch, self.n = batch, n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return self.batch


class _Timer(L.Callback):
    def __init__(self):
        self.times: list[float] = []
        self._t = 0.0

    def on_train_batch_start(self, *a):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self._t = time.perf_counter()

    def on_train_batch_end(self, *a):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.times.append(time.perf_counter() - self._t)


def make_backbone(name: str):
    return {"tiny3d": lambda: Tiny3D(width=16), "r3d18": R3D18, "slowonly_r50": SlowOnlyR50}[name]()


def make_aux(name: str, size: int, frames: int):
    """The auxiliary network of ActNetFormer: a tiny TimeSformer (CPU) or ViT-S (the paper's)."""
    if name == "tinyvit":  # as examples/configs/methods/actnetformer.yaml
        return TimeSformer(None, embed_dim=64, depth=2, num_heads=4, patch_size=16, img_size=size, num_frames=frames)
    return TimeSformer("vit_s", img_size=size, num_frames=frames)


def make_batch(b: int, mu: int, t: int, s: int, k: int, aux: bool = False) -> dict:
    g = torch.Generator().manual_seed(0)

    def clip(n):
        return torch.randint(0, 256, (n, 3, t, s, s), dtype=torch.uint8, generator=g)

    batch = {
        "labeled": {"weak": clip(b), "label": torch.randint(0, k, (b,), generator=g), "index": torch.arange(b)},
        "unlabeled": {
            "weak": clip(b * mu),
            "strong": clip(b * mu),
            "label": torch.full((b * mu,), -1),
            "hidden_label": torch.randint(0, k, (b * mu,), generator=g),
            "index": torch.arange(b * mu),
        },
    }
    if aux:  # ActNetFormer: the auxiliary network's clips (same length here: the cost is what matters)
        batch["labeled"]["weak_aux"] = clip(b)
        batch["unlabeled"]["weak_aux"], batch["unlabeled"]["strong_aux"] = clip(b * mu), clip(b * mu)
    return batch


def time_step(args, batch) -> list[float]:
    L.seed_everything(0)
    if args.method == "actnetformer":
        model = ActNetFormer(
            make_backbone(args.backbone),
            num_classes=args.classes,
            aux_backbone=make_aux(args.aux, args.size, args.frames),
            threshold=0.0,
            lr=0.01,
            momentum=0.9,
            nesterov=True,
            weight_decay=5e-4,
        )
    else:
        teacher = EMATeacher(0.99) if args.teacher == "ema" else None
        model = FixMatch(
            make_backbone(args.backbone),
            num_classes=args.classes,
            threshold=0.0,
            teacher=teacher,
            lr=0.01,
            joint_forward=args.joint,
        )
    loader = DataLoader(_FixedBatches(batch, args.steps + args.warmup), batch_size=None, shuffle=False)
    timer = _Timer()
    trainer = L.Trainer(
        accelerator=args.accelerator,
        devices=1,
        precision=args.precision,
        max_steps=args.steps + args.warmup,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[timer],
    )
    trainer.fit(model, train_dataloaders=loader)
    return timer.times[args.warmup :]


def time_bare(args, batch) -> list[float]:
    """The passes FixMatch must do, with nothing else."""
    L.seed_everything(0)
    dev = torch.device("cuda" if args.accelerator == "gpu" else "cpu")
    net = torch.nn.Sequential()
    backbone = make_backbone(args.backbone)
    head = torch.nn.Linear(backbone.feature_dim, args.classes)
    net = torch.nn.ModuleDict({"backbone": backbone, "head": head}).to(dev)
    teacher = None
    if args.teacher == "ema":
        import copy

        teacher = copy.deepcopy(net).eval()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    mean = torch.tensor([0.485, 0.456, 0.406], device=dev).view(-1, 1, 1, 1) * 255
    std = torch.tensor([0.229, 0.224, 0.225], device=dev).view(-1, 1, 1, 1) * 255
    amp = (
        torch.autocast(dev.type, dtype=torch.bfloat16)
        if args.precision == "bf16-mixed"
        else torch.autocast(dev.type, enabled=False)
    )

    def fwd(m, x):
        return m["head"](m["backbone"](x))

    times = []
    for _ in range(args.steps + args.warmup):
        # Transfer and normalisation stay outside the timer, as in the Lightning run (there
        # they happen in on_after_batch_transfer, before on_train_batch_start).
        xl = (batch["labeled"]["weak"].to(dev).float() - mean) / std
        xw = (batch["unlabeled"]["weak"].to(dev).float() - mean) / std
        xs = (batch["unlabeled"]["strong"].to(dev).float() - mean) / std
        y = batch["labeled"]["label"].to(dev)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with amp:
            with torch.no_grad():
                pw = fwd(teacher or net, xw).softmax(1)
            if args.joint:
                ll, ls = fwd(net, torch.cat([xl, xs])).split([xl.shape[0], xs.shape[0]])
            else:
                ll, ls = fwd(net, xl), fwd(net, xs)
            loss = F.cross_entropy(ll, y) + F.cross_entropy(ls, pw.argmax(1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if teacher is not None:
            with torch.no_grad():
                for pt, ps in zip(teacher.parameters(), net.parameters()):
                    pt.mul_(0.99).add_(ps, alpha=0.01)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return times[args.warmup :]


def time_bare_actnetformer(args, batch) -> list[float]:
    """The passes ActNetFormer must do, with nothing else (threshold 0: every pseudo-label counts)."""
    L.seed_everything(0)
    dev = torch.device("cuda" if args.accelerator == "gpu" else "cpu")
    z_net, a_net = make_backbone(args.backbone), make_aux(args.aux, args.size, args.frames)
    k = args.classes

    def proj(d):
        return torch.nn.Sequential(
            torch.nn.Linear(d, 512, bias=False), torch.nn.BatchNorm1d(512), torch.nn.ReLU(), torch.nn.Linear(512, 128)
        )

    net = torch.nn.ModuleDict({
        "z": z_net, "z_head": torch.nn.Linear(z_net.feature_dim, k), "z_proj": proj(z_net.feature_dim),
        "a": a_net, "a_head": torch.nn.Linear(a_net.feature_dim, k), "a_proj": proj(a_net.feature_dim),
    }).to(dev)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    mean = torch.tensor([0.485, 0.456, 0.406], device=dev).view(-1, 1, 1, 1) * 255
    std = torch.tensor([0.229, 0.224, 0.225], device=dev).view(-1, 1, 1, 1) * 255
    amp = (
        torch.autocast(dev.type, dtype=torch.bfloat16)
        if args.precision == "bf16-mixed"
        else torch.autocast(dev.type, enabled=False)
    )
    lab, unl = batch["labeled"], batch["unlabeled"]
    bl, bu = lab["weak"].shape[0], unl["weak"].shape[0]

    def nt_xent(h1, h2, t=0.1):
        h = F.normalize(torch.cat([h1, h2]).float(), dim=1)
        n = h1.shape[0]
        sim = (h @ h.t() / t).fill_diagonal_(float("-inf"))
        return F.cross_entropy(sim, torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(h.device))

    times = []
    for _ in range(args.steps + args.warmup):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        norm = lambda x: (x.to(dev).float() - mean) / std  # noqa: E731
        xz = torch.cat([norm(lab["weak"]), norm(unl["weak"]), norm(unl["strong"])])
        xa = torch.cat([norm(lab["weak_aux"]), norm(unl["weak_aux"]), norm(unl["strong_aux"])])
        y = lab["label"].to(dev)
        with amp:
            fz, fa = net["z"](xz), net["a"](xa)
            z, a = net["z_head"](fz), net["a_head"](fa)
            w, s_ = slice(bl, bl + bu), slice(bl + bu, bl + 2 * bu)
            loss = F.cross_entropy(z[:bl], y) + F.cross_entropy(a[:bl], y)
            loss = loss + 2 * (
                F.cross_entropy(z[s_], a[w].detach().argmax(1)) + F.cross_entropy(a[s_], z[w].detach().argmax(1))
            )
            loss = loss + 2 * nt_xent(net["z_proj"](fz[w]), net["a_proj"](fa[w]))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return times[args.warmup :]


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--method", default="fixmatch", choices=["fixmatch", "actnetformer"])
    p.add_argument("--backbone", default="tiny3d", choices=["tiny3d", "r3d18", "slowonly_r50"])
    p.add_argument("--aux", default="tinyvit", choices=["tinyvit", "vit_s"], help="ActNetFormer's auxiliary network")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--mu", type=int, default=1)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--size", type=int, default=112)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--teacher", choices=["self", "ema"], default="self")
    p.add_argument("--joint", action="store_true", help="labelled and strong batches in one pass (joint_forward=True)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3, help="alternate bare/step runs this many times")
    p.add_argument("--accelerator", default="cpu", choices=["cpu", "gpu"])
    p.add_argument("--precision", default="32-true")
    args = p.parse_args(argv)
    batch = make_batch(args.batch, args.mu, args.frames, args.size, args.classes, aux=args.method == "actnetformer")
    bare_fn = time_bare_actnetformer if args.method == "actnetformer" else time_bare
    bare, step = [], []
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    for _ in range(args.repeats):  # interleaved so machine load hits both alike
        bare.append(statistics.median(bare_fn(args, batch)))
        step.append(statistics.median(time_step(args, batch)))
    res = {
        "method": args.method,
        "backbone": args.backbone,
        "aux": args.aux if args.method == "actnetformer" else None,
        "batch": args.batch,
        "mu": args.mu,
        "clip": f"{args.frames}x{args.size}x{args.size}",
        "teacher": args.teacher if args.method == "fixmatch" else None,
        "passes": ("joint" if args.joint else "separate") if args.method == "fixmatch" else None,
        "load_1min_start": load,
        "load_1min_end": os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan"),
        "device": torch.cuda.get_device_name()
        if args.accelerator == "gpu"
        else f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)",
        "precision": args.precision,
        "bare_ms": 1000 * statistics.median(bare),
        "step_ms": 1000 * statistics.median(step),
    }
    res["ratio"] = res["step_ms"] / res["bare_ms"]
    res["target_met"] = res["ratio"] <= 1.15
    print(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
