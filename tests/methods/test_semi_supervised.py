"""FixMatch and Mean Teacher: real tiny fits, the hidden-label guarantee and exact resume."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from ssvar.components import EMATeacher, PseudoLabeler
from ssvar.methods import FixMatch, MeanTeacher
from ssvar.models import Tiny3D
from synth import tiny_datamodule, tiny_trainer


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    return str(tmp_path_factory.mktemp("synth"))


def _trainer(tmp_path, **kw):
    return tiny_trainer(tmp_path, deterministic=True, **kw)


METHODS = {
    "fixmatch": lambda: FixMatch(Tiny3D(width=4), num_classes=4, threshold=0.0, lr=0.05),
    "fixmatch_ema": lambda: FixMatch(Tiny3D(width=4), num_classes=4, threshold=0.0, teacher=EMATeacher(0.9), lr=0.05),
    "mean_teacher": lambda: MeanTeacher(Tiny3D(width=4), num_classes=4, rampup_steps=0, lr=0.05),
}


@pytest.mark.parametrize("name", list(METHODS))
def test_fit_logs_losses_and_pseudo_label_quality(name, tmp_path, synth_root):
    L.seed_everything(0)
    model = METHODS[name]()
    trainer = _trainer(tmp_path)
    trainer.fit(model, datamodule=tiny_datamodule(synth_root))
    m = trainer.callback_metrics
    assert trainer.global_step == 3
    for key in ("train/loss", "train/loss_supervised", "train/pl_mask_rate", "train/pl_acc", "train/pl_threshold", "train/lr"):
        assert key in m, key
    unsup = "train/loss_consistency" if name == "mean_teacher" else "train/loss_unsupervised"
    assert m[unsup] > 0
    if name != "fixmatch":
        assert "train/ema_decay" in m
        assert int(model.teacher.num_updates) == 3  # one update per optimiser step
        # The teacher moved away from its initial copy of the student.
        assert any(not torch.equal(a, b) for a, b in zip(model.teacher.model.parameters(), model.classifier().parameters()))


def test_unsupervised_loss_never_sees_labels(tmp_path, synth_root):
    seen: list[set] = []

    class Spy(FixMatch):
        def train_step(self, labeled, unlabeled):
            seen.append(set(unlabeled))
            return super().train_step(labeled, unlabeled)

    L.seed_everything(0)
    _trainer(tmp_path, max_steps=1).fit(Spy(Tiny3D(width=4), num_classes=4), datamodule=tiny_datamodule(synth_root))
    assert seen and all("hidden_label" not in keys and "label" not in keys for keys in seen)


class _ScrambleHidden(L.Callback):
    """Replaces the hidden labels with random ones before the batch reaches the module."""

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        h = batch["unlabeled"]["hidden_label"]
        h.copy_(torch.randint(0, 4, h.shape, generator=torch.Generator().manual_seed(batch_idx)))


@pytest.mark.parametrize("name", ["fixmatch_ema", "mean_teacher"])
def test_hidden_labels_cannot_reach_any_loss(name, tmp_path, synth_root):
    """Training with true and with scrambled hidden labels gives bit-identical weights."""
    states = []
    for callbacks in ([], [_ScrambleHidden()]):
        L.seed_everything(0)
        model = METHODS[name]()
        trainer = _trainer(tmp_path, max_steps=3, callbacks=callbacks)
        trainer.fit(model, datamodule=tiny_datamodule(synth_root))
        states.append({k: v.clone() for k, v in model.state_dict().items()})
    for k in states[0]:
        assert torch.equal(states[0][k], states[1][k]), k


class _StopAt(L.Callback):
    def __init__(self, step: int, path: str):
        self.step, self.path = step, path

    def on_train_epoch_end(self, trainer, module):
        # Where ModelCheckpoint saves by default; then the run "crashes".
        if trainer.global_step == self.step:
            trainer.save_checkpoint(self.path)
            trainer.should_stop = True


def test_exact_resume(tmp_path, synth_root):
    """N steps straight == N/2 steps, stop, resume from the checkpoint for N/2 more: same
    student, EMA teacher, optimiser state and sampler position (epoch boundary)."""
    dm_kw = dict(batch_size=2)

    def make():
        return FixMatch(Tiny3D(width=4), num_classes=4, threshold=0.5, teacher=EMATeacher(0.9), lr=0.05)

    steps_per_epoch = tiny_datamodule(synth_root, **dm_kw).steps_per_epoch()
    n = 2 * steps_per_epoch

    L.seed_everything(0)
    straight = make()
    t = _trainer(tmp_path / "a", max_steps=-1, max_epochs=2)
    t.fit(straight, datamodule=tiny_datamodule(synth_root, **dm_kw))

    ckpt = str(tmp_path / "half.ckpt")
    L.seed_everything(0)
    first = make()
    t1 = _trainer(tmp_path / "b", max_steps=-1, max_epochs=2, callbacks=[_StopAt(n // 2, ckpt)])
    t1.fit(first, datamodule=tiny_datamodule(synth_root, **dm_kw))
    assert t1.global_step == n // 2

    L.seed_everything(123)  # a different seed: everything must come from the checkpoint
    resumed = make()
    t2 = _trainer(tmp_path / "c", max_steps=-1, max_epochs=2)
    t2.fit(resumed, datamodule=tiny_datamodule(synth_root, **dm_kw), ckpt_path=ckpt)
    assert t2.global_step == n and t2.current_epoch == t.current_epoch
    a, b = straight.state_dict(), resumed.state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert int(resumed.teacher.num_updates) == n
    oa, ob = t.optimizers[0].state_dict()["state"], t2.optimizers[0].state_dict()["state"]
    assert all(torch.equal(oa[i]["momentum_buffer"], ob[i]["momentum_buffer"]) for i in oa)


def test_pseudo_labeler_and_threshold_are_arguments():
    m = FixMatch(Tiny3D(width=4), num_classes=3, pseudo_labeler=PseudoLabeler(0.5, final_threshold=0.9, schedule_steps=10))
    assert m.pseudo_labeler.current_threshold(10) == pytest.approx(0.9)
    assert FixMatch(Tiny3D(width=4), num_classes=3, threshold=0.7).pseudo_labeler.threshold == 0.7
    assert "pseudo_labeler" not in m.hparams and m.hparams["threshold"] == 0.95  # modules live in the state dict
