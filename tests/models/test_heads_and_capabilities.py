"""ClassifierHead / Classifier, and the declared backbone capabilities with their one check."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ssvar.models import (
    R3D18,
    BackboneCapabilityError,
    Classifier,
    ClassifierHead,
    SlowOnlyR50,
    TimeSformer,
    Tiny3D,
    backbone_can,
    check_backbone,
)
from ssvar.models.resnet3d import ResNet3d18


def test_head_keeps_the_checkpoint_key_layout():
    head = ClassifierHead(8, 3, dropout=0.2)
    assert set(head.state_dict()) == {"1.weight", "1.bias"}  # dropout at 0, linear at 1, as before
    assert isinstance(head[0], nn.Dropout) and head[0].p == 0.2
    with pytest.raises(ValueError, match="num_classes"):
        ClassifierHead(8, 1)
    with pytest.raises(ValueError, match="dropout"):
        ClassifierHead(8, 3, dropout=1.0)


def test_classifier_adds_no_keys_of_its_own():
    bb, head = Tiny3D(width=4), ClassifierHead(16, 3)
    c = Classifier(bb, head)
    assert set(c.state_dict()) == {f"backbone.{k}" for k in bb.state_dict()} | {f"head.{k}" for k in head.state_dict()}
    x = torch.randn(2, 3, 4, 16, 16)
    c.eval()
    assert torch.equal(c(x), head(bb(x)))


@pytest.mark.parametrize(
    "make, caps",
    [
        (lambda: Tiny3D(width=4), {"stage_features", "time_features"}),
        (lambda: R3D18(), {"stage_features", "time_features"}),
        (lambda: ResNet3d18(), {"stage_features", "time_features"}),
        (lambda: SlowOnlyR50(width_multiplier=0.25), {"stage_features", "time_features"}),
        (
            lambda: TimeSformer(
                variant=None, embed_dim=16, depth=1, num_heads=2, patch_size=8, img_size=24, num_frames=4
            ),
            {"time_features", "token_hook"},
        ),
    ],
)
def test_declared_capabilities(make, caps):
    bb = make()
    assert {c for c in ("stage_features", "time_features", "token_hook") if backbone_can(bb, c)} == caps
    check_backbone(bb, needs=tuple(caps))  # what it declares passes


def test_time_features_of_a_cnn_pool_like_forward():
    bb = Tiny3D(width=4).eval()
    x = torch.randn(2, 3, 8, 32, 32)
    pooled, per_time = bb.time_features(x)
    assert per_time.shape[0] == 2 and per_time.shape[2] == bb.feature_dim
    assert torch.equal(pooled, bb(x))
    assert torch.allclose(pooled, per_time.mean(1), atol=1e-6)


def test_check_names_the_argument_and_the_method():
    with pytest.raises(BackboneCapabilityError, match=r"aux_backbone: ActNetFormer needs patch tokens.*Tiny3D"):
        check_backbone(Tiny3D(width=4), "aux_backbone", "ActNetFormer", needs=("token_hook",))
    with pytest.raises(TypeError, match="backbone: Linear has no feature_dim"):
        check_backbone(nn.Linear(2, 2))
    # A capability error is both a TypeError and a ValueError (what the per-method checks raised).
    assert issubclass(BackboneCapabilityError, TypeError) and issubclass(BackboneCapabilityError, ValueError)
    with pytest.raises(ValueError, match="unknown backbone capability"):
        backbone_can(Tiny3D(width=4), "optical_flow")


def test_an_undeclared_custom_module_has_no_capabilities():
    class Custom(nn.Module):
        feature_dim = 4

        def forward_stages(self, x):  # present, but not declared: not trusted
            return [x]

    assert not backbone_can(Custom(), "stage_features")
    check_backbone(Custom())  # pooled features only: fine for most methods
