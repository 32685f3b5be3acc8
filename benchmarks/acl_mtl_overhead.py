"""Step-time cost of ACL's memory bank and GMM inside an ACL+MTL training step.

Runs the real Lightning training step of :class:`ssvar.methods.ACLMTL` on a fixed in-memory
batch (no data loading, as ``benchmarks/step_overhead.py``) and measures, per step:

Times are CPU time of the process with one torch thread on CPU (so other jobs on a shared
machine barely move them; wall times are kept too), wall time with synchronisation on GPU.

* ``step``: the whole training step (batch start to batch end: forwards, backward, optimiser,
  EMA update, logging);
* ``bank``: the time spent in the bank and GMM, i.e. ``update_prototypes``, ``maybe_refit`` (the
  EM refit every ``refit_every`` steps, averaged over the run), ``reliability``, the adaptive
  contrastive loss forward and ``enqueue``; plus the loss's backward, measured separately on
  the same shapes (the autograd time of a ``[B, N]`` similarity matrix) and added.

The bank is pre-filled to its full size, so the loss runs against every entry from the first
step (the worst case). Target: ``bank / (step - bank) <= 0.10``, i.e. the bank and GMM add at
most 10 % to the same step without them. For context it also times the same method with
``use_acl=False`` (no projector, bank, GMM or contrastive loss at all). Variants alternate
``--repeats`` times (the machine may be shared) and medians are reported.

    python benchmarks/acl_mtl_overhead.py --batch 8 --size 56 --frames 8 --steps 12 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path[:1]:
    sys.path.insert(0, str(REPO))

import lightning as L  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

import ssvar.methods.acl_mtl as acl_module  # noqa: E402
from ssvar.components import EMATeacher  # noqa: E402
from ssvar.methods import ACLMTL  # noqa: E402
from ssvar.models import Tiny3D  # noqa: E402

sys.path.insert(0, str(REPO / "benchmarks"))
from step_overhead import _FixedBatches  # noqa: E402  (the same in-memory batch dataset)


def _sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _clock() -> float:
    """CPU time of this process on CPU runs (one torch thread: robust to other processes on a
    shared machine); wall time on GPU runs."""
    return time.perf_counter() if torch.cuda.is_available() else time.process_time()


class _Timer(L.Callback):
    def __init__(self):
        self.times: list[float] = []
        self.wall: list[float] = []
        self._t = self._w = 0.0

    def on_train_batch_start(self, *a):
        _sync()
        self._t, self._w = _clock(), time.perf_counter()

    def on_train_batch_end(self, *a):
        _sync()
        self.times.append(_clock() - self._t)
        self.wall.append(time.perf_counter() - self._w)


def make_batch(b: int, t: int, s: int, k: int, scales: int) -> dict:
    g = torch.Generator().manual_seed(0)

    def clip(*shape):
        return torch.randint(0, 256, shape, dtype=torch.uint8, generator=g)

    return {
        "labeled": {
            "weak": clip(b, 3, t, s, s),
            "label": torch.randint(0, k, (b,), generator=g),
            "index": torch.arange(b),
        },
        "unlabeled": {
            "weak": clip(b, 3, t, s, s),
            "strong": clip(b, 3, t, s, s),
            "long": clip(b, scales, 3, t, s, s),
            "label": torch.full((b,), -1),
            "hidden_label": torch.randint(0, k, (b,), generator=g),
            "index": torch.arange(b),
        },
    }


def _timed(fn, acc: list):
    def wrapper(*a, **kw):
        _sync()
        t0 = _clock()
        out = fn(*a, **kw)
        _sync()
        acc[0] += _clock() - t0
        return out

    return wrapper


def run(args, batch, use_acl: bool) -> dict:
    L.seed_everything(0)
    model = ACLMTL(
        Tiny3D(width=args.width), num_classes=args.classes, threshold=0.0, teacher=EMATeacher(0.99), lr=0.01,
        use_acl=use_acl, use_mtl=not args.no_mtl, bank_size=args.bank_size, refit_every=args.refit_every,
        min_fill=64, proj_dim=args.proj_dim, proj_hidden_dim=args.proj_hidden_dim,
    )
    bank_time = [0.0]
    original_loss = acl_module.adaptive_contrastive_loss
    if use_acl:
        bank = model.bank
        g = torch.Generator().manual_seed(1)
        n = bank.size
        bank.enqueue(
            torch.randn(n, bank.dim, generator=g),
            torch.randint(0, args.classes, (n,), generator=g),
            torch.rand(n, generator=g),
        )
        for name in ("update_prototypes", "maybe_refit", "reliability", "enqueue"):
            setattr(bank, name, _timed(getattr(bank, name), bank_time))
        acl_module.adaptive_contrastive_loss = _timed(original_loss, bank_time)
    timer = _Timer()
    total = args.steps + args.warmup
    trainer = L.Trainer(
        accelerator=args.accelerator, devices=1, max_steps=total, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0, callbacks=[timer],
    )
    loader = DataLoader(_FixedBatches(batch, total), batch_size=None, shuffle=False)
    try:
        # bank time of the warm-up steps is not counted: reset after them
        class _Reset(L.Callback):
            def on_train_batch_start(self, trainer, *a):
                if trainer.global_step == args.warmup:
                    bank_time[0] = 0.0

        trainer.callbacks.append(_Reset())
        trainer.fit(model, train_dataloaders=loader)
    finally:
        acl_module.adaptive_contrastive_loss = original_loss
    out = {"step_ms": 1000 * statistics.median(timer.times[args.warmup :]),
           "step_mean_ms": 1000 * statistics.mean(timer.times[args.warmup :]),
           "step_wall_ms": 1000 * statistics.median(timer.wall[args.warmup :])}
    if use_acl:
        out["bank_fwd_ms"] = 1000 * bank_time[0] / args.steps
        out["loss_backward_ms"] = loss_backward_ms(model, args)
        out["bank_ms"] = out["bank_fwd_ms"] + out["loss_backward_ms"]
    return out


def loss_backward_ms(model, args, reps: int = 20) -> float:
    """Backward of the adaptive contrastive loss alone, at the run's shapes."""
    bank = model.bank
    z = torch.randn(args.batch, bank.dim, requires_grad=True)
    y = torch.randint(0, args.classes, (args.batch,))
    times = []
    for _ in range(reps):
        loss, _ = acl_module.adaptive_contrastive_loss(z, y, torch.ones(args.batch), bank)
        _sync()
        t0 = _clock()
        loss.backward()
        _sync()
        times.append(_clock() - t0)
    return 1000 * statistics.median(times)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--size", type=int, default=56)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--bank-size", type=int, default=4096)
    p.add_argument("--refit-every", type=int, default=10)
    p.add_argument("--proj-dim", type=int, default=64)
    p.add_argument("--proj-hidden-dim", type=int, default=128)
    p.add_argument("--no-mtl", action="store_true", help="time ACL alone (use_mtl=False)")
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--accelerator", default="cpu", choices=["cpu", "gpu"])
    p.add_argument("--threads", type=int, default=1, help="torch threads on CPU (1: CPU time = work done)")
    args = p.parse_args(argv)
    if args.accelerator == "cpu":
        torch.set_num_threads(args.threads)
    batch = make_batch(args.batch, args.frames, args.size, args.classes, 2)
    full, no_acl = [], []
    load = [round(os.getloadavg()[0], 2)]
    for _ in range(args.repeats):  # alternate so machine load hits both alike
        full.append(run(args, batch, True))
        no_acl.append(run(args, batch, False))
        load.append(round(os.getloadavg()[0], 2))
    med = lambda rows, k: statistics.median(r[k] for r in rows)  # noqa: E731
    step, bank = med(full, "step_ms"), med(full, "bank_ms")
    res = {
        "setting": f"Tiny3D({args.width}), {args.batch} labelled + {args.batch} unlabelled clips of "
        f"{args.frames}x{args.size}x{args.size}, {'no MTL' if args.no_mtl else 'MTL with 2 long clips'}, "
        f"bank {args.bank_size} x {args.proj_dim}, refit every {args.refit_every}",
        "device": torch.cuda.get_device_name()
        if args.accelerator == "gpu"
        else f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)",
        "step_ms": step,
        "bank_gmm_ms": bank,
        "bank_fwd_ms": med(full, "bank_fwd_ms"),
        "loss_backward_ms": med(full, "loss_backward_ms"),
        "step_without_bank_gmm_ms": step - bank,
        "bank_gmm_overhead": bank / (step - bank),
        "step_use_acl_false_ms": med(no_acl, "step_ms"),
        "acl_total_ratio": step / med(no_acl, "step_ms"),
        "per_repeat": {"full": full, "use_acl_false": no_acl},
        "loadavg_1min": load,
    }
    res["target_met"] = res["bank_gmm_overhead"] <= 0.10
    print(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()
