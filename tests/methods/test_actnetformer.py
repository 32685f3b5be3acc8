"""ActNetFormer: two frame rates from one decode, the loss as the paper writes it, the contrastive
switch, per-model learning rates, primary-only inference from a checkpoint, and a 2-process gloo
run of the whole loss (cross pseudo-labels + cross-architecture contrastive) against one process
on the global batch."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from ddp import averaged_grads, mean_over_ranks, run_ddp, shard
from synth import tiny_datamodule, tiny_trainer

from ssvar.components import nt_xent
from ssvar.data.dataset import VideoDataset
from ssvar.data.index import VideoIndex, VideoRecord
from ssvar.data.transforms import AugmentConfig
from ssvar.methods import ActNetFormer, Supervised
from ssvar.models import TimeSformer, Tiny3D


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    return str(tmp_path_factory.mktemp("synth"))


def tiny_vit(frames: int = 4, size: int = 24) -> TimeSformer:
    return TimeSformer(None, embed_dim=16, depth=1, num_heads=2, patch_size=8, img_size=size, num_frames=frames)


def tiny_model(**kw) -> ActNetFormer:
    kw.setdefault("aux_backbone", tiny_vit())
    return ActNetFormer(Tiny3D(width=4), num_classes=4, proj_dim=8, proj_hidden_dim=16, **kw)


@pytest.mark.parametrize("aux_frames", [None, 8])
def test_two_frame_rates_come_from_one_decode_around_one_centre(video_factory, aux_frames):
    from helpers import clip_indices_of

    path = video_factory("v.mp4", num_frames=60)
    model = tiny_model(aux_stride_divisor=2, aux_num_frames=aux_frames)
    ds = VideoDataset(
        str(path).rsplit("/", 1)[0],
        VideoIndex([VideoRecord("v.mp4", 0)], ["a"]),
        model.views()["unlabeled"],
        num_frames=4,
        stride=4,
        augment=AugmentConfig(crop_size=16, area_range=(1.0, 1.0)),
        short_side=16,
        labeled=False,
    )
    calls = []
    real = ds.decoder.decode
    ds.decoder.decode = lambda *a, **k: calls.append(1) or real(*a, **k)
    torch.manual_seed(0)
    for n in range(1, 4):
        s = ds[0]
        assert len(calls) == n  # every view, both frame rates: one decode
        slow, fast = np.array(clip_indices_of(s["weak"])), np.array(clip_indices_of(s["weak_aux"]))
        assert (np.diff(slow) == 4).all() and (np.diff(fast) == 2).all()  # primary slower, auxiliary faster
        assert len(fast) == (aux_frames or 4) and slow.mean() == fast.mean()  # one centre
        assert s["strong_aux"].shape == s["weak_aux"].shape and s["strong"].shape == s["weak"].shape
    assert set(model.views()["labeled"]) == {"weak", "weak_aux"}


def _batch(bl: int, bu: int, t: int = 4, size: int = 24, seed: int = 0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    clip = lambda n: torch.randn(n, 3, t, size, size, generator=g, dtype=dtype)  # noqa: E731
    labeled = {"weak": clip(bl), "weak_aux": clip(bl), "label": torch.randint(0, 4, (bl,), generator=g)}
    unlabeled = {"weak": clip(bu), "strong": clip(bu), "weak_aux": clip(bu), "strong_aux": clip(bu)}
    return labeled, unlabeled


def test_loss_is_the_papers_objective():
    torch.manual_seed(0)
    # eval: no dropout. The threshold splits the primary's confidences of this draw (~0.296).
    tau = 0.2962
    model = tiny_model(threshold=tau, gamma=2.0, beta=2.0, temperature=0.2).eval()
    lab, unl = _batch(2, 6)
    out = model.train_step(lab, unl)
    losses, logits = out.losses, out.logits
    assert set(losses) == {"supervised", "unsupervised", "contrastive"}
    # By hand: L = (Ls^Z + Ls^A) + gamma (Lu^Z + Lu^A) + beta L_ca.
    y = lab["label"]
    z = lambda x: model(x)  # noqa: E731
    a = model.networks()["auxiliary"].model
    ls = F.cross_entropy(z(lab["weak"]), y) + F.cross_entropy(a(lab["weak_aux"]), y)

    def lu(student_strong, teacher_weak):
        p = teacher_weak.detach().softmax(1)
        conf, hard = p.max(1)
        masks.append(conf >= tau)
        return (F.cross_entropy(student_strong, hard, reduction="none") * (conf >= tau)).sum() / len(hard)

    masks = []
    lu_z = lu(z(unl["strong"]), a(unl["weak_aux"]))  # the auxiliary labels the primary
    lu_a = lu(a(unl["strong_aux"]), z(unl["weak"]))
    head = model.contrastive
    lca = nt_xent(head.head_a(model.backbone(unl["weak"])), head.head_b(model.aux_backbone(unl["weak_aux"])), 0.2)
    assert torch.allclose(losses["supervised"], ls, atol=1e-5)
    assert torch.allclose(losses["unsupervised"], 2.0 * (lu_z + lu_a), atol=1e-5)
    assert (lu_z > 0) and (lu_a > 0)  # some pseudo-labels passed the threshold in both directions
    assert 0 < int(masks[1].sum()) < len(masks[1])  # ... and some of the primary's did not
    assert torch.allclose(losses["contrastive"], 2.0 * lca, atol=1e-5)
    assert torch.allclose(logits, z(lab["weak"]), atol=1e-5)


def test_contrastive_switch_and_per_model_learning_rates():
    on, off = tiny_model(), tiny_model(contrastive=False)
    assert off.contrastive is None and not any(k.startswith("contrastive.") for k in off.state_dict())
    lab, unl = _batch(1, 2)
    assert "contrastive" not in off.train_step(lab, unl).losses
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(on) - n(off) == n(on.contrastive)
    m = tiny_model(lr=0.1, aux_lr=0.02)
    groups = {g["name"]: g for g in m.parameter_groups()}
    assert groups["primary"]["lr"] == 0.1 and groups["auxiliary"]["lr"] == 0.02
    ids = lambda g: {id(p) for p in g["params"]}  # noqa: E731
    prim, aux = (
        ids(groups["primary"]) | ids(groups["primary_no_decay"]),
        ids(groups["auxiliary"]) | ids(groups["auxiliary_no_decay"]),
    )
    assert {id(p) for p in m.contrastive.head_a.parameters()} <= prim  # each projection head trains with its model
    assert {id(p) for p in m.aux_backbone.parameters()} <= aux and not prim & aux
    assert groups["primary"]["weight_decay"] == 1e-3  # paper's weight decay; momentum 0.9
    assert m.hparams.momentum == 0.9 and m.hparams.nesterov is False


def test_paper_defaults_and_bad_configuration():
    m = ActNetFormer(Tiny3D(width=4), num_classes=3)  # default auxiliary: TimeSformer ViT-S
    assert isinstance(m.aux_backbone, TimeSformer) and m.aux_backbone.embed_dim == 384
    assert (m.aux_backbone.depth, m.aux_backbone.num_heads) == (12, 6)
    assert m.cross_pl.pseudo_labeler.threshold == 0.8 and m.gamma == 2.0 and m.beta == 2.0
    for kw, name in ((dict(gamma=-1.0), "gamma"), (dict(aux_stride_divisor=0), "aux_stride_divisor"),
                     (dict(aux_lr=0.0), "aux_lr"), (dict(aux_num_frames=0), "aux_num_frames")):
        with pytest.raises(ValueError, match=name):
            tiny_model(**kw)
    with pytest.raises(TypeError, match="aux_backbone"):
        ActNetFormer(Tiny3D(width=4), num_classes=3, aux_backbone=torch.nn.Linear(2, 2))


def test_fit_logs_every_term_and_only_the_primary_is_needed_to_test(tmp_path, synth_root):
    L.seed_everything(0)
    model = tiny_model(threshold=0.0, lr=0.05, aux_lr=0.01)
    trainer = tiny_trainer(tmp_path, max_steps=2, limit_predict_batches=1)
    dm = tiny_datamodule(synth_root)
    trainer.fit(model, datamodule=dm)
    for key in ("train/loss_supervised", "train/loss_unsupervised", "train/loss_contrastive", "train/pl_acc",
                "train/pl_from_primary_acc", "train/pl_from_primary_mask_rate", "train/acc1_labeled_aux"):
        assert key in trainer.callback_metrics, key
    assert float(trainer.callback_metrics["train/lr_auxiliary"]) < float(trainer.callback_metrics["train/lr"])
    ckpt = tmp_path / "anf.ckpt"
    trainer.save_checkpoint(ckpt)
    # A plain classifier with only the primary's weights (backbone.*, head.*) from the checkpoint.
    state = torch.load(ckpt, weights_only=True)["state_dict"]
    plain = Supervised(Tiny3D(width=4), num_classes=4)
    missing, unexpected = plain.load_state_dict(
        {k: v for k, v in state.items() if k.startswith(("backbone.", "head."))}, strict=False
    )
    assert not unexpected and not missing
    inference_keys = set(model.inference_model().state_dict())
    assert inference_keys and all(k.startswith(("backbone.", "head.")) for k in inference_keys)
    # The method predicts with the primary alone: scrambling the auxiliary changes nothing.
    with torch.no_grad():
        for p in model.aux_backbone.parameters():
            p.normal_()
    preds = [torch.cat([b["probs"] for b in tiny_trainer(tmp_path, limit_predict_batches=1).predict(m, datamodule=dm)])
             for m in (model, plain)]
    assert torch.allclose(preds[0], preds[1], atol=1e-6)


class _ScrambleHidden(L.Callback):
    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        h = batch["unlabeled"]["hidden_label"]
        h.copy_(torch.randint(0, 4, h.shape, generator=torch.Generator().manual_seed(batch_idx)))


def test_hidden_labels_cannot_reach_any_loss(tmp_path, synth_root):
    """Both models' pseudo-labels are monitored against the hidden labels; training with true and
    with scrambled hidden labels still gives bit-identical weights."""
    states = []
    for callbacks in ([], [_ScrambleHidden()]):
        L.seed_everything(0)
        model = tiny_model(threshold=0.0)
        tiny_trainer(tmp_path, max_steps=2, deterministic=True, callbacks=callbacks).fit(
            model, datamodule=tiny_datamodule(synth_root)
        )
        states.append({k: v.clone() for k, v in model.state_dict().items()})
    for k in states[0]:
        assert torch.equal(states[0][k], states[1][k]), k


def test_view_spec_refuses_a_zero_divisor():
    from ssvar.data.dataset import ViewSpec

    with pytest.raises(ValueError, match="stride_divisor"):
        ViewSpec("weak", stride_divisor=0)


# ---------------------------------------------------------------- 2-process gloo
WORLD, BL, BU = 2, 1, 2


def _ddp_model() -> ActNetFormer:
    torch.manual_seed(5)
    # eval: no dropout, BatchNorm from running statistics (per-sample maps, so ranks can match one process)
    return tiny_model(threshold=0.278, temperature=0.3).double().eval()  # splits the auxiliary's confidences


def _global_batch():
    return _batch(WORLD * BL, WORLD * BU, seed=9, dtype=torch.float64)


def _worker(rank, world):
    model = _ddp_model()
    lab, unl = _global_batch()
    losses = model.train_step(shard(lab, rank, world), shard(unl, rank, world)).losses
    sum(losses.values()).backward()
    return {**mean_over_ranks(losses), **{"grad." + n: g for n, g in averaged_grads(model).items()}}  # what DDP does


@pytest.mark.ddp
def test_loss_and_gradients_under_ddp_equal_one_process_on_the_global_batch():
    dist = run_ddp(_worker, WORLD)[0]
    model = _ddp_model()
    losses = model.train_step(*_global_batch()).losses
    sum(losses.values()).backward()
    assert set(losses) == {"supervised", "unsupervised", "contrastive"}
    assert losses["unsupervised"] > 0  # pseudo-labels passed in this draw: the term is tested
    for k, v in losses.items():
        assert torch.allclose(dist[k], v.detach(), atol=1e-10), k
    checked = 0
    for n, p in model.named_parameters():
        ref = p.grad if p.grad is not None else torch.zeros_like(p)
        assert torch.allclose(dist["grad." + n], ref, atol=1e-9, rtol=1e-7), n
        checked += bool(ref.abs().sum() > 0)
    assert checked > 10
