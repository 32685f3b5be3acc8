"""The base's side of the per-iteration contract: what a method returns is logged once, declared
teachers move, declared networks get Precise-BN passes and parameter groups."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from synth import tiny_datamodule, tiny_trainer

from ssvar.callbacks import TestFigures
from ssvar.checkpointing import GlobalRNGState, ResumeCheckpoints
from ssvar.components import EMATeacher, PseudoLabeler
from ssvar.methods import ClipContrastive, SemiSupervisedModule, TGFixMatch
from ssvar.methods.step import Network, StepOutput
from ssvar.models import Classifier, ClassifierHead, Tiny3D


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    return str(tmp_path_factory.mktemp("synth"))


class Toy(SemiSupervisedModule):
    """A method written only against the contract: two networks, an EMA teacher, every kind of output."""

    def __init__(self, **kw):
        super().__init__(Tiny3D(width=4), num_classes=4, lr=0.05, **kw)
        self.aux_backbone = Tiny3D(width=2)
        self.aux_head = ClassifierHead(self.aux_backbone.feature_dim, 4)
        self.teacher = EMATeacher(0.5).attach(self.classifier())
        self.labeler = PseudoLabeler(threshold=0.0)

    def views(self):
        from ssvar.data.dataset import ViewSpec

        return {"labeled": {"weak": ViewSpec("weak")}, "unlabeled": {"weak": ViewSpec("weak")}}

    def teachers(self):
        return super().teachers() + [(self.teacher, self.classifier())]

    def networks(self):
        return {
            "primary": Network(Classifier(self.backbone, self.head), lr=0.05),
            "auxiliary": Network(Classifier(self.aux_backbone, self.aux_head), lr=0.01, precise_bn=False),
        }

    def train_step(self, labeled, unlabeled):
        logits = self(labeled["weak"])
        aux = self.networks()["auxiliary"].model
        pl = self.labeler(self.teacher(unlabeled["weak"]), self.global_step)
        pl_aux = self.labeler(aux(unlabeled["weak"]).detach(), self.global_step)
        return StepOutput(
            {
                "supervised": self.supervised_loss(logits, labeled["label"]),
                "aux": self.supervised_loss(aux(labeled["weak"]), labeled["label"]),
            },
            logits,
            pseudo_labels=pl,
            extra_pseudo_labels={"from_aux": pl_aux},
            logs={"something": 3.0, "data/elsewhere": 7.0},
        )


def test_outputs_are_logged_and_teachers_move(tmp_path, synth_root):
    L.seed_everything(0)
    model = Toy()
    trainer = tiny_trainer(tmp_path, max_steps=3)
    trainer.fit(model, datamodule=tiny_datamodule(synth_root))
    m = trainer.callback_metrics
    for key in (
        "train/loss",
        "train/loss_supervised",
        "train/loss_aux",
        "train/acc1_labeled",
        "train/something",
        "data/elsewhere",
        "train/pl_mask_rate",
        "train/pl_acc",
        "train/pl_from_aux_mask_rate",
        "train/pl_from_aux_acc",
        "train/ema_decay",
        "train/lr",
        "train/lr_auxiliary",
    ):
        assert key in m, key
    assert float(m["train/loss"]) == pytest.approx(float(m["train/loss_supervised"] + m["train/loss_aux"]), rel=1e-5)
    assert float(m["train/something"]) == 3.0 and float(m["data/elsewhere"]) == 7.0
    assert int(model.teacher.num_updates) == 3  # declared teacher: one update per optimiser step
    groups = {g["name"]: g["lr"] for g in trainer.optimizers[0].param_groups}
    assert set(groups) == {"primary", "primary_no_decay", "auxiliary", "auxiliary_no_decay"}
    # Default callbacks: resumable checkpoints, RNG state, test figures.
    kinds = {type(c) for c in trainer.callbacks}
    assert {ResumeCheckpoints, GlobalRNGState, TestFigures} <= kinds


def test_precise_bn_runs_only_declared_networks():
    model = Toy().train()
    batch = {
        "labeled": {"weak": torch.randn(2, 3, 4, 16, 16), "label": torch.tensor([0, 1])},
        "unlabeled": {"weak": torch.randn(3, 3, 4, 16, 16)},
    }
    before_aux = {k: v.clone() for k, v in model.aux_backbone.state_dict().items() if "running" in k}
    before = {k: v.clone() for k, v in model.backbone.state_dict().items() if "running_mean" in k}
    model.precise_bn_forward(batch)
    assert all(torch.equal(v, model.aux_backbone.state_dict()[k]) for k, v in before_aux.items())  # precise_bn=False
    assert any(not torch.equal(v, model.backbone.state_dict()[k]) for k, v in before.items())


def test_tg_network_is_not_re_estimated():
    m = TGFixMatch(Tiny3D(width=4), num_classes=3).train()
    nets = m.networks()
    assert list(nets) == ["primary", "tg"] and not nets["tg"].precise_bn and nets["primary"].precise_bn
    assert m.inference_model().backbone is m.backbone


def test_pretraining_has_no_head_and_accepts_old_classifier_settings():
    m = ClipContrastive(Tiny3D(width=4), num_classes=3, dropout=0.3, label_smoothing=0.1, test_average="logit")
    assert not hasattr(m, "head") and not any(k.startswith("head.") for k in m.state_dict())
    # and such a model round-trips through its hyperparameters (what load_from_checkpoint does)
    again = ClipContrastive(Tiny3D(width=4), **{k: v for k, v in m.hparams.items() if k != "backbone"})
    assert set(again.state_dict()) == set(m.state_dict())


def test_without_labels_in_the_unlabelled_views_the_default_step_is_supervised():
    m = SemiSupervisedModule(Tiny3D(width=4), num_classes=3).eval()
    x, y = torch.randn(2, 3, 4, 16, 16), torch.tensor([0, 2])
    out = m.train_step({"weak": x, "label": y}, {})
    assert set(out.losses) == {"supervised"} and out.pseudo_labels is None
    assert torch.equal(out.logits, m(x))
