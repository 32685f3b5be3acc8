"""Weights handed between stages: the state-dict containers read_state_dict understands, strict
load_weights (exact tensors in, every mismatch named), and FrozenTeacher (no gradients, always
eval, whatever the trainer does)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ssvar.components import FrozenTeacher, load_weights
from ssvar.components.weights import read_state_dict
from ssvar.models import Tiny3D


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Dropout(0.5), nn.Linear(4, 2))


@pytest.mark.parametrize("wrap", ["state_dict", "model_state", "model", None])
def test_read_state_dict_unwraps_every_container(tmp_path, wrap):
    state = _net().state_dict()
    path = str(tmp_path / "w.ckpt")
    torch.save({wrap: state, "epoch": 3} if wrap else state, path)
    got = read_state_dict(path)
    assert got.keys() == state.keys() and all(torch.equal(got[k], v) for k, v in state.items())


def test_read_state_dict_refuses_what_is_not_a_state_dict(tmp_path):
    path = str(tmp_path / "list.pt")
    torch.save([torch.zeros(1)], path)
    with pytest.raises(TypeError, match="list.pt holds a list"):
        read_state_dict(path)


def test_load_weights_copies_exactly_the_prefixed_tensors(tmp_path):
    src = _net(1)
    path = str(tmp_path / "run.ckpt")
    torch.save(
        {"state_dict": {**{f"backbone.{k}": v for k, v in src.state_dict().items()}, "head.w": torch.ones(2)}}, path
    )
    dst = _net(2)
    assert not torch.equal(dst[0].weight, src[0].weight)
    assert load_weights(dst, path, "backbone.") == len(src.state_dict())
    for k, v in src.state_dict().items():  # BatchNorm buffers included
        assert torch.equal(dst.state_dict()[k], v), k


def test_load_weights_names_every_mismatch(tmp_path):
    path = str(tmp_path / "w.ckpt")
    torch.save({"state_dict": {f"backbone.{k}": v for k, v in _net().state_dict().items()}}, path)
    with pytest.raises(KeyError, match=r"starts with 'encoder\.'.*\['backbone\.'\]"):
        load_weights(_net(), path, "encoder.")
    with pytest.raises(RuntimeError, match=r"w\.ckpt.*missing \['extra\.weight'"):
        bigger = _net()
        bigger.add_module("extra", nn.Linear(1, 1))
        load_weights(bigger, path, "backbone.")
    with pytest.raises(RuntimeError, match=r"1 unexpected \['3\.weight'\]|unexpected \['3\.weight', '3\.bias'\]"):
        load_weights(nn.Sequential(*list(_net())[:3]), path, "backbone.")
    wide = nn.Sequential(nn.Linear(3, 5), nn.BatchNorm1d(5), nn.Dropout(0.5), nn.Linear(5, 2))
    with pytest.raises(RuntimeError, match=r"shape mismatches \['0\.weight: file \(4, 3\) vs module \(5, 3\)'"):
        load_weights(wide, path, "backbone.")
    untouched = _net(5)
    before = {k: v.clone() for k, v in untouched.state_dict().items()}
    with pytest.raises(RuntimeError):
        load_weights(nn.Sequential(*list(untouched)[:3]), path, "backbone.")
    assert all(torch.equal(untouched.state_dict()[k], v) for k, v in before.items())  # nothing half-loaded


def test_frozen_teacher_never_trains():
    net = _net(3)
    net.train()
    teacher = FrozenTeacher(net)
    assert not any(p.requires_grad for p in teacher.parameters())
    bn_before = net[1].running_mean.clone()
    x = torch.randn(8, 3)
    teacher.train()  # what Lightning does every epoch
    assert not teacher.training and not net.training
    net[1].training = net[2].training = True  # flags set directly, bypassing .train()
    y1, y2 = teacher(x), teacher(x)
    assert torch.equal(y1, y2)  # dropout off
    assert torch.equal(net[1].running_mean, bn_before)  # BatchNorm statistics not updated
    assert not y1.requires_grad  # forward under no_grad
    # The same numbers as the network itself in eval mode.
    net.eval()
    with torch.no_grad():
        assert torch.equal(net(x), y1)


def test_frozen_teacher_from_a_checkpoint_matches_the_trained_backbone(tmp_path):
    """The stage hand-off as methods use it: a backbone saved by one run, loaded into a fresh
    backbone, frozen: same features as the original in eval mode."""
    torch.manual_seed(0)
    trained = Tiny3D(width=4).eval()
    path = str(tmp_path / "stage.ckpt")
    torch.save({"state_dict": {f"backbone.{k}": v for k, v in trained.state_dict().items()}}, path)
    fresh = Tiny3D(width=4)
    load_weights(fresh, path, "backbone.")
    x = torch.randn(2, 3, 4, 16, 16)
    with torch.no_grad():
        assert torch.equal(FrozenTeacher(fresh)(x), trained(x))
