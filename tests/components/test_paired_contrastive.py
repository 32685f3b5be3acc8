"""PairedContrastive, the one part behind TG-FixMatch's cross-modal and ActNetFormer's
cross-architecture contrastive losses: checkpoints written with the two former classes keep
loading (same submodule names and shapes), and the deprecated names build the same thing."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ssvar.components import CrossArchContrastiveHead, CrossModalContrastive, PairedContrastive, info_nce, nt_xent
from ssvar.methods import ActNetFormer, TGFixMatch
from ssvar.models import Tiny3D

BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _bn(prefix: str, n: int, affine: bool = True) -> dict:
    names = BN if affine else BN[2:]
    return {f"{prefix}.{k}": (() if k == "num_batches_tracked" else (n,)) for k in names}


def ltg_layout(da: int, db: int, hidden: int, proj: int) -> dict:
    """Keys and shapes of ``CrossModalContrastive`` (ssvar 0.1.0): 3 layers, last BN non-affine."""
    out = {}
    for side, d in (("a", da), ("b", db)):
        p = f"head_{side}.net"
        out[f"{p}.0.weight"] = (hidden, d)
        out |= _bn(f"{p}.1", hidden)
        out |= {f"{p}.3.weight": (hidden, hidden), f"{p}.3.bias": (hidden,)}
        out |= _bn(f"{p}.4", hidden)
        out |= {f"{p}.6.weight": (proj, hidden), f"{p}.6.bias": (proj,)}
        out |= _bn(f"{p}.7", proj, affine=False)
    return out


def simclr_layout(da: int, db: int, hidden: int, proj: int) -> dict:
    """Keys and shapes of ``CrossArchContrastiveHead`` (ssvar 0.1.0): 2 layers, no last BN."""
    out = {}
    for side, d in (("a", da), ("b", db)):
        p = f"head_{side}.net"
        out[f"{p}.0.weight"] = (hidden, d)
        out |= _bn(f"{p}.1", hidden)
        out |= {f"{p}.3.weight": (proj, hidden), f"{p}.3.bias": (proj,)}
    return out


def _shapes(state: dict, prefix: str = "") -> dict:
    return {k[len(prefix):]: tuple(v.shape) for k, v in state.items() if k.startswith(prefix)}


def _random_state(layout: dict) -> dict:
    g = torch.Generator().manual_seed(3)
    return {
        k: (torch.tensor(5) if k.endswith("num_batches_tracked") else torch.rand(s, generator=g) + 0.5)
        for k, s in layout.items()
    }


@pytest.mark.parametrize(
    "kwargs, layout",
    [
        ({"proj_dim": 8, "hidden_dim": 8, "num_layers": 3, "temperature": 0.5, "loss": "info_nce", "last_bn": True},
         ltg_layout(6, 5, 8, 8)),
        ({"proj_dim": 4, "hidden_dim": 8}, simclr_layout(6, 5, 8, 4)),
    ],
    ids=["tg_fixmatch", "actnetformer"],
)
def test_old_state_dicts_load_strictly(kwargs, layout):
    m = PairedContrastive(6, 5, **kwargs)
    assert _shapes(m.state_dict()) == layout
    old = _random_state(layout)
    m.load_state_dict(old, strict=True)
    assert all(torch.equal(v, old[k]) for k, v in m.state_dict().items())


def test_the_methods_keep_their_contrastive_keys():
    tg = TGFixMatch(Tiny3D(width=4), num_classes=3, proj_dim=8)
    d = tg.backbone.feature_dim
    assert _shapes(tg.state_dict(), "contrastive.") == ltg_layout(d, d, 8, 8)
    anf = ActNetFormer(Tiny3D(width=4), num_classes=3, aux_backbone=Tiny3D(width=8), proj_dim=4, proj_hidden_dim=8)
    assert _shapes(anf.state_dict(), "contrastive.") == simclr_layout(
        anf.backbone.feature_dim, anf.aux_backbone.feature_dim, 8, 4
    )
    # ActNetFormer trains each head with its own model: the names its parameter groups use exist.
    assert isinstance(anf.contrastive.head_a, nn.Module) and isinstance(anf.contrastive.head_b, nn.Module)


def test_forms_compute_their_losses_on_the_projected_embeddings():
    torch.manual_seed(0)
    fa, fb = torch.randn(6, 10), torch.randn(6, 7)
    ltg = PairedContrastive(
        10, 7, proj_dim=8, hidden_dim=8, num_layers=3, temperature=0.5, loss="info_nce", last_bn=True
    )
    ha, hb = ltg.head_a(fa), ltg.head_b(fb)
    assert torch.equal(ltg(fa, fb), 0.5 * (info_nce(ha, hb, 0.5) + info_nce(hb, ha, 0.5)))
    assert ltg.last_num_negatives == 5
    anf = PairedContrastive(10, 7, proj_dim=4, hidden_dim=8)
    assert torch.equal(anf(fa, fb), nt_xent(anf.head_a(fa), anf.head_b(fb), 0.1))
    assert anf.last_num_negatives == 10
    with pytest.raises(ValueError, match="loss"):
        PairedContrastive(4, 4, loss="triplet")


@pytest.mark.parametrize(
    "old, new",
    [
        (
            lambda: CrossModalContrastive(10, 7, hidden_dim=8, proj_dim=8),
            lambda: PairedContrastive(
                10, 7, proj_dim=8, hidden_dim=8, num_layers=3, temperature=0.5, loss="info_nce", last_bn=True
            ),
        ),
        (
            lambda: CrossArchContrastiveHead(10, 7, proj_dim=4, hidden_dim=8),
            lambda: PairedContrastive(10, 7, proj_dim=4, hidden_dim=8, num_layers=2, temperature=0.1, loss="nt_xent"),
        ),
    ],
    ids=["CrossModalContrastive", "CrossArchContrastiveHead"],
)
def test_deprecated_names_build_the_same_part(old, new):
    torch.manual_seed(1)
    with pytest.deprecated_call():
        a = old()
    torch.manual_seed(1)
    b = new()
    assert isinstance(a, PairedContrastive) and (a.loss, a.temperature) == (b.loss, b.temperature)
    assert _shapes(a.state_dict()) == _shapes(b.state_dict())
    fa, fb = torch.randn(6, 10), torch.randn(6, 7)
    assert torch.equal(a(fa, fb), b(fa, fb))
