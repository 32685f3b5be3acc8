"""Supervised baseline and the base module: a real (tiny) Lightning fit, test and checkpoint."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from synth import tiny_datamodule, tiny_trainer

from ssvar.methods import Supervised
from ssvar.methods.base import _without_hidden, warmup_cosine
from ssvar.models import Tiny3D


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    return str(tmp_path_factory.mktemp("synth"))


def _trainer(tmp_path, **kw):
    return tiny_trainer(tmp_path, **{"max_steps": 4, "limit_val_batches": 1, "limit_test_batches": 2, **kw})


def test_fit_test_and_checkpoint_round_trip(tmp_path, synth_root):
    L.seed_everything(0)
    dm = tiny_datamodule(synth_root)
    model = Supervised(Tiny3D(width=4), num_classes=dm.num_classes, lr=0.01)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = _trainer(tmp_path)
    trainer.fit(model, datamodule=dm)
    assert trainer.global_step == 4
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    res = trainer.test(model, datamodule=dm, verbose=False)[0]
    assert set(res) == {"test/acc1_2x1", "test/mean_class_acc_2x1", "test/skipped_videos"}  # names say clips x crops
    assert res["test/skipped_videos"] == 0
    assert 0.0 <= res["test/acc1_2x1"] <= 1.0
    assert model.confusion_matrix.shape == (4, 4) and model.confusion_matrix.sum() > 0

    ckpt = tmp_path / "m.ckpt"
    trainer.save_checkpoint(ckpt)
    loaded = Supervised.load_from_checkpoint(ckpt, backbone=Tiny3D(width=4))
    assert loaded.class_names == dm.classes
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k


def test_normalisation_happens_on_the_device_side():
    model = Supervised(Tiny3D(width=4), num_classes=3)
    batch = {"labeled": {"weak": torch.full((1, 3, 2, 4, 4), 255, dtype=torch.uint8), "label": torch.tensor([1])}}
    out = model.on_after_batch_transfer(batch, 0)
    x = out["labeled"]["weak"]
    assert x.dtype == torch.float32
    assert torch.allclose(
        x[0, :, 0, 0, 0], (1 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    )
    assert out["labeled"]["label"].dtype == torch.int64  # labels untouched


def test_multiview_scores_average_probabilities():
    model = Supervised(Tiny3D(width=4), num_classes=3, dropout=0.0).eval()
    video = torch.randn(2, 4, 3, 4, 16, 16)
    avg = model._view_logits(video)
    manual = torch.stack([model(video[:, v]).softmax(1) for v in range(4)]).mean(0)
    assert torch.allclose(avg, manual, atol=1e-6)


def test_hidden_labels_are_stripped_before_losses():
    unl = {
        "weak": torch.zeros(1),
        "label": torch.tensor([-1]),
        "hidden_label": torch.tensor([2]),
        "index": torch.tensor([0]),
    }
    assert set(_without_hidden(unl)) == {"weak", "index"}


def test_warmup_cosine_schedule():
    f = warmup_cosine(10, 110)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.5) and f(110) == pytest.approx(0.0)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="num_classes"):
        Supervised(Tiny3D(), num_classes=1)
    with pytest.raises(ValueError, match="optimizer"):
        Supervised(Tiny3D(), num_classes=3, optimizer="adam")
    with pytest.raises(TypeError, match="feature_dim"):
        Supervised(torch.nn.Linear(2, 2), num_classes=3)


def test_class_count_mismatch_fails_before_training(tmp_path, synth_root):
    dm = tiny_datamodule(synth_root)
    model = Supervised(Tiny3D(width=4), num_classes=7)
    with pytest.raises(ValueError, match="num_classes=7"):
        _trainer(tmp_path).fit(model, datamodule=dm)


def test_training_continues_over_broken_videos_and_counts_them(tmp_path, tiny_tree):
    from helpers import TINY_CLASSES, write_text, write_truncated, write_zero_byte

    from ssvar.data import FolderDataModule

    a, b, c = TINY_CLASSES
    write_zero_byte(tiny_tree / a / "zero.mp4")
    write_truncated(tiny_tree / b / "cut.mp4", tiny_tree / b / f"{b}_0.mp4", fraction=0.2)
    write_text(tiny_tree / c / "text.mp4")
    # Put the broken files in the labelled set, which is cycled every epoch, so they are hit.
    (tmp_path / "lab.txt").write_text(f"{a}/zero.mp4 0\n{b}/cut.mp4 1\n{c}/text.mp4 2\n{a}/{a}_0.mp4 0\n")
    (tmp_path / "test.txt").write_text(f"{a}/{a}_2.mp4 0\n{b}/{b}_2.mp4 1\n{c}/{c}_2.mp4 2\n")
    dm = FolderDataModule(
        str(tiny_tree), labeled_list=str(tmp_path / "lab.txt"), test_list=str(tmp_path / "test.txt"),
        batch_size=2, num_workers=0, num_frames=4, stride=2, crop_size=24, short_side=28, test_clips=1, test_crops=1,
    )
    model = Supervised(Tiny3D(width=4), num_classes=dm.num_classes)
    trainer = _trainer(tmp_path, max_steps=4)
    trainer.fit(model, datamodule=dm)
    assert trainer.global_step == 4
    assert model.decode_failures >= 2  # zero-byte and text files always fail; the truncated one may decode a prefix
    assert trainer.callback_metrics["data/decode_failures"] == model.decode_failures


def test_metrics_are_not_merged_by_torchmetrics_compute_groups():
    """A first test batch of one class, all predicted as one wrong class,
    made torchmetrics merge mean class accuracy with top-5 (equal states after one update)."""
    model = Supervised(Tiny3D(width=4), num_classes=10)
    metrics = model._metrics("test")
    first = torch.zeros(8, 10)
    first[:, 3] = 1.0
    metrics.update(first, torch.zeros(8, dtype=torch.long))
    g = torch.Generator().manual_seed(0)
    scores, labels = [first], [torch.zeros(8, dtype=torch.long)]
    for _ in range(5):
        s, y = torch.randn(20, 10, generator=g).softmax(1), torch.randint(0, 10, (20,), generator=g)
        metrics.update(s, y)
        scores.append(s)
        labels.append(y)
    pred, y = torch.cat(scores).argmax(1), torch.cat(labels)
    per_class = torch.stack([(pred[y == c] == c).float().mean() for c in range(10) if (y == c).any()])
    out = metrics.compute()
    assert torch.isclose(out["mean_class_acc"], per_class.mean(), atol=1e-6)
    assert not torch.isclose(out["mean_class_acc"], out["acc5"])


class _DivergesAtStep2(Supervised):
    """Supervised whose loss turns NaN from step 2 on (a diverged run, made deterministic)."""

    def train_step(self, labeled, unlabeled):
        out = super().train_step(labeled, unlabeled)
        if self.global_step >= 2:
            out.losses["supervised"] = out.losses["supervised"] * float("nan")
        return out


def test_a_diverged_run_stops_at_the_next_logging_step_and_says_why(tmp_path, synth_root):
    L.seed_everything(0)
    dm = tiny_datamodule(synth_root)
    model = _DivergesAtStep2(Tiny3D(width=4), num_classes=dm.num_classes, lr=0.01)
    trainer = _trainer(tmp_path, max_steps=8, log_every_n_steps=3)
    with pytest.raises(FloatingPointError, match=r"non-finite training loss at step 3 .*\['supervised'\]"):
        trainer.fit(model, datamodule=dm)
    assert trainer.global_step == 3  # steps 2 (not a logging step) and 3, no further

    # Switched off, the same run trains on to the end (and says nothing).
    L.seed_everything(0)
    model = _DivergesAtStep2(Tiny3D(width=4), num_classes=dm.num_classes, lr=0.01, stop_on_nonfinite_loss=False)
    trainer = _trainer(tmp_path / "on", max_steps=8, log_every_n_steps=3)
    trainer.fit(model, datamodule=dm)
    assert trainer.global_step == 8
