"""The 2-process harness itself (tests/ddp.py): results come back in rank order, a failing rank
fails the caller with its traceback, a stuck run is stopped, and the DDP helpers compute what
DDP's reducer computes."""

from __future__ import annotations

import time

import pytest
import torch
import torch.distributed as dist
from ddp import assert_all_close, averaged_grads, grads, mean_over_ranks, run_ddp, shard
from torch import nn

pytestmark = pytest.mark.ddp


def _fails_on_rank_1(rank, world):
    if rank == 1:
        raise ValueError("rank one is broken on purpose")
    dist.barrier()  # rank 0 waits for a peer that never comes


def test_a_failing_rank_fails_the_caller_with_its_traceback():
    t0 = time.monotonic()
    with pytest.raises(
        AssertionError, match=r"(?s)_fails_on_rank_1.*rank 1 failed.*ValueError: rank one is broken on purpose"
    ):
        run_ddp(_fails_on_rank_1, 2, timeout_s=120)
    assert time.monotonic() - t0 < 100  # rank 0 was stopped, not left waiting for its timeout


def _hangs(rank, world):
    if rank == 1:
        time.sleep(3600)
    dist.barrier()


@pytest.mark.slow
def test_a_stuck_run_is_stopped_with_a_message():
    with pytest.raises(AssertionError, match=r"_hangs.*still running after 20 s"):
        run_ddp(_hangs, 2, timeout_s=20)


def _linear_step(rank, world, tag):
    torch.manual_seed(0)
    net = nn.Linear(3, 2).double()
    x = torch.arange(24, dtype=torch.float64).view(8, 3) / 10
    loss = net(shard(x, rank, world)).pow(2).mean()
    loss.backward()
    return {
        "loss": mean_over_ranks(loss),
        **averaged_grads({"net": net}),
        "rank": rank,
        "world": dist.get_world_size(),
        "tag": tag,
    }


def test_helpers_equal_one_process_on_the_global_batch():
    """Results come back in rank order, with the arguments passed; with equal shards and a mean
    loss, DDP's averaged gradient is the global batch's gradient."""
    ranks = run_ddp(_linear_step, 2, "x")
    assert [(r.pop("rank"), r.pop("world"), r.pop("tag")) for r in ranks] == [(0, 2, "x"), (1, 2, "x")]
    torch.manual_seed(0)
    net = nn.Linear(3, 2).double()
    x = torch.arange(24, dtype=torch.float64).view(8, 3) / 10
    loss = net(x).pow(2).mean()
    loss.backward()
    want = {"loss": loss.detach(), **grads({"net": net})}
    assert set(want) == {"loss", "net.weight", "net.bias"}
    for r in ranks:
        assert_all_close(r, want, atol=1e-12)
    with pytest.raises(AssertionError, match="net.weight"):
        assert_all_close({**ranks[0], "net.weight": ranks[0]["net.weight"] * 2}, want)


def test_shard_splits_a_batch_in_order():
    x = {"a": torch.arange(6), "b": torch.arange(12).view(6, 2)}
    parts = [shard(x, r, 3) for r in range(3)]
    assert torch.equal(torch.cat([p["a"] for p in parts]), x["a"])
    assert torch.equal(torch.cat([p["b"] for p in parts]), x["b"])
    with pytest.raises(ValueError, match="does not split"):
        shard(torch.arange(5), 0, 2)
