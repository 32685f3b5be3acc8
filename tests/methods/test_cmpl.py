"""CMPL: the default auxiliary (1/4-width 3D-ResNet-50), the loss, per-model learning rates,
and primary-only inference from a checkpoint."""

from __future__ import annotations

import lightning as L
import pytest
import torch
import torch.nn.functional as F

from ssvar.methods import CMPL, Supervised
from ssvar.models import R3D18, SlowOnlyR50, Tiny3D
from synth import tiny_datamodule, tiny_trainer


def test_default_auxiliary_is_a_quarter_width_r50():
    m = CMPL(Tiny3D(width=4), num_classes=3)
    aux = m.aux_backbone
    assert isinstance(aux, SlowOnlyR50) and aux.feature_dim == 512 and aux.stage_dims == [64, 128, 256, 512]
    assert 1.5e6 < sum(p.numel() for p in aux.parameters()) < 2.5e6  # vs ~31.6M at full width
    assert m.cross_pl.pseudo_labeler.threshold == 0.8 and m.lambda_u == 2.0
    assert m.hparams.weight_decay == 1e-3 and m.hparams.momentum == 0.9
    # The other reading of the auxiliary is one argument away.
    assert CMPL(Tiny3D(width=4), num_classes=3, aux_backbone=R3D18()).aux_backbone.feature_dim == 512
    with pytest.raises(ValueError, match="width_multiplier"):
        SlowOnlyR50(width_multiplier=0.3)
    with pytest.raises(ValueError, match="lambda_u"):
        CMPL(Tiny3D(width=4), num_classes=3, aux_backbone=Tiny3D(width=2), lambda_u=-1)


def test_loss_and_learning_rates():
    torch.manual_seed(0)
    m = CMPL(Tiny3D(width=4), num_classes=4, aux_backbone=Tiny3D(width=2), threshold=0.0, lambda_u=2.0, lr=0.1, aux_lr=0.03).eval()
    g = torch.Generator().manual_seed(1)
    clip = lambda n: torch.randn(n, 3, 4, 16, 16, generator=g)  # noqa: E731
    lab = {"weak": clip(2), "label": torch.tensor([0, 3])}
    unl = {"weak": clip(4), "strong": clip(4)}
    out = m.train_step(lab, unl)
    losses = out.losses
    f, a = m, m.networks()["auxiliary"].model
    ls = F.cross_entropy(f(lab["weak"]), lab["label"]) + F.cross_entropy(a(lab["weak"]), lab["label"])
    # threshold 0: every pseudo-label counts; F learns A's labels and A learns F's, same clips.
    lu = F.cross_entropy(f(unl["strong"]), a(unl["weak"]).argmax(1)) + F.cross_entropy(a(unl["strong"]), f(unl["weak"]).argmax(1))
    assert torch.allclose(losses["supervised"], ls, atol=1e-5)
    assert torch.allclose(losses["unsupervised"], 2.0 * lu, atol=1e-5)
    assert set(losses) == {"supervised", "unsupervised"}
    groups = {g["name"]: g["lr"] for g in m.parameter_groups()}
    assert groups == {"primary": 0.1, "primary_no_decay": 0.1, "auxiliary": 0.03, "auxiliary_no_decay": 0.03}


def test_fit_and_primary_only_checkpoint(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("synth"))
    L.seed_everything(0)
    model = CMPL(Tiny3D(width=4), num_classes=4, aux_backbone=Tiny3D(width=2), threshold=0.0)
    trainer = tiny_trainer(root, max_steps=2)
    dm = tiny_datamodule(root)
    trainer.fit(model, datamodule=dm)
    for key in ("train/loss_supervised", "train/loss_unsupervised", "train/pl_acc", "train/pl_from_primary_acc"):
        assert key in trainer.callback_metrics, key
    ckpt = f"{root}/cmpl.ckpt"
    trainer.save_checkpoint(ckpt)
    # The primary backbone loads straight from the Lightning checkpoint; the head by prefix.
    backbone = Tiny3D(width=4, checkpoint=None)
    backbone.load_checkpoint(ckpt, prefix="backbone.")
    plain = Supervised(backbone, num_classes=4)
    state = torch.load(ckpt, weights_only=True)["state_dict"]
    plain.head.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("head.")})
    model.eval(), plain.eval()
    x = torch.randn(2, 3, 4, 24, 24)
    assert torch.allclose(model(x), plain(x), atol=1e-6)
