"""Step-time overhead of a method: a real Lightning training step vs the passes it must do.

For FixMatch a step must do: a no-grad forward of the weak unlabelled batch (student or EMA
teacher), forward + backward of the labelled and the strong unlabelled batch (two passes, as
FixMatch's default; one concatenated pass with ``--joint``, as ``joint_forward=True``), and an
optimiser step (plus an EMA update with a teacher). This script times

* ``bare``: exactly those passes in a plain PyTorch loop (same backbone, same batches);
* ``step``: the method's training step run by a Lightning ``Trainer`` (loss bookkeeping,
  pseudo-label monitoring, logging, EMA update), timed from batch start to batch end with the
  batch already in memory, so data loading is excluded from both.

Target: step / bare <= 1.15. Usage::

    python benchmarks/step_overhead.py --backbone tiny3d --batch 8 --mu 1 --steps 30
    python benchmarks/step_overhead.py --backbone r3d18 --frames 8 --size 112 --batch 4 --teacher ema
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from ssvar.components import EMATeacher
from ssvar.methods import FixMatch
from ssvar.models import R3D18, SlowOnlyR50, Tiny3D


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


def make_batch(b: int, mu: int, t: int, s: int, k: int) -> dict:
    g = torch.Generator().manual_seed(0)

    def clip(n):
        return torch.randint(0, 256, (n, 3, t, s, s), dtype=torch.uint8, generator=g)

    return {
        "labeled": {"weak": clip(b), "label": torch.randint(0, k, (b,), generator=g), "index": torch.arange(b)},
        "unlabeled": {
            "weak": clip(b * mu),
            "strong": clip(b * mu),
            "label": torch.full((b * mu,), -1),
            "hidden_label": torch.randint(0, k, (b * mu,), generator=g),
            "index": torch.arange(b * mu),
        },
    }


def time_step(args, batch) -> list[float]:
    L.seed_everything(0)
    teacher = EMATeacher(0.99) if args.teacher == "ema" else None
    model = FixMatch(
        make_backbone(args.backbone), num_classes=args.classes, threshold=0.0, teacher=teacher, lr=0.01, joint_forward=args.joint
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
    amp = torch.autocast(dev.type, dtype=torch.bfloat16) if args.precision == "bf16-mixed" else torch.autocast(dev.type, enabled=False)

    def fwd(m, x):
        return m["head"](m["backbone"](x))

    times = []
    for i in range(args.steps + args.warmup):
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


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="tiny3d", choices=["tiny3d", "r3d18", "slowonly_r50"])
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
    batch = make_batch(args.batch, args.mu, args.frames, args.size, args.classes)
    bare, step = [], []
    for _ in range(args.repeats):  # interleaved so machine load hits both alike
        bare.append(statistics.median(time_bare(args, batch)))
        step.append(statistics.median(time_step(args, batch)))
    res = {
        "backbone": args.backbone,
        "batch": args.batch,
        "mu": args.mu,
        "clip": f"{args.frames}x{args.size}x{args.size}",
        "teacher": args.teacher,
        "passes": "joint" if args.joint else "separate",
        "device": torch.cuda.get_device_name() if args.accelerator == "gpu" else f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)",
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
