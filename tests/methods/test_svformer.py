"""SVFormer: the loss terms against their formulas, mixed targets, views, a tiny fit."""

from __future__ import annotations

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from synth import tiny_datamodule, tiny_trainer

from ssvar.components import EMATeacher
from ssvar.data.dataset import ViewSpec
from ssvar.methods import SVFormer
from ssvar.models import TimeSformer, Tiny3D


def tiny_vit(**kw) -> TimeSformer:
    """1 block, 16-d, 8-px patches on 24-px crops (3x3 tokens per frame), 4 frames."""
    return TimeSformer(
        **{**dict(variant=None, embed_dim=16, depth=1, num_heads=2, patch_size=8, img_size=24, num_frames=4), **kw}
    )


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    return str(tmp_path_factory.mktemp("synth"))


def test_losses_match_their_formulas(monkeypatch):
    torch.manual_seed(0)
    K, B = 4, 6
    model = SVFormer(tiny_vit(), num_classes=K, threshold=0.5, gamma1=2.0, gamma2=3.0, input_dropout=0.0).eval()
    teacher_logits = torch.tensor(
        [[4.0, 0, 0, 0], [0, 0, 0, 0], [0, 3.0, 0, 0], [0, 0, 0.5, 0], [0, 0, 0, 5.0], [1.0, 1.0, 0, 0]]
    )
    monkeypatch.setattr(model.teacher, "forward", lambda x: teacher_logits)
    draws = []
    real_draw = model.token_mix.draw
    monkeypatch.setattr(model.token_mix, "draw", lambda *a, **k: draws.append(real_draw(*a, **k)) or draws[-1])
    unlabeled = {"weak": torch.randn(B, 3, 4, 24, 24), "strong": torch.randn(B, 3, 4, 24, 24)}
    with torch.no_grad():
        losses = model.train_step(
            {"weak": torch.randn(2, 3, 4, 24, 24), "label": torch.tensor([0, 1])}, unlabeled
        ).losses
        (mix,) = draws
        p = teacher_logits.softmax(1)
        conf, hard = p.max(1)
        m = (conf >= 0.5).float()
        assert 0 < m.sum() < B  # both kinds of clips present
        s = model(unlabeled["strong"])
        expected_un = (F.cross_entropy(s, hard, reduction="none") * m).mean()
        r = mix.keep.float().mean()
        y = torch.where(m[:, None] > 0, F.one_hot(hard, K).float(), p)
        y_mix, m_mix = r * y + (1 - r) * y[mix.perm], r * m + (1 - r) * m[mix.perm]
        f_mix = model.head(model.backbone(unlabeled["strong"], token_hook=mix))  # the same draw: same mask
        expected_mix = (((f_mix - y_mix) ** 2).mean(1) * m_mix).mean()
    torch.testing.assert_close(losses["unsupervised"], 2.0 * expected_un)
    torch.testing.assert_close(losses["mix"], 3.0 * expected_mix)


def test_mixed_targets_equal_the_mixing_ratio():
    torch.manual_seed(1)
    K, B = 5, 4
    model = SVFormer(tiny_vit(), num_classes=K, threshold=0.5)
    logits = torch.tensor([[6.0, 0, 0, 0, 0], [0, 6.0, 0, 0, 0], [0, 0, 6.0, 0, 0], [0.1, 0, 0, 0, 0]])
    pl = model.pseudo_labeler(logits)
    assert pl.mask.tolist() == [1.0, 1.0, 1.0, 0.0]
    mix = model.token_mix.draw(B)
    mix(torch.zeros(B, 4, 9, 16))  # the mask is drawn on the tokens
    r = mix.ratio
    assert r == pytest.approx(float(mix.keep.float().mean()))
    y_mix, m_mix = model.mixed_targets(pl, mix)
    for b in range(B):
        q = int(mix.perm[b])
        own = torch.zeros(K)
        own[b] = 1.0
        if b == 3:
            own = pl.probs[3]  # not confident: the soft distribution
        partner = F.one_hot(torch.tensor(q), K).float() if q != 3 else pl.probs[3]
        torch.testing.assert_close(y_mix[b], r * own + (1 - r) * partner)
        assert m_mix[b] == pytest.approx(r * float(pl.mask[b]) + (1 - r) * float(pl.mask[q]))
        if q != b and b < 3 and q < 3:  # two confident clips: their labels weigh r and 1 - r
            assert y_mix[b, b] == pytest.approx(r) and y_mix[b, q] == pytest.approx(1 - r)


def test_views_and_arguments():
    m = SVFormer(tiny_vit(), num_classes=3)
    v = m.views()["unlabeled"]
    assert v["weak"] == ViewSpec("weak")
    assert v["strong"].window == "own" and v["strong"].same_as is None and v["strong"].aug == "weak"
    assert v["strong"].temporal_warp.anchors == (0, 2, 4)
    v = SVFormer(tiny_vit(), num_classes=3, strong_window="same", strong_randaugment=True, warp_anchors=(0,)).views()[
        "unlabeled"
    ]
    assert v["strong"] == ViewSpec("strong", same_as="weak")  # FixMatch pairing, warping off
    assert m.teacher.decay == 0.99 and m.pseudo_labeler.threshold == 0.3 and m.token_mix.alpha == 10.0
    assert (m.gamma1, m.gamma2, m.input_dropout) == (2.0, 2.0, 0.2)
    with pytest.raises(TypeError, match="backbone.*token_hook"):
        SVFormer(Tiny3D(width=4), num_classes=3)
    with pytest.raises(ValueError, match="strong_window"):
        SVFormer(tiny_vit(), num_classes=3, strong_window="other")
    with pytest.raises(ValueError, match="warp_anchors"):
        SVFormer(tiny_vit(), num_classes=3, warp_probs=(1.0,))


def test_tiny_fit_logs_every_term_and_moves_the_teacher(tmp_path, synth_root):
    L.seed_everything(0)
    model = SVFormer(tiny_vit(), num_classes=4, threshold=0.0, teacher=EMATeacher(decay=0.9), lr=0.01)
    before = {k: v.clone() for k, v in model.teacher.state_dict().items()}
    trainer = tiny_trainer(tmp_path, max_steps=3, limit_test_batches=1)
    dm = tiny_datamodule(synth_root, mu=2)
    trainer.fit(model, datamodule=dm)
    for key in (
        "train/loss_supervised",
        "train/loss_unsupervised",
        "train/loss_mix",
        "train/mix_ratio",
        "train/pl_acc",
        "train/ema_decay",
    ):
        assert key in trainer.callback_metrics, key
    assert 0.0 < float(trainer.callback_metrics["train/mix_ratio"]) < 1.0
    assert int(model.teacher.num_updates) == 3
    after = model.teacher.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("model."))
    trainer.test(model, datamodule=dm)
    assert any(k.startswith("test/acc1_") for k in trainer.callback_metrics)


class _ScrambleHidden(L.Callback):
    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        h = batch["unlabeled"]["hidden_label"]
        h.copy_(torch.randint(0, 4, h.shape, generator=torch.Generator().manual_seed(batch_idx)))


class _StopAt(L.Callback):
    def __init__(self, step: int, path: str):
        self.step, self.path = step, path

    def on_train_epoch_end(self, trainer, module):
        if trainer.global_step == self.step:
            trainer.save_checkpoint(self.path)
            trainer.should_stop = True


def _make():
    return SVFormer(tiny_vit(), num_classes=4, threshold=0.3, teacher=EMATeacher(decay=0.9), lr=0.01)


def test_hidden_labels_cannot_reach_any_loss_and_resume_is_exact(tmp_path, synth_root):
    """Scrambled hidden labels give bit-identical weights; 2 epochs straight == 1 epoch, stop,
    resume (the TokenMix draws and warps come from the RNG states in the checkpoint)."""
    kw = dict(deterministic=True, max_steps=-1, max_epochs=2)
    runs = {}
    for name, callbacks in (("straight", []), ("scrambled", [_ScrambleHidden()])):
        L.seed_everything(0)
        model = _make()
        tiny_trainer(tmp_path / name, callbacks=callbacks, **kw).fit(
            model, datamodule=tiny_datamodule(synth_root, mu=2)
        )
        runs[name] = model.state_dict()
    for k in runs["straight"]:
        assert torch.equal(runs["straight"][k], runs["scrambled"][k]), k

    n = tiny_datamodule(synth_root, mu=2).steps_per_epoch()
    ckpt = str(tmp_path / "half.ckpt")
    L.seed_everything(0)
    t1 = tiny_trainer(tmp_path / "b", callbacks=[_StopAt(n, ckpt)], **kw)
    t1.fit(_make(), datamodule=tiny_datamodule(synth_root, mu=2))
    L.seed_everything(123)
    resumed = _make()
    t2 = tiny_trainer(tmp_path / "c", **kw)
    t2.fit(resumed, datamodule=tiny_datamodule(synth_root, mu=2), ckpt_path=ckpt)
    assert t2.global_step == 2 * n
    b = resumed.state_dict()
    for k in runs["straight"]:
        assert torch.equal(runs["straight"][k], b[k]), k


@pytest.mark.ddp
def test_svformer_ddp_two_processes_keeps_teachers_identical(tmp_path):
    """2-process gloo fit: each rank mixes its own batch (different TokenMix draws), the students
    stay identical through DDP's gradient averaging, so the EMA teachers do too."""
    from synth import SaveTeacher

    dm = tiny_datamodule(str(tmp_path / "synth"), labeled_per_class=2, batch_size=2, mu=2)
    dm.prepare_data()
    model = SVFormer(tiny_vit(), num_classes=dm.num_classes, threshold=0.3, teacher=EMATeacher(0.9), lr=0.01)
    trainer = tiny_trainer(tmp_path, devices=2, strategy="ddp_spawn", callbacks=[SaveTeacher(str(tmp_path))])
    trainer.fit(model, datamodule=dm)
    t0, t1 = (torch.load(tmp_path / f"teacher_rank{r}.pt") for r in (0, 1))
    assert t0.keys() == t1.keys()
    for k in t0:
        assert torch.equal(t0[k], t1[k]), k
    assert int(t0["num_updates"]) == 3
