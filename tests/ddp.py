"""One harness for the 2-process CPU (gloo) tests: run a function on every rank, get each rank's
result back, and compare it with what DDP computes from one process on the global batch.

    def per_rank(rank, world, seed):            # module level: spawned processes import it
        x = shard(global_batch(seed), rank, world)
        loss = loss_fn(model, x)
        loss.backward()
        return {"loss": mean_over_ranks(loss), **averaged_grads(model)}

    ranks = run_ddp(per_rank, 2, 0)               # [result of rank 0, result of rank 1]
    assert_all_close(ranks[0], reference(...))    # reference: one process, the global batch

"What DDP computes" for one step: each rank's loss on its shard, averaged for logging, and the
parameter gradients averaged over the ranks (DDP's reducer, no loss rescaling). The helpers
:func:`mean_over_ranks` and :func:`averaged_grads` do exactly that inside a rank; :func:`grads`
is their one-process counterpart.
"""

from __future__ import annotations

import datetime
import os
import socket
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.multiprocessing.spawn import ProcessException

__all__ = ["run_ddp", "shard", "mean_over_ranks", "averaged_grads", "grads", "assert_all_close", "free_port"]


def free_port() -> int:
    """A TCP port nobody listens on right now (the rendezvous of one run)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank: int, world: int, port: int, out_dir: str, timeout_s: float, fn: Callable, args: tuple) -> None:
    torch.set_num_threads(1)  # two ranks share the machine's cores with everything else
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=timeout_s))
    try:
        result = fn(rank, world, *args)
        torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))
        # Leave together: a rank tearing gloo down while its peer still communicates can abort it.
        dist.barrier()
    except BaseException:
        with open(os.path.join(out_dir, f"rank{rank}.err"), "w") as f:
            f.write(traceback.format_exc())
        raise
    finally:
        dist.destroy_process_group()


def run_ddp(fn: Callable[..., Any], world: int = 2, *args: Any, timeout_s: float = 180.0) -> list[Any]:
    """Run ``fn(rank, world, *args)`` in ``world`` spawned processes joined in one gloo group.

    ``fn`` and ``args`` must be picklable (``fn`` defined at module level). Returns the ranks'
    return values in rank order (each passed through ``torch.save``/``torch.load``). A rank that
    raises fails the caller with that rank's traceback; a run still going after ``timeout_s``
    seconds (a rank stuck in a collective its peer never joins) is killed and fails the caller.
    """
    name = getattr(fn, "__qualname__", repr(fn))
    with tempfile.TemporaryDirectory(prefix="ssvar_ddp_") as out:
        ctx = mp.start_processes(_entry, args=(world, free_port(), out, timeout_s, fn, args), nprocs=world,
                                 join=False, start_method="spawn")
        deadline = time.monotonic() + timeout_s
        try:
            while not ctx.join(timeout=1.0):
                if time.monotonic() > deadline:
                    alive = [r for r, p in enumerate(ctx.processes) if p.is_alive()]
                    raise AssertionError(f"run_ddp({name}, world={world}): rank(s) {alive} still running after "
                                         f"{timeout_s:.0f} s (a collective one rank never joined?)")
        except ProcessException as e:
            # join() stopped the other ranks already. Name the function and every rank that
            # failed, earliest first (a peer's later error is usually the consequence), with
            # their tracebacks.
            errs = sorted((os.path.getmtime(f), r, f) for r in range(world)
                          if os.path.isfile(f := os.path.join(out, f"rank{r}.err")))
            report = (
                "\n".join(f"rank {r} failed:\n{open(f).read()}" for _, r, f in errs)
                or f"rank {e.error_index} failed:\n{e}"
            )
            raise AssertionError(f"run_ddp({name}, world={world}): {report}") from None
        finally:
            for p in ctx.processes:
                if p.is_alive():
                    p.kill()
                    p.join()
        return [torch.load(os.path.join(out, f"rank{r}.pt"), weights_only=False) for r in range(world)]


# ------------------------------------------------------------------ inside a rank
def shard(x: Any, rank: int, world: int) -> Any:
    """This rank's contiguous 1/world of a global batch (a tensor or a dict of tensors): the ranks'
    shards in rank order make up the global batch, the order in which an all_gather joins them."""
    if isinstance(x, Mapping):
        return {k: shard(v, rank, world) for k, v in x.items()}
    n = x.shape[0]
    if n % world:
        raise ValueError(f"a global batch of {n} does not split into {world} equal shards")
    b = n // world
    return x[rank * b:(rank + 1) * b]


def mean_over_ranks(x: Any) -> Any:
    """The mean over ranks of a tensor (or a dict of them): what DDP logs for a loss with
    ``sync_dist``. Detached; every rank gets the same value."""
    if isinstance(x, Mapping):
        return {k: mean_over_ranks(v) for k, v in x.items()}
    v = x.detach().clone()
    dist.all_reduce(v)
    return v / dist.get_world_size()


def _named_parameters(modules: nn.Module | Mapping[str, nn.Module]) -> Iterable[tuple[str, nn.Parameter]]:
    if isinstance(modules, nn.Module):
        modules = {"": modules}
    for prefix, m in modules.items():
        for n, p in m.named_parameters():
            yield (f"{prefix}.{n}" if prefix else n), p


def grads(modules: nn.Module | Mapping[str, nn.Module]) -> dict[str, torch.Tensor]:
    """Every parameter's gradient by name (zeros where none), after ``backward``. ``modules``:
    one module or ``{prefix: module}`` for several networks."""
    return {
        n: (p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p))
        for n, p in _named_parameters(modules)
    }


def averaged_grads(modules: nn.Module | Mapping[str, nn.Module]) -> dict[str, torch.Tensor]:
    """:func:`grads` averaged over the ranks: the gradients DDP's reducer leaves on every rank."""
    return mean_over_ranks(grads(modules))


# ------------------------------------------------------------------ comparing
def assert_all_close(got: Mapping[str, torch.Tensor], want: Mapping[str, torch.Tensor], atol: float = 1e-9,
                     rtol: float = 1e-7, keys: Iterable[str] | None = None) -> None:
    """Every key of ``want`` (or of ``keys``) is close in ``got``; names the first key that is not."""
    keys = list(want) if keys is None else list(keys)
    missing = [k for k in keys if k not in got]
    assert not missing, f"missing from the distributed result: {missing[:5]}"
    for k in keys:
        g, w = got[k], want[k]
        assert g.shape == w.shape, f"{k}: shape {tuple(g.shape)} != {tuple(w.shape)}"
        assert torch.allclose(g.to(w.dtype), w, atol=atol, rtol=rtol), (
            f"{k}: max abs difference {(g.to(w.dtype) - w).abs().max().item():.3g} (atol {atol}, rtol {rtol})")
