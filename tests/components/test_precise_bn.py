"""PreciseBN in real fits: the re-estimated BatchNorm statistics are the plain averages of the
per-batch statistics the layer saw (checked on recorded inputs), the schedule skips epochs, the
momentum comes back, and an EMA teacher's statistics are left alone."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from synth import tiny_datamodule, tiny_trainer
from torch import nn

from ssvar.components import EMATeacher
from ssvar.methods import FixMatch, Supervised
from ssvar.models import Tiny3D

try:  # issue 14 moves the callback to the callbacks module
    from ssvar.callbacks import PreciseBN
except ImportError:
    from ssvar.components import PreciseBN


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    return str(tmp_path_factory.mktemp("synth"))


class RecordBN(L.Callback):
    """Placed before PreciseBN: from the end of the epoch on, records what one student BatchNorm
    layer normalises in training mode (PreciseBN's forward passes), and snapshots all BN buffers."""

    def __init__(self, layer: nn.modules.batchnorm._BatchNorm):
        self.layer, self.active, self.inputs, self.before = layer, False, [], {}
        layer.register_forward_pre_hook(self._hook)

    def _hook(self, m, args):
        if self.active and m.training:
            self.inputs.append(args[0].detach().clone())

    def on_train_epoch_end(self, trainer, module):
        self.active = True
        self.before = {
            k: v.clone() for k, v in module.state_dict().items() if k.endswith(("running_mean", "running_var"))
        }


def _first_bn(module: nn.Module) -> nn.modules.batchnorm._BatchNorm:
    return next(m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm))


def test_statistics_are_the_average_of_the_batches(tmp_path, synth_root):
    L.seed_everything(0)
    model = Supervised(Tiny3D(width=4), num_classes=4, lr=0.05)
    bn = _first_bn(model.backbone)
    rec, cb = RecordBN(bn), PreciseBN(num_batches=3, every_n_epochs=1)
    trainer = tiny_trainer(tmp_path, max_epochs=1, max_steps=-1, limit_train_batches=2, callbacks=[rec, cb])
    trainer.fit(model, datamodule=tiny_datamodule(synth_root))
    assert cb.last_batches_used == len(rec.inputs) >= 2
    # Per batch: the per-channel mean and unbiased variance over (N, T, H, W); the estimate is
    # their plain average over the batches (a cumulative average), nothing of the old statistics.
    means = torch.stack([x.transpose(0, 1).flatten(1).mean(1) for x in rec.inputs])
    vars_ = torch.stack([x.transpose(0, 1).flatten(1).var(1, unbiased=True) for x in rec.inputs])
    assert torch.allclose(bn.running_mean, means.mean(0), atol=1e-5)
    assert torch.allclose(bn.running_var, vars_.mean(0), atol=1e-5, rtol=1e-4)
    assert not torch.allclose(bn.running_mean, rec.before["backbone." + _name(model.backbone, bn) + ".running_mean"])
    assert bn.momentum == 0.1  # restored after the cumulative pass


def _name(root: nn.Module, layer: nn.Module) -> str:
    return next(n for n, m in root.named_modules() if m is layer)


def test_epochs_off_the_schedule_are_skipped(tmp_path, synth_root):
    L.seed_everything(0)
    model = Supervised(Tiny3D(width=4), num_classes=4, lr=0.05)
    rec, cb = RecordBN(_first_bn(model.backbone)), PreciseBN(num_batches=2, every_n_epochs=2)
    trainer = tiny_trainer(tmp_path, max_epochs=1, max_steps=-1, limit_train_batches=2, callbacks=[rec, cb])
    trainer.fit(model, datamodule=tiny_datamodule(synth_root))
    assert cb.last_batches_used == 0 and rec.inputs == []
    after = {k: v for k, v in model.state_dict().items() if k in rec.before}
    assert all(torch.equal(after[k], v) for k, v in rec.before.items())


def test_an_ema_teacher_keeps_its_statistics(tmp_path, synth_root):
    L.seed_everything(0)
    model = FixMatch(Tiny3D(width=4), num_classes=4, threshold=0.0, teacher=EMATeacher(0.9), lr=0.05)
    rec, cb = RecordBN(_first_bn(model.backbone)), PreciseBN(num_batches=2, every_n_epochs=1)
    trainer = tiny_trainer(tmp_path, max_epochs=1, max_steps=-1, limit_train_batches=2, callbacks=[rec, cb])
    trainer.fit(model, datamodule=tiny_datamodule(synth_root))
    assert cb.last_batches_used == 2
    state = model.state_dict()
    teacher = [k for k in rec.before if k.startswith("teacher.")]
    student = [k for k in rec.before if k.startswith("backbone.")]
    assert teacher and student
    assert all(torch.equal(state[k], rec.before[k]) for k in teacher)  # the EMA follows the student's weights only
    assert any(not torch.equal(state[k], rec.before[k]) for k in student)


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_batches"):
        PreciseBN(num_batches=0)
    with pytest.raises(ValueError, match="every_n_epochs"):
        PreciseBN(every_n_epochs=0)
