"""Mean Teacher's consistency term in a real training step against a loop written from the paper:
the squared distance (or KL divergence) between the teacher's class probabilities on the weak view
and the student's on the strong view, per clip, averaged, times the consistency weight."""

from __future__ import annotations

import copy
import math

import lightning as L
import pytest
import torch
from synth import tiny_datamodule, tiny_trainer

from ssvar.components import EMATeacher
from ssvar.methods import MeanTeacher
from ssvar.models import Tiny3D


class FirstStep(L.Callback):
    """Keeps the (normalised) batch of the first step and a copy of the method as it was then."""

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if trainer.global_step == 0:
            self.batch = copy.deepcopy(batch)
            self.model = copy.deepcopy(module)


def _loop_consistency(student: torch.Tensor, teacher: torch.Tensor, kind: str) -> float:
    total = 0.0
    for s_row, t_row in zip(student.tolist(), teacher.tolist()):
        ps = [math.exp(v) / sum(math.exp(u) for u in s_row) for v in s_row]
        pt = [math.exp(v) / sum(math.exp(u) for u in t_row) for v in t_row]
        if kind == "mse":
            total += sum((a - b) ** 2 for a, b in zip(ps, pt))
        else:  # KL(teacher || student)
            total += sum(b * math.log(b / a) for a, b in zip(ps, pt))
    return total / len(student)


@pytest.mark.parametrize("kind", ["mse", "kl"])
def test_logged_consistency_equals_the_loop(tmp_path, kind):
    L.seed_everything(0)
    model = MeanTeacher(Tiny3D(width=4), num_classes=4, teacher=EMATeacher(0.9), consistency_weight=3.0,
                        rampup_steps=0, consistency=kind, dropout=0.0, lr=0.05)
    spy = FirstStep()
    trainer = tiny_trainer(tmp_path, max_steps=1, deterministic=True, callbacks=[spy])
    trainer.fit(model, datamodule=tiny_datamodule(str(tmp_path / "synth")))
    logged = float(trainer.callback_metrics["train/loss_consistency"])
    unl = spy.batch["unlabeled"]
    ref = spy.model.train()  # the student as the step saw it: training mode, batch statistics
    with torch.no_grad():
        teacher_logits = ref.teacher(unl["weak"])
        student_logits = ref(unl["strong"])
    want = 3.0 * _loop_consistency(student_logits.double(), teacher_logits.double(), kind)
    assert want > 1e-4  # the student and its teacher disagree on the strong views: the term is tested
    assert logged == pytest.approx(want, rel=1e-4)
