"""Two-network methods: ``init_aux_backbone_from`` starts the auxiliary network from its own
checkpoint when the fit starts (``init_backbone_from`` starts only the primary one)."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from synth import tiny_datamodule, tiny_trainer

from ssvar.methods import CMPL, ActNetFormer
from ssvar.models import Tiny3D


def _ckpt(path, width: int, seed: int) -> dict[str, torch.Tensor]:
    """A pretraining run's checkpoint layout: the backbone's tensors under ``backbone.``."""
    torch.manual_seed(seed)
    state = {f"backbone.{k}": v.clone() for k, v in Tiny3D(width=width).state_dict().items()}
    torch.save({"state_dict": state, "epoch": 0}, path)
    return {k.removeprefix("backbone."): v for k, v in state.items()}


def _same(module: torch.nn.Module, state: dict[str, torch.Tensor]) -> bool:
    # parameters only: BatchNorm's running statistics move in a training step even at lr 0
    return all(torch.equal(v, state[k]) for k, v in module.named_parameters())


@pytest.mark.parametrize(
    "make",
    [
        lambda **kw: CMPL(Tiny3D(width=4), num_classes=4, aux_backbone=Tiny3D(width=2), **kw),
        lambda **kw: ActNetFormer(Tiny3D(width=4), num_classes=4, aux_backbone=Tiny3D(width=2), proj_dim=8,
                                  proj_hidden_dim=16, **kw),
    ],
    ids=["cmpl", "actnetformer"],
)
def test_each_network_starts_from_its_own_checkpoint(tmp_path, make):
    primary = _ckpt(tmp_path / "primary.ckpt", width=4, seed=1)
    aux = _ckpt(tmp_path / "aux.ckpt", width=2, seed=2)
    L.seed_everything(0)
    model = make(init_backbone_from=str(tmp_path / "primary.ckpt"), init_aux_backbone_from=str(tmp_path / "aux.ckpt"),
                 lr=0.0)  # lr 0: the weights after the fit are the ones it started from
    assert not _same(model.aux_backbone, aux)  # nothing is read before the fit
    root = str(tmp_path / "synth")
    tiny_trainer(root, max_steps=1).fit(model, datamodule=tiny_datamodule(root))
    assert _same(model.backbone, primary)
    assert _same(model.aux_backbone, aux)


def test_a_checkpoint_of_another_architecture_is_refused(tmp_path):
    _ckpt(tmp_path / "aux.ckpt", width=4, seed=2)  # the primary's width, not the auxiliary's
    model = CMPL(Tiny3D(width=4), num_classes=4, aux_backbone=Tiny3D(width=2),
                 init_aux_backbone_from=str(tmp_path / "aux.ckpt"))
    with pytest.raises(RuntimeError, match="shape mismatches"):
        model.load_initial_weights()
