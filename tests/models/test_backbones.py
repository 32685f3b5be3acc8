"""Backbones: forward/backward on a tiny clip and loading a user's checkpoint file."""

from __future__ import annotations

import pytest
import torch

from ssvar.models import R3D18, Tiny3D


@pytest.mark.parametrize("make", [lambda: Tiny3D(width=4), R3D18])
def test_forward_backward(make):
    net = make()
    x = torch.randn(2, 3, 8, 32, 32, requires_grad=True)
    f = net(x)
    assert f.shape == (2, net.feature_dim)
    f.sum().backward()
    assert x.grad is not None and all(p.grad is not None for p in net.parameters() if p.requires_grad)


def test_tiny3d_checkpoint_hook(tmp_path):
    a, path = Tiny3D(width=4), tmp_path / "w.pt"
    torch.save(a.state_dict(), path)
    b = Tiny3D(width=4, checkpoint=str(path))
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    with pytest.raises(RuntimeError, match="does not match"):
        Tiny3D(width=8, checkpoint=str(path))


def test_r3d18_loads_torchvision_layout(tmp_path):
    from torchvision.models.video import r3d_18

    ref = r3d_18(weights=None)
    path = tmp_path / "r3d.pt"
    torch.save(ref.state_dict(), path)  # torchvision's own keys, fc included
    net = R3D18(checkpoint=str(path))
    assert torch.equal(net.net.layer1[0].conv1[0].weight, ref.layer1[0].conv1[0].weight)
