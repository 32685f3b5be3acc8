"""Distributed helpers: identities in one process, and what each collective does in a 2-process gloo
run (rank order, summed gather backward, in-place sum, rank 0's tensors and buffers everywhere)."""

from __future__ import annotations

import datetime
import socket

import pytest
import torch
from torch import nn

from ssvar.components import distributed as dist
from ssvar.components.ema import EMATeacher

WORLD, B = 2, 3


def test_helpers_are_identities_in_one_process():
    assert not dist.is_distributed()
    assert (dist.rank(), dist.world_size(), dist.rank_offset(5)) == (0, 1, 0)
    x = torch.randn(B, 2, requires_grad=True)
    assert dist.gather_with_grad(x) is x
    g = dist.gather_no_grad(x)
    assert torch.equal(g, x) and not g.requires_grad
    y = torch.randn(4)
    before = y.clone()
    assert dist.all_reduce_sum(y) is y and torch.equal(y, before)
    assert dist.broadcast_from_rank0(y) is y and torch.equal(y, before)
    bn = nn.BatchNorm1d(3)
    assert dist.broadcast_from_rank0(bn) is bn


def test_old_import_paths_are_the_same_objects():
    from ssvar.components import contrastive

    assert contrastive.gather_with_grad is dist.gather_with_grad
    assert contrastive.gather_no_grad is dist.gather_no_grad
    assert contrastive.rank_offset is dist.rank_offset
    assert contrastive.world_size is dist.world_size
    assert contrastive._rank is dist.rank and contrastive._AllGatherWithGrad is dist._AllGatherWithGrad


def _net() -> nn.Module:
    # float buffers (running stats) and an integer one (num_batches_tracked): two dtypes
    return nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3), nn.Linear(3, 3), nn.BatchNorm1d(3))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    torch.distributed.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=WORLD,
        timeout=datetime.timedelta(seconds=60),
    )
    try:
        res: dict = {"rank": dist.rank(), "world": dist.world_size(), "is_dist": dist.is_distributed(),
                     "offset": dist.rank_offset(B)}
        # Each rank owns rows rank*B .. rank*B + B - 1 of a known global tensor.
        glob = torch.arange(WORLD * B * 2, dtype=torch.float64).view(WORLD * B, 2)
        x = glob[rank * B : (rank + 1) * B].clone().requires_grad_()
        g = dist.gather_with_grad(x)
        res["gathered"] = g.detach().clone()
        # A loss that weighs every global row by (rank + 1): its gradient w.r.t. a local row is
        # the sum over ranks of the weights, whoever owns the row.
        (g.sum(dim=1) * (rank + 1)).sum().backward()
        res["grad"] = x.grad.clone()
        res["no_grad"] = dist.gather_no_grad(x * 2)
        res["no_grad_requires_grad"] = res["no_grad"].requires_grad
        s = torch.full((3,), float(rank + 1))
        res["sum_is_same_object"] = dist.all_reduce_sum(s) is s
        res["sum"] = s
        t = torch.full((2,), float(10 * (rank + 1)))
        dist.broadcast_from_rank0(t)
        res["broadcast"] = t
        torch.manual_seed(0)  # same parameters on every rank, as DDP keeps them
        net = _net()
        with torch.no_grad():
            for b in net.buffers():
                b.add_(rank + 1)  # rank-dependent statistics, as after per-rank forwards
        params = [p.clone() for p in net.parameters()]
        for p in net.parameters():
            p.data.add_(rank)  # differing parameters: the broadcast must leave them alone
        dist.broadcast_from_rank0(net)
        res["buffers"] = {n: b.clone() for n, b in net.named_buffers()}
        res["params_untouched"] = all(torch.equal(p, q + rank) for p, q in zip(net.parameters(), params))
        # The EMA teacher after an update holds rank 0's BatchNorm statistics on every rank.
        torch.manual_seed(0)
        student = _net()
        teacher = EMATeacher(0.9).attach(student)
        student.train()
        student(torch.randn(4, 2) + rank)  # per-rank batches: per-rank statistics
        teacher.update(student, step=1)
        res["teacher_buffers"] = {n: b.clone() for n, b in teacher.model.named_buffers()}
        res["student_buffers"] = {n: b.clone() for n, b in student.named_buffers()}
        torch.save(res, f"{out_dir}/rank{rank}.pt")
        torch.distributed.barrier()
    finally:
        torch.distributed.destroy_process_group()


@pytest.fixture(scope="module")
def ddp(tmp_path_factory):
    out = tmp_path_factory.mktemp("distributed")
    torch.multiprocessing.spawn(_worker, args=(_free_port(), str(out)), nprocs=WORLD, join=True)
    return [torch.load(out / f"rank{r}.pt") for r in range(WORLD)]


@pytest.mark.ddp
def test_rank_world_and_offsets(ddp):
    assert [(r["rank"], r["world"], r["is_dist"], r["offset"]) for r in ddp] == [(0, 2, True, 0), (1, 2, True, B)]


@pytest.mark.ddp
def test_gathers_in_rank_order_and_the_backward_sums_over_ranks(ddp):
    glob = torch.arange(WORLD * B * 2, dtype=torch.float64).view(WORLD * B, 2)
    for r in ddp:
        assert torch.equal(r["gathered"], glob)
        assert torch.equal(r["no_grad"], 2 * glob) and not r["no_grad_requires_grad"]
        # sum over ranks of the weights (1 + 2): every local row gets 3, not its own rank's weight
        assert torch.equal(r["grad"], torch.full((B, 2), 3.0, dtype=torch.float64))


@pytest.mark.ddp
def test_all_reduce_sums_in_place_and_broadcast_takes_rank0(ddp):
    for r in ddp:
        assert r["sum_is_same_object"] and torch.equal(r["sum"], torch.full((3,), 3.0))
        assert torch.equal(r["broadcast"], torch.full((2,), 10.0))
        assert r["params_untouched"]
    for name, b in ddp[1]["buffers"].items():
        assert torch.equal(b, ddp[0]["buffers"][name]), name
    # rank 0's values: the fresh buffers + 1 (running_var 2, running_mean 1, counters 1)
    assert torch.equal(ddp[0]["buffers"]["1.running_var"], torch.full((3,), 2.0))
    assert int(ddp[0]["buffers"]["3.num_batches_tracked"]) == 1


@pytest.mark.ddp
def test_ema_teacher_holds_rank0_statistics_on_every_rank(ddp):
    s0, s1 = ddp[0]["student_buffers"], ddp[1]["student_buffers"]
    assert not torch.equal(s0["1.running_mean"], s1["1.running_mean"])  # the students differ
    for r in ddp:
        for name, b in r["teacher_buffers"].items():
            assert torch.equal(b, s0[name]), name  # policy "copy", then rank 0's everywhere
