"""Precise-BN: recompute BatchNorm running statistics as true averages over many batches.

During training, running statistics are an exponential average over recent batches of a moving
network; the LTG recipe replaces them every few epochs with exact averages over N batches of the
current weights (Wu & Johnson, "Rethinking BatchNorm"). Only the BatchNorm layers that the
method's ``precise_bn_forward`` actually runs in training mode are reset and re-estimated: a
layer is reset when it is first called, so networks that never run forward on these batches, or
run in eval mode (:class:`~ssvar.components.FrozenTeacher`), keep their statistics, and EMA
teachers (:class:`EMATeacher`, whose statistics follow the student's) are never touched. Under DDP every rank averages over its own batches and the results are averaged across
ranks, so all ranks end with the same statistics.
"""

from __future__ import annotations

import lightning as L
from lightning.pytorch.utilities import CombinedLoader
import torch
from torch import nn

from ssvar.components.ema import EMATeacher


def _student_bn_layers(module: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    teachers = {id(m) for t in module.modules() if isinstance(t, EMATeacher) for m in t.modules()}
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and id(m) not in teachers and m.track_running_stats]


@torch.no_grad()
def recompute_bn_stats(module: L.LightningModule, batches, num_batches: int) -> int:
    """Reset and re-estimate, on ``num_batches`` batches of ``batches`` (training batches, before
    the device transfer), the BatchNorm statistics of the layers that ``precise_bn_forward`` runs
    in training mode; every other layer keeps its statistics. Returns the batches used."""
    candidates = _student_bn_layers(module)
    if not candidates:
        return 0
    momenta: dict[nn.Module, float | None] = {}  # the layers reset so far, in call order

    def reset_on_first_call(m: nn.modules.batchnorm._BatchNorm, args) -> None:
        if m.training and m not in momenta:
            momenta[m] = m.momentum
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the batches below

    hooks = [m.register_forward_pre_hook(reset_on_first_call) for m in candidates]
    was_training = module.training
    module.train()
    used = 0
    trainer = module.trainer
    try:
        for item in batches:
            if used >= num_batches:
                break
            batch = item[0] if isinstance(item, tuple) else item
            batch = trainer.strategy.batch_to_device(batch)
            batch = module.on_after_batch_transfer(batch, 0)
            module.precise_bn_forward(batch)
            used += 1
    finally:
        for h in hooks:
            h.remove()
        for m, mom in momenta.items():
            m.momentum = mom
    # The same layers run on every rank (same code); keep the module's order for the all-reduce.
    layers = [m for m in candidates if m in momenta]
    if torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1:
        world = torch.distributed.get_world_size()
        for m in layers:
            for buf in (m.running_mean, m.running_var):
                torch.distributed.all_reduce(buf)
                buf.div_(world)
    module.train(was_training)
    return used


class PreciseBN(L.Callback):
    """Recompute BatchNorm statistics every ``every_n_epochs`` epochs on ``num_batches``
    training batches (LTG: every 5 epochs, 200 iterations on the unlabelled list).

    The method decides what to forward with ``precise_bn_forward(batch)`` (default: the labelled
    and unlabelled weak views through the student).
    """

    def __init__(self, num_batches: int = 200, every_n_epochs: int = 5):
        if num_batches < 1 or every_n_epochs < 1:
            raise ValueError(f"num_batches and every_n_epochs must be >= 1, got {num_batches}, {every_n_epochs}")
        self.num_batches = num_batches
        self.every_n_epochs = every_n_epochs
        self.last_batches_used = 0

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        loaders = trainer.train_dataloader  # the loaders themselves (a dict for semi-supervised fits)
        if isinstance(loaders, (dict, list, tuple)):
            loaders = CombinedLoader(loaders, mode="min_size")
        self.last_batches_used = recompute_bn_stats(module, loaders, self.num_batches)
