"""Exact resume: a run killed and resumed from its last checkpoint ends with the weights of the run
that was never interrupted, with loader workers or without, with ``max_epochs`` or ``max_steps``,
stopped at an epoch end or mid-epoch, for one-network, EMA-teacher and two-network methods."""

from __future__ import annotations

import os

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from synth import tiny_datamodule, tiny_trainer

from ssvar.checkpointing import ResumeCheckpoints
from ssvar.components import EMATeacher
from ssvar.methods import CMPL, FixMatch, MeanTeacher
from ssvar.models import Tiny3D

METHODS = {
    "fixmatch_ema": lambda: FixMatch(Tiny3D(width=4), num_classes=4, threshold=0.5, teacher=EMATeacher(0.9), lr=0.05),
    "mean_teacher": lambda: MeanTeacher(Tiny3D(width=4), num_classes=4, rampup_steps=0, lr=0.05),
    "cmpl": lambda: CMPL(Tiny3D(width=4), num_classes=4, aux_backbone=Tiny3D(width=2), threshold=0.3, lr=0.05),
}


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    return str(tmp_path_factory.mktemp("synth"))


class Killed(Exception):
    """Stands for `kill -9`: the run dies between two steps, with only its files left."""


class KillAt(L.Callback):
    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if trainer.global_step == self.step:
            raise Killed(f"killed before step {self.step + 1}")


def _limits(mode: str, spe: int) -> dict:
    # max_steps runs stop part-way through an epoch (2.5 epochs), as 44 shipped configs do.
    return (
        dict(max_epochs=3, max_steps=-1) if mode == "max_epochs" else dict(max_epochs=-1, max_steps=2 * spe + spe // 2)
    )


def _fit(method, root, dm_kw, limits, callbacks=(), ckpt_path=None, seed=0):
    L.seed_everything(seed)
    model = METHODS[method]()
    trainer = tiny_trainer(
        root, deterministic=True, enable_checkpointing=True, callbacks=list(callbacks), **limits
    )
    trainer.fit(model, datamodule=tiny_datamodule(dm_kw.pop("synth"), **dm_kw), ckpt_path=ckpt_path)
    return model, trainer


def _state(model, trainer) -> dict:
    out = {f"model.{k}": v.detach().clone() for k, v in model.state_dict().items()}
    for i, s in trainer.optimizers[0].state_dict()["state"].items():
        for k, v in s.items():
            if isinstance(v, torch.Tensor):
                out[f"opt.{i}.{k}"] = v.clone()
    return out


_STRAIGHT: dict = {}


def _straight(method, workers, mode, synth_root, tmp_path_factory):
    key = (method, workers, mode)
    if key not in _STRAIGHT:
        dm_kw = dict(synth=synth_root, num_workers=workers, persistent_workers=False)
        spe = tiny_datamodule(synth_root).steps_per_epoch()
        root = tmp_path_factory.mktemp("straight")
        model, trainer = _fit(method, root, dm_kw, _limits(mode, spe), [ModelCheckpoint(dirpath=str(root / "ck"))])
        _STRAIGHT[key] = (_state(model, trainer), trainer.global_step, trainer.current_epoch)
    return _STRAIGHT[key]


def _check_resume(method, workers, mode, stop, synth_root, tmp_path, tmp_path_factory):
    spe = tiny_datamodule(synth_root).steps_per_epoch()
    limits = _limits(mode, spe)
    expected, steps, epoch = _straight(method, workers, mode, synth_root, tmp_path_factory)
    ck = tmp_path / "ck"
    # epoch_end: killed right after epoch 1's checkpoint; mid_epoch: killed 2 steps after a
    # step-interval last.ckpt half-way through epoch 1.
    kill_at, every = (spe, 0) if stop == "epoch_end" else (spe + spe // 2 + 2, spe + spe // 2)
    callbacks = [ModelCheckpoint(dirpath=str(ck)), ResumeCheckpoints(every_n_train_steps=every), KillAt(kill_at)]
    dm_kw = dict(synth=synth_root, num_workers=workers, persistent_workers=False)
    with pytest.raises(Killed):
        _fit(method, tmp_path / "a", dict(dm_kw), limits, callbacks)
    assert os.path.isfile(ck / "last.ckpt")
    saved = torch.load(ck / "last.ckpt", weights_only=True, map_location="cpu")
    assert saved["global_step"] == (spe if stop == "epoch_end" else every)
    # A different seed: everything must come from the checkpoint.
    model, trainer = _fit(
        method, tmp_path / "b", dict(dm_kw), limits, [ModelCheckpoint(dirpath=str(ck))], str(ck / "last.ckpt"), seed=123
    )
    assert (trainer.global_step, trainer.current_epoch) == (steps, epoch)
    got = _state(model, trainer)
    assert got.keys() == expected.keys()
    for k in expected:
        assert torch.equal(expected[k], got[k]), k


# The default suite runs one representative of each axis; the whole matrix is marked slow.
FAST = [
    ("fixmatch_ema", 0, "max_epochs", "epoch_end"),
    ("fixmatch_ema", 2, "max_steps", "mid_epoch"),
    ("mean_teacher", 2, "max_epochs", "mid_epoch"),
    ("cmpl", 0, "max_steps", "epoch_end"),
]
FULL = [
    (m, w, mode, stop)
    for m in METHODS
    for w in (0, 2)
    for mode in ("max_epochs", "max_steps")
    for stop in ("epoch_end", "mid_epoch")
]


@pytest.mark.parametrize("method,workers,mode,stop", FAST)
def test_exact_resume(method, workers, mode, stop, synth_root, tmp_path, tmp_path_factory):
    _check_resume(method, workers, mode, stop, synth_root, tmp_path, tmp_path_factory)


@pytest.mark.slow
@pytest.mark.parametrize("method,workers,mode,stop", [c for c in FULL if c not in FAST])
def test_exact_resume_matrix(method, workers, mode, stop, synth_root, tmp_path, tmp_path_factory):
    _check_resume(method, workers, mode, stop, synth_root, tmp_path, tmp_path_factory)


class RecordBatches(L.Callback):
    def __init__(self):
        self.rows = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        key = (trainer.global_step, trainer.current_epoch, batch_idx)
        self.rows.append(
            (
                key,
                batch["labeled"]["index"].tolist(),
                batch["unlabeled"]["index"].tolist(),
                float(batch["labeled"]["weak"].float().sum()),
            )
        )


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_after_max_steps_reached_trains_the_same_batches(workers, synth_root, tmp_path):
    """A run that ended at ``max_steps`` part-way through an epoch, continued to a larger
    ``max_steps`` from its last.ckpt, trains the batches (same videos, same augmentation, same
    epoch and batch index) that one run to the larger ``max_steps`` trains: Lightning alone trained
    one batch too many there and shifted every later epoch; the samplers restarted the epoch."""
    spe = tiny_datamodule(synth_root).steps_per_epoch()
    dm_kw = dict(synth=synth_root, num_workers=workers, persistent_workers=False)
    straight = RecordBatches()
    _fit("fixmatch_ema", tmp_path / "s", dict(dm_kw), _limits("max_steps", spe), [straight])
    ck = tmp_path / "ck"
    _fit(
        "fixmatch_ema",
        tmp_path / "a",
        dict(dm_kw),
        dict(max_epochs=-1, max_steps=spe + spe // 2),
        [ModelCheckpoint(dirpath=str(ck))],
    )
    resumed = RecordBatches()
    _fit(
        "fixmatch_ema",
        tmp_path / "b",
        dict(dm_kw),
        _limits("max_steps", spe),
        [ModelCheckpoint(dirpath=str(ck)), resumed],
        str(ck / "last.ckpt"),
        seed=1,
    )
    assert resumed.rows == straight.rows[spe + spe // 2 :]
