"""The training and evaluation samplers of :class:`~ssvar.data.datamodule.SemiSupervisedDataModule`.

They are ``DistributedSampler`` subclasses, so Lightning keeps them under DDP instead of replacing
them. Training samplers are resumable mid-epoch and yield ``(index, sample_seed)`` pairs; the
evaluation sampler shards without padding.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch.utils.data import DistributedSampler

__all__ = ["EvalDistributedSampler", "ResampledDistributedSampler", "ShuffledDistributedSampler"]


class _ResumableSampler(DistributedSampler):
    """A training sampler whose epochs are pure functions of ``(seed, epoch)`` and that can start
    an epoch part-way (``resume_at``), so a run resumed mid-epoch sees exactly the samples, in the
    order, an uninterrupted run would have seen next.

    It yields ``(index, sample_seed)`` pairs: :class:`~ssvar.data.dataset.VideoDataset` draws a
    sample's augmentation from its own seed, so a sample looks the same whichever worker decodes
    it, with any ``num_workers`` and after any resume (worker RNG streams do not survive a resume).
    """

    stream = 0  # separates the sample seeds of the labelled and unlabelled streams
    _skip: tuple[int | None, int] = (None, 0)  # (epoch, samples) set by resume_at

    def _order(self) -> list[int]:
        """This epoch's indices over all replicas (``total_size`` of them)."""
        raise NotImplementedError

    def resume_at(self, epoch: int, skip: int) -> None:
        """Start epoch ``epoch`` after its first ``skip`` samples (per replica)."""
        self.set_epoch(epoch)
        self._skip = (epoch, skip)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        order = self._order()
        g = torch.Generator()
        g.manual_seed(hash((self.seed, self.epoch, self.stream)) & (2**63 - 1))
        seeds = torch.randint(0, 2**62, (self.total_size,), generator=g).tolist()
        mine = slice(self.rank, self.total_size, self.num_replicas)
        pairs = list(zip(order[mine], seeds[mine]))
        epoch, skip = self._skip
        self._skip = (None, 0)  # applies once, to the resumed epoch only
        return iter(pairs[skip:] if epoch == self.epoch else pairs)


class ResampledDistributedSampler(_ResumableSampler):
    """Draws ``num_samples`` indices per replica from a (small) dataset, cycling through fresh
    permutations, so every labelled video is seen equally often. Seeded by ``seed + epoch``;
    identical on every rank before sharding, so ranks see disjoint samples each step."""

    def __init__(self, dataset, num_samples: int, num_replicas: int = 1, rank: int = 0, seed: int = 0):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=False)
        self.dataset_size = len(dataset)
        self.num_samples = num_samples
        self.total_size = num_samples * num_replicas

    def _order(self) -> list[int]:
        g = torch.Generator()
        g.manual_seed(self.seed + self.epoch)
        n = self.dataset_size
        perms = [torch.randperm(n, generator=g) for _ in range(math.ceil(self.total_size / n))]
        return torch.cat(perms)[: self.total_size].tolist()

    def __len__(self) -> int:
        return self.num_samples


class ShuffledDistributedSampler(_ResumableSampler):
    """``DistributedSampler(shuffle=True, drop_last=True)``'s order (the unlabelled pool), resumable."""

    stream = 1

    def __init__(self, dataset, num_replicas: int = 1, rank: int = 0, seed: int = 0):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=True)
        self.dataset_size = len(dataset)

    def _order(self) -> list[int]:
        g = torch.Generator()
        g.manual_seed(self.seed + self.epoch)
        return torch.randperm(self.dataset_size, generator=g)[: self.total_size].tolist()


class EvalDistributedSampler(DistributedSampler):
    """Strided shards without padding: no video is evaluated twice (a padded
    ``DistributedSampler`` repeats samples and biases the metrics)."""

    def __init__(self, dataset, num_replicas: int = 1, rank: int = 0):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False, drop_last=False)
        self.num_samples = len(range(rank, len(dataset), num_replicas))
        self.total_size = self.dataset_size = len(dataset)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.dataset_size, self.num_replicas))

    def __len__(self) -> int:
        return self.num_samples
