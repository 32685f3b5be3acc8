"""TG-FixMatch: temporal gradients from one decode, the losses, their DDP equivalence, the
stop-gradient on the TG side, Precise-BN, and RGB-only inference."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch
from ddp import averaged_grads, mean_over_ranks, run_ddp, shard
from synth import RecordIndices, tiny_datamodule, tiny_trainer
from torch import nn

from ssvar.components import PreciseBN, recompute_bn_stats, split_rgb_tg, temporal_gradient
from ssvar.components.distillation import feature_alignment_loss as feature_alignment
from ssvar.data.dataset import VideoDataset, ViewSpec
from ssvar.data.index import VideoIndex, VideoRecord
from ssvar.data.transforms import RANDAUGMENT_OPS, AugmentConfig
from ssvar.methods import Supervised, TGFixMatch
from ssvar.models import TimeSformer, Tiny3D


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    return str(tmp_path_factory.mktemp("synth"))


def test_temporal_gradient_formula():
    a = torch.tensor([0, 10, 255, 100], dtype=torch.uint8)
    b = torch.tensor([255, 3, 0, 100], dtype=torch.uint8)
    assert temporal_gradient(a, b).tolist() == [0, 131, 255, 127]  # floor((a - b + 255) / 2)
    x = torch.stack([a, b]).view(1, 1, 2, 2, 2).expand(1, 3, 2, 2, 2).reshape(1, 3, 2, 2, 2)
    rgb, tg = split_rgb_tg(torch.cat([x, x], dim=2))
    assert rgb.shape == tg.shape == (1, 3, 2, 2, 2)


@pytest.mark.parametrize("offset", [1, 3])
def test_next_frames_come_from_the_same_decode_and_crop(video_factory, offset):
    from helpers import clip_indices_of

    path = video_factory("v.mp4", num_frames=40)
    index = VideoIndex([VideoRecord("v.mp4", 0)], ["a"])
    calls = []
    ds = VideoDataset(
        str(path).rsplit("/", 1)[0], index, {"weak": ViewSpec("weak", next_offset=offset)},
        num_frames=4, stride=3, augment=AugmentConfig(crop_size=16, area_range=(1.0, 1.0)), short_side=16,
    )
    real = ds.decoder.decode
    ds.decoder.decode = lambda *a, **k: calls.append(1) or real(*a, **k)
    x = ds[0]["weak"]  # [C, 2T, H, W]
    assert x.shape == (3, 8, 16, 16) and len(calls) == 1
    idx = clip_indices_of(x)
    first, nxt = np.array(idx[:4]), np.array(idx[4:])
    assert (np.diff(first) == 3).all()
    assert (nxt == np.minimum(first + offset, 39)).all()


def test_fit_logs_every_term_and_tests_with_rgb_only(tmp_path, synth_root):
    L.seed_everything(0)
    model = TGFixMatch(Tiny3D(width=4), num_classes=4, threshold=0.0, proj_dim=16)
    trainer = tiny_trainer(tmp_path, max_steps=3, limit_test_batches=1)
    dm = tiny_datamodule(synth_root)
    trainer.fit(model, datamodule=dm)
    for key in (
        "train/loss_supervised",
        "train/loss_unsupervised",
        "train/loss_align",
        "train/loss_contrastive",
        "train/pl_acc",
    ):
        assert key in trainer.callback_metrics, key
    # Test/predict use the RGB network alone: a plain classifier with only its weights agrees.
    rgb_only = Supervised(Tiny3D(width=4), num_classes=4)
    state = {k: v for k, v in model.state_dict().items() if k.startswith(("backbone.", "head."))}
    missing, unexpected = rgb_only.load_state_dict(state, strict=False)
    assert not unexpected and not [k for k in missing if k.startswith(("backbone.", "head."))]
    x = torch.randn(2, 3, 4, 24, 24)
    model.eval(), rgb_only.eval()
    assert torch.allclose(model(x), rgb_only(x))
    inference_keys = set(model.inference_model().state_dict())
    assert inference_keys and all(k.startswith(("backbone.", "head.")) for k in inference_keys)


def test_alignment_sends_no_gradient_to_the_tg_network():
    torch.manual_seed(0)
    rgb, tg = Tiny3D(width=4), Tiny3D(width=4)
    x = torch.randn(2, 3, 4, 16, 16)
    loss = feature_alignment(rgb.forward_stages(x), tg.forward_stages(x * 0.5))
    loss.backward()
    assert all(p.grad is None for p in tg.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in rgb.parameters())


def test_backbone_without_stages_is_refused_at_construction():
    with pytest.raises(ValueError, match="forward_stages"):
        TGFixMatch(TimeSformer(img_size=32, depth=1, num_frames=2), num_classes=3)


def test_precise_bn_recomputes_exact_averages(tmp_path, synth_root):
    L.seed_everything(0)
    model = TGFixMatch(Tiny3D(width=4), num_classes=4, threshold=0.5, proj_dim=16)
    cb = PreciseBN(num_batches=2, every_n_epochs=1)
    trainer = tiny_trainer(tmp_path, max_epochs=1, max_steps=-1, limit_train_batches=2, callbacks=[cb])
    trainer.fit(model, datamodule=tiny_datamodule(synth_root))
    assert cb.last_batches_used == 2
    bn = model.backbone.stages[0][1]
    assert torch.isfinite(bn.running_mean).all() and bn.momentum == 0.1  # momentum restored

    # Exactness on a toy module: the running mean becomes the average of the batch means.
    class Toy(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.bn = nn.BatchNorm1d(2)

        def precise_bn_forward(self, batch):
            self.bn(batch)

    toy = Toy()
    toy.trainer = type("T", (), {"strategy": type("S", (), {"batch_to_device": staticmethod(lambda b: b)})()})()
    batches = [torch.randn(5, 2) + i for i in range(3)]
    assert recompute_bn_stats(toy, batches, num_batches=3) == 3
    assert torch.allclose(toy.bn.running_mean, torch.stack([b.mean(0) for b in batches]).mean(0), atol=1e-6)


# ---------------------------------------------------------------- 2-process gloo
WORLD, LOCAL_B = 2, 3


def _nets():
    torch.manual_seed(3)
    rgb, tg = Tiny3D(width=4).double().eval(), Tiny3D(width=4).double().eval()  # eval BN: per-sample maps
    from ssvar.components import CrossModalContrastive

    con = CrossModalContrastive(rgb.feature_dim, tg.feature_dim, hidden_dim=8, proj_dim=8).double().eval()
    return rgb, tg, con


def _inputs():
    g = torch.Generator().manual_seed(11)
    return (torch.randn(WORLD * LOCAL_B, 3, 4, 16, 16, generator=g, dtype=torch.float64),
            torch.randn(WORLD * LOCAL_B, 3, 4, 16, 16, generator=g, dtype=torch.float64))


def _losses(rgb, tg, con, x, g):
    sr, st = rgb.forward_stages(x), tg.forward_stages(g)
    return feature_alignment(sr, st), con(sr[-1].mean((2, 3, 4)), st[-1].mean((2, 3, 4)))


def _worker(rank, world):
    rgb, tg, con = _nets()
    x, g = _inputs()
    align, contrast = _losses(rgb, tg, con, shard(x, rank, world), shard(g, rank, world))
    (align + contrast).backward()
    # What DDP does: losses and gradients averaged over the ranks.
    return {
        **mean_over_ranks({"align": align, "contrast": contrast}),
        **averaged_grads({"rgb": rgb, "tg": tg, "con": con}),
    }


@pytest.mark.ddp
def test_alignment_and_contrastive_ddp_equal_single_process():
    dist = run_ddp(_worker, WORLD)[0]
    rgb, tg, con = _nets()
    x, g = _inputs()
    align, contrast = _losses(rgb, tg, con, x, g)
    (align + contrast).backward()
    assert torch.allclose(dist["align"], align.detach(), atol=1e-10)
    assert torch.allclose(dist["contrast"], contrast.detach(), atol=1e-10)
    for prefix, net in (("rgb", rgb), ("tg", tg), ("con", con)):
        for n, p in net.named_parameters():
            ref = p.grad if p.grad is not None else torch.zeros_like(p)
            assert torch.allclose(dist[f"{prefix}.{n}"], ref, atol=1e-9, rtol=1e-7), f"{prefix}.{n}"


@pytest.mark.ddp
def test_ddp_fit_without_contrastive_term(tmp_path):
    """LTG's K400 1 % config switches the contrastive term off: no projection heads are built, so
    DDP (no find_unused_parameters) trains past its second step."""
    dm = tiny_datamodule(str(tmp_path / "synth"), labeled_per_class=2, batch_size=2)
    dm.prepare_data()
    model = TGFixMatch(Tiny3D(width=4), num_classes=dm.num_classes, threshold=0.0, contrastive_weight=0.0, proj_dim=8)
    assert model.contrastive is None
    assert not [n for n, _ in model.named_parameters() if n.startswith("contrastive.")]
    trainer = tiny_trainer(
        tmp_path, devices=2, strategy="ddp_spawn", max_steps=3, callbacks=[RecordIndices(str(tmp_path))]
    )
    trainer.fit(model, datamodule=dm)
    for r in (0, 1):
        assert len((tmp_path / f"rank{r}.jsonl").read_text().splitlines()) == 3


@pytest.mark.parametrize("mode", ["gradient", "frames"])
def test_strong_tg_view_is_augmented_after_the_difference(video_factory, mode):
    """LTG draws the TG strong view's RandAugment on the gradient image: on a static video the
    gradient is 127 everywhere, and Brightness moves it. Augmenting the frames before the
    difference (the old form, ``"frames"``) cancels it."""
    path = video_factory("static.mp4", num_frames=24, content="hgradient")
    index = VideoIndex([VideoRecord("static.mp4", 0)], ["a"])
    model = TGFixMatch(Tiny3D(width=4), num_classes=2, tg_strong_view=mode, proj_dim=8)
    brightness_only = tuple(op for op in RANDAUGMENT_OPS if op != "Brightness")
    augment = AugmentConfig(crop_size=16, area_range=(1.0, 1.0), randaugment_ops=1, randaugment_exclude=brightness_only)
    ds = VideoDataset(str(path).rsplit("/", 1)[0], index, model.views()["unlabeled"], num_frames=4, stride=2,
                      augment=augment, short_side=16, labeled=False)
    torch.manual_seed(0)
    batch = {"labeled": None, "unlabeled": {k: v[None] for k, v in ds[0].items() if isinstance(v, torch.Tensor)}}
    tg = batch["unlabeled"]["strong_tg"]
    if mode == "frames":
        tg = split_rgb_tg(tg)[1]
    assert tg.shape == (1, 3, 4, 16, 16)
    offset = (tg.float() - 127).abs().mean().item()
    if mode == "gradient":
        assert offset > 20  # a brightness factor of 1 +- 0.27 (or more) moves 127 by > 30
    else:
        assert offset < 2


def test_checkpoints_from_before_the_fidelity_fixes_still_load():
    # ssvar 0.1.0 saved `independent_tg_augment` in the hyperparameters and, with
    # contrastive_weight=0, unused projection heads in the state dict.
    import warnings

    from ssvar.methods import TGFixMatch
    from ssvar.models import Tiny3D

    old = TGFixMatch(Tiny3D(width=4), num_classes=3, contrastive_weight=1.0)
    state = {"state_dict": dict(old.state_dict())}
    assert any(k.startswith("contrastive.") for k in state["state_dict"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        new = TGFixMatch(Tiny3D(width=4), num_classes=3, contrastive_weight=0.0, independent_tg_augment=True)
    assert new.tg_strong_view == "frames" and any(
        "independent_tg_augment is deprecated" in str(w.message) for w in caught
    )
    assert TGFixMatch(Tiny3D(width=4), 3, independent_tg_augment=False).tg_strong_view == "shared"
    new.on_load_checkpoint(state)
    new.load_state_dict(state["state_dict"])  # strict: the unused heads were dropped
