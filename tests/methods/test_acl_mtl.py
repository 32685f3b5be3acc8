"""ACL+MTL: a tiny fit with every term, the ablation switches, construction errors, the hidden
labels, exact resume of bank / prototypes / GMM, and a 2-process DDP fit with identical banks."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from synth import tiny_datamodule, tiny_trainer
from torch import nn

from ssvar.components import EMATeacher
from ssvar.methods import ACLMTL, Supervised
from ssvar.models import Tiny3D


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    return str(tmp_path_factory.mktemp("synth"))


def _model(**kw):
    args = dict(
        threshold=0.0, teacher=EMATeacher(0.9), lr=0.05, bank_size=16, min_fill=4, refit_every=2,
        proj_dim=8, proj_hidden_dim=16, reliability_threshold=0.0,
    )
    args.update(kw)
    return ACLMTL(Tiny3D(width=4), num_classes=4, **args)


def _trainer(tmp_path, **kw):
    return tiny_trainer(tmp_path, deterministic=True, **kw)


def test_fit_logs_every_term_and_fills_the_bank(tmp_path, synth_root):
    L.seed_everything(0)
    model = _model()
    trainer = _trainer(tmp_path, max_steps=4)
    trainer.fit(model, datamodule=tiny_datamodule(synth_root))
    m = trainer.callback_metrics
    for key in ("train/loss_supervised", "train/loss_unsupervised", "train/loss_acl", "train/loss_mtl_calibration",
                "train/loss_mtl_align", "train/acl_reliability", "train/gmm_mean_high", "train/mtl_attention_max",
                "train/pl_acc", "train/ema_decay"):
        assert key in m, key
    assert m["train/loss_acl"] > 0 and m["train/loss_mtl_calibration"] > 0
    bank = model.bank
    assert int(bank.filled) == 8 and int(bank.steps) == 4 and int(bank.gmm.num_fits) >= 2
    assert bank.prototype_seen.any() and torch.allclose(bank.prototypes[bank.prototype_seen].norm(dim=1), torch.ones(1))
    # The teacher follows backbone + head + projector; test/predict use backbone + head only.
    assert int(model.teacher.num_updates) == 4 and model.teacher.model.projector is not None
    inference_keys = set(model.inference_model().state_dict())
    assert inference_keys and all(k.startswith(("backbone.", "head.")) for k in inference_keys)
    plain = Supervised(Tiny3D(width=4), num_classes=4)
    plain.load_state_dict(
        {k: v for k, v in model.state_dict().items() if k.startswith(("backbone.", "head."))}, strict=False
    )
    x = torch.randn(2, 3, 4, 24, 24)
    model.eval(), plain.eval()
    assert torch.allclose(model(x), plain(x))


@pytest.mark.parametrize("use_acl,use_mtl", [(True, False), (False, True), (False, False)])
def test_switches_drop_a_module_entirely(use_acl, use_mtl, tmp_path, synth_root):
    model = _model(use_acl=use_acl, use_mtl=use_mtl)
    assert (model.bank is not None) == use_acl and (model.projector is not None) == use_acl
    assert (model.calibration is not None) == use_mtl
    assert ("long" in model.views()["unlabeled"]) == use_mtl
    L.seed_everything(0)
    trainer = _trainer(tmp_path, max_steps=2)
    trainer.fit(model, datamodule=tiny_datamodule(synth_root))
    keys = set(trainer.callback_metrics)
    assert ("train/loss_acl" in keys) == use_acl and ("train/loss_mtl_align" in keys) == use_mtl
    assert "train/loss_unsupervised" in keys


def test_mtl_needs_time_features_and_bad_arguments_are_named():
    class Flat(nn.Module):
        feature_dim = 4

        def forward(self, x):
            return x.mean(dim=(2, 3, 4)).repeat(1, 2)[:, :4]

    with pytest.raises(ValueError, match="use_mtl"):
        ACLMTL(Flat(), num_classes=3)
    ACLMTL(Flat(), num_classes=3, use_mtl=False, proj_hidden_dim=8, proj_dim=4)  # ACL alone is fine
    with pytest.raises(ValueError, match="mtl_scales"):
        ACLMTL(Tiny3D(width=4), num_classes=3, mtl_scales=())
    with pytest.raises(ValueError, match="prototype_features"):
        ACLMTL(Tiny3D(width=4), num_classes=3, prototype_features="both")
    with pytest.raises(ValueError, match="min_fill"):
        ACLMTL(Tiny3D(width=4), num_classes=3, bank_size=8, min_fill=64)


class _ScrambleHidden(L.Callback):
    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        h = batch["unlabeled"]["hidden_label"]
        h.copy_(torch.randint(0, 4, h.shape, generator=torch.Generator().manual_seed(batch_idx)))


def test_hidden_labels_cannot_reach_any_loss_or_the_bank(tmp_path, synth_root):
    states = []
    for callbacks in ([], [_ScrambleHidden()]):
        L.seed_everything(0)
        model = _model(prototype_features="teacher")
        _trainer(tmp_path, max_steps=3, callbacks=callbacks).fit(model, datamodule=tiny_datamodule(synth_root))
        states.append({k: v.clone() for k, v in model.state_dict().items()})
    for k in states[0]:
        assert torch.equal(states[0][k], states[1][k]), k


class _StopAt(L.Callback):
    def __init__(self, step: int, path: str):
        self.step, self.path = step, path

    def on_train_epoch_end(self, trainer, module):
        if trainer.global_step == self.step:
            trainer.save_checkpoint(self.path)
            trainer.should_stop = True


def test_exact_resume_restores_bank_prototypes_and_gmm(tmp_path, synth_root):
    """N steps straight == N/2 steps, checkpoint, resume N/2 more: identical student, teacher,
    calibration, bank, prototypes, GMM and counters."""
    dm_kw = dict(batch_size=2)
    steps_per_epoch = tiny_datamodule(synth_root, **dm_kw).steps_per_epoch()
    n = 2 * steps_per_epoch

    L.seed_everything(0)
    straight = _model()
    t = _trainer(tmp_path / "a", max_steps=-1, max_epochs=2)
    t.fit(straight, datamodule=tiny_datamodule(synth_root, **dm_kw))

    ckpt = str(tmp_path / "half.ckpt")
    L.seed_everything(0)
    first = _model()
    t1 = _trainer(tmp_path / "b", max_steps=-1, max_epochs=2, callbacks=[_StopAt(n // 2, ckpt)])
    t1.fit(first, datamodule=tiny_datamodule(synth_root, **dm_kw))
    assert t1.global_step == n // 2
    saved = torch.load(ckpt, weights_only=True)["state_dict"]
    assert int(saved["bank.gmm.num_fits"]) >= 1 and int(saved["bank.filled"]) > 0

    L.seed_everything(123)  # everything must come from the checkpoint
    resumed = _model()
    t2 = _trainer(tmp_path / "c", max_steps=-1, max_epochs=2)
    t2.fit(resumed, datamodule=tiny_datamodule(synth_root, **dm_kw), ckpt_path=ckpt)
    assert t2.global_step == n
    a, b = straight.state_dict(), resumed.state_dict()
    assert any(k.startswith("bank.gmm.") for k in a) and "bank.prototypes" in a and "bank.features" in a
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert int(resumed.bank.steps) == n and resumed.bank.num_filled == straight.bank.num_filled


class SaveBank(L.Callback):
    """Each rank saves its bank (prototypes, entries, GMM) and teacher at the end of training."""

    def __init__(self, out_dir: str):
        self.out_dir = out_dir

    def on_train_end(self, trainer, module):
        state = {k: v.detach().cpu().clone() for k, v in module.bank.state_dict().items()}
        state.update({f"teacher.{k}": v.detach().cpu().clone() for k, v in module.teacher.state_dict().items()})
        torch.save(state, f"{self.out_dir}/bank_rank{trainer.global_rank}.pt")


@pytest.mark.ddp
def test_ddp_fit_keeps_bank_prototypes_and_gmm_identical(tmp_path):
    dm = tiny_datamodule(str(tmp_path / "synth"), labeled_per_class=2, batch_size=2)
    dm.prepare_data()
    model = _model()
    trainer = tiny_trainer(tmp_path, devices=2, strategy="ddp_spawn", max_steps=3, callbacks=[SaveBank(str(tmp_path))])
    trainer.fit(model, datamodule=dm)
    s0, s1 = (torch.load(tmp_path / f"bank_rank{r}.pt") for r in (0, 1))
    for k in s0:
        assert torch.equal(s0[k], s1[k]), k
    assert int(s0["filled"]) == 12 and int(s0["gmm.num_fits"]) >= 1  # 3 steps x 2 ranks x 2 clips


@pytest.mark.parametrize("num_frames", [150, 186])
def test_short_clip_position_is_drawn_over_the_whole_video(num_frames):
    """ACL+MTL's short clip is placed like FixMatch's (over the whole video); its 4x long clip
    (8 frames at stride 32 spans 225 frames) is fitted around it. It used to be pinned to the
    middle frame whenever the long clip did not fit: 1 distinct start in 200 draws."""
    from ssvar.data.dataset import VideoDataset
    from ssvar.data.decode import VideoInfo
    from ssvar.data.index import VideoIndex, VideoRecord
    from ssvar.methods import FixMatch

    index = VideoIndex([VideoRecord("v.mp4", 0)], ["a"])
    info = VideoInfo(num_frames=num_frames, fps=25.0, width=32, height=32)

    def starts(model) -> tuple[set[int], list[dict]]:
        ds = VideoDataset(".", index, model.views()["unlabeled"], num_frames=8, stride=8, labeled=False)
        torch.manual_seed(0)
        plans = [ds._plan(info) for _ in range(200)]
        return {int(p["weak"][0][0]) for p in plans}, plans

    acl, plans = starts(_model(mtl_scales=(2, 4)))
    fixmatch, _ = starts(FixMatch(Tiny3D(width=4), num_classes=4))
    assert len(fixmatch) > 50
    assert len(acl) > len(fixmatch) / 2
    for p in plans:  # every long clip lies in the video and covers the short clip's frames
        short = p["weak"][0]
        for long in p["long"]:
            assert long.min() >= 0 and long.max() < num_frames
            assert long.min() <= short.min() and long.max() >= short.max()
        assert (p["strong"][0] == short).all()
