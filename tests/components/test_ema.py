"""EMATeacher: the update rule, its schedules, the BatchNorm buffer policies and its guards."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ssvar.components import EMATeacher


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))


def test_update_rule_and_once_per_step():
    student = _net()
    ema = EMATeacher(decay=0.9).attach(student)
    before = {k: v.clone() for k, v in ema.model.state_dict().items()}
    with torch.no_grad():
        for p in student.parameters():
            p.add_(1.0)
    ema.update(student, step=1)
    for (name, p_t), (_, p_s) in zip(ema.model.named_parameters(), student.named_parameters()):
        assert torch.allclose(p_t, 0.9 * before[name] + 0.1 * p_s)
    snapshot = {k: v.clone() for k, v in ema.model.state_dict().items()}
    ema.update(student, step=1)  # same optimiser step again (e.g. gradient accumulation): no-op
    assert all(torch.equal(v, ema.model.state_dict()[k]) for k, v in snapshot.items())
    assert int(ema.num_updates) == 1


@pytest.mark.parametrize("policy", ["copy", "ema", "teacher_forward"])
def test_buffer_policies(policy):
    student = _net()
    ema = EMATeacher(decay=0.5, buffers=policy).attach(student)
    student.train()
    student(torch.randn(16, 4) * 3 + 2)  # moves the student's running stats
    t_mean0 = ema.model[1].running_mean.clone()
    ema.update(student, step=1)
    s_mean, t_mean = student[1].running_mean, ema.model[1].running_mean
    if policy == "copy":
        assert torch.equal(t_mean, s_mean)
    elif policy == "ema":
        assert torch.allclose(t_mean, 0.5 * t_mean0 + 0.5 * s_mean)
    else:
        assert torch.equal(t_mean, t_mean0)
    assert ema.model[1].num_batches_tracked == (student[1].num_batches_tracked if policy != "teacher_forward" else 0)


def test_teacher_predicts_in_eval_mode_without_grad():
    student = _net()
    ema = EMATeacher().attach(student)
    parent = nn.Module()
    parent.teacher = ema
    parent.train()  # Lightning puts the whole module in train mode
    assert not ema.model.training
    out = ema(torch.randn(3, 4))
    assert not out.requires_grad
    assert all(not p.requires_grad for p in ema.parameters())
    # Saved with the parent, including the update counter.
    keys = parent.state_dict().keys()
    assert "teacher.num_updates" in keys and "teacher.model.0.weight" in keys


def test_schedules():
    assert EMATeacher(0.99, final_decay=1.0, schedule="cosine").current_decay(0, 100) == pytest.approx(0.99)
    assert EMATeacher(0.99, final_decay=1.0, schedule="cosine").current_decay(100, 100) == pytest.approx(1.0)
    ramp = EMATeacher(0.99, schedule="rampup")
    assert ramp.current_decay(1, 100) == pytest.approx(0.5) and ramp.current_decay(10_000, 100) == pytest.approx(0.99)
    with pytest.raises(ValueError, match="final_decay"):
        EMATeacher(schedule="cosine")
    with pytest.raises(ValueError, match="buffers"):
        EMATeacher(buffers="mean")
    with pytest.raises(RuntimeError, match="attach"):
        EMATeacher()(torch.zeros(1))
