"""The contract every method in ``ssvar.methods.__all__`` keeps, checked through public behaviour
(fit, predict, checkpoints, state dicts) on tiny backbones and the tiny SyntheticActions set:

(a) hidden labels are unreachable: a fit whose unlabelled batches carry scrambled hidden labels
    ends with bit-identical weights and losses;
(b) exact resume: N steps straight == N/2 steps, stop, resume from ``last.ckpt``, N/2 more
    (bit-identical state dict and optimiser state);
(c) predict round-trip: a fitted checkpoint predicts every test video, and
    ``load_from_checkpoint`` reproduces the logits (pretraining methods: the features);
(d) a shipped config ``ssvar/configs/methods/<file>.yaml`` that instantiates the class;
(e) a docs page ``docs/methods/<file>.md`` that names the class.

``<file>`` is the method's module name (one method = one file). A new method is picked up from
``__all__`` (built from a Tiny3D(width=4) backbone and its defaults unless :data:`TINY` holds a
recipe); without a config or a docs page, or when it does not build, the suite fails and says
what to add. Self-supervised pretraining methods (no labelled views) get (a), (b), (c) on
features, (d) and (e).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint
from synth import tiny_datamodule, tiny_trainer
from torch import nn

import ssvar.methods
from ssvar.components import EMATeacher, TemporalSimilarityReweighter
from ssvar.models import TimeSformer, Tiny3D

REPO = Path(__file__).resolve().parents[2]
NUM_CLASSES = 4
METHODS = [n for n in ssvar.methods.__all__ if n != "SemiSupervisedModule"]
STEPS = 2  # every fit: 2 steps; (b) stops after 1


def _tiny_vit(frames: int = 4) -> TimeSformer:
    """1 block, 16-d, 8-px patches on 24-px crops."""
    return TimeSformer(None, embed_dim=16, depth=1, num_heads=2, patch_size=8, img_size=24, num_frames=frames)


def _timebalance_teachers(d: Path) -> dict:
    """Stage-2 teacher checkpoints (seeded, so every call writes the same weights)."""
    paths = {}
    for i, name in enumerate(("invariant_teacher", "distinctive_teacher")):
        torch.manual_seed(100 + i)
        paths[name] = str(d / f"{name}.ckpt")
        torch.save(
            {"state_dict": ssvar.methods.Supervised(Tiny3D(width=4), num_classes=NUM_CLASSES).state_dict()}, paths[name]
        )
    return paths


# name -> (constructor arguments besides num_classes, given a folder for files; data module overrides).
# Thresholds 0 make every unlabelled clip take part in the losses from the first step.
PRE = dict(num_frames=4, sparse_stride=2, num_dense_clips=2, dense_stride=1, proj_dim=8, proj_hidden_dim=8)
TINY: dict[str, tuple[Callable[[Path], dict], dict]] = {
    "Supervised": (lambda d: dict(backbone=Tiny3D(width=4), lr=0.05), {}),
    "FixMatch": (lambda d: dict(backbone=Tiny3D(width=4), threshold=0.0, teacher=EMATeacher(0.9), lr=0.05), {}),
    "MeanTeacher": (lambda d: dict(backbone=Tiny3D(width=4), rampup_steps=0, lr=0.05), {}),
    "TGFixMatch": (lambda d: dict(backbone=Tiny3D(width=4), threshold=0.0, proj_dim=8, lr=0.05), {}),
    "CMPL": (lambda d: dict(backbone=Tiny3D(width=4), aux_backbone=Tiny3D(width=2), threshold=0.0, lr=0.05), {}),
    "ActNetFormer": (
        lambda d: dict(
            backbone=Tiny3D(width=4), aux_backbone=_tiny_vit(), threshold=0.0, proj_dim=8, proj_hidden_dim=16, lr=0.05
        ),
        {},
    ),
    "SVFormer": (lambda d: dict(backbone=_tiny_vit(), threshold=0.0, lr=0.005), {}),
    "ACLMTL": (
        lambda d: dict(
            backbone=Tiny3D(width=4),
            threshold=0.0,
            teacher=EMATeacher(0.9),
            lr=0.05,
            bank_size=16,
            min_fill=4,
            refit_every=2,
            proj_dim=8,
            proj_hidden_dim=16,
            reliability_threshold=0.0,
        ),
        {},
    ),
    "TimeBalancePretrain": (
        lambda d: dict(backbone=Tiny3D(width=4), optimizer="adamw", lr=1e-3, **PRE),
        dict(labeled_in_unlabeled=True, num_frames=4, stride=1),
    ),
    "TimeBalance": (
        lambda d: dict(
            backbone=Tiny3D(width=4),
            reweighter=TemporalSimilarityReweighter(num_clips=2),
            score_batch_size=2,
            lr=0.05,
            **_timebalance_teachers(d),
        ),
        dict(num_frames=4, stride=1),
    ),
    "ClipContrastive": (
        lambda d: dict(backbone=Tiny3D(width=4), num_frames=4, proj_dim=8, proj_hidden_dim=16, lr=0.05),
        dict(labeled_in_unlabeled=True, batch_size=4),
    ),
}
# A page shared by the stages of one method (TimeBalance's stage 1 is documented with its stages 2-3).
DOCS_PAGE = {"TimeBalancePretrain": "timebalance"}
# Known gaps: a strict xfail, so the suite says when one is closed and its entry must go.
MISSING_CONFIG: dict[str, str] = {}  # method -> why it has no shipped config yet (a strict xfail)


def _cls(name: str) -> type:
    return getattr(ssvar.methods, name)


def _file(name: str) -> str:
    """The method's file name: ssvar/methods/<file>.py, configs/methods/<file>.yaml, docs/methods/<file>.md."""
    return _cls(name).__module__.rsplit(".", 1)[-1]


def _default_recipe(d: Path) -> dict:
    return dict(backbone=Tiny3D(width=4), lr=0.05)


def _recipe(name: str) -> tuple[Callable[[Path], dict], dict]:
    """The method's tiny recipe; a method without one is tried with a Tiny3D(width=4) backbone and
    defaults, and fails with what to add when that does not build."""
    if name in TINY:
        return TINY[name]
    try:
        _cls(name)(num_classes=NUM_CLASSES, **_default_recipe(Path(".")))
    except Exception as e:
        pytest.fail(
            f"{name} does not build from a Tiny3D(width=4) backbone and its defaults ({type(e).__name__}: {e}): "
            f"add TINY[{name!r}] to tests/methods/test_contract.py (tiny backbones, thresholds 0)"
        )
    return _default_recipe, {}


def _is_pretraining(model) -> bool:
    """Self-supervised pretraining: the method asks for no labelled views."""
    return not model.views()["labeled"]


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    return str(tmp_path_factory.mktemp("synth"))


class ScrambleHiddenLabels(L.Callback):
    """Replaces the true labels that travel with the unlabelled batch (for monitoring only) by
    random classes before the method's step sees the batch."""

    def __init__(self, seed: int):
        self.g = torch.Generator().manual_seed(seed)
        self.changed = 0

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        parts = [batch.get("unlabeled") or {}]
        if _is_pretraining(module):  # self-supervised: no label of any kind may matter
            parts.append(batch.get("labeled") or {})
        for part in parts:
            for key in ("hidden_label", "label"):
                if isinstance(part.get(key), torch.Tensor):
                    new = torch.randint(0, NUM_CLASSES, part[key].shape, generator=self.g).to(part[key])
                    self.changed += int((new != part[key]).sum())
                    part[key] = new


def _fit(name: str, root: Path, synth_root: str, callbacks=(), ckpt_path: str | None = None, seed: int = 0):
    build, dm_kw = _recipe(name)
    root.mkdir(parents=True, exist_ok=True)
    L.seed_everything(seed)
    model = _cls(name)(num_classes=NUM_CLASSES, **build(root))
    model.initial_state = {k: v.detach().clone() for k, v in model.state_dict().items()}  # (a) checks training happened
    ck = ModelCheckpoint(dirpath=str(root / "ck"), save_last=True, save_top_k=0)
    trainer = tiny_trainer(root, max_steps=STEPS, deterministic=True, enable_checkpointing=True,
                           callbacks=[ck, *callbacks])
    dm = tiny_datamodule(synth_root, **dm_kw)
    trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path)
    assert trainer.global_step == STEPS
    return model, trainer, dm


def _training_state(model, trainer) -> dict[str, torch.Tensor]:
    out = {f"model.{k}": v.detach().clone() for k, v in model.state_dict().items()}
    for j, opt in enumerate(trainer.optimizers):
        for i, s in opt.state_dict()["state"].items():
            for k, v in s.items():
                if isinstance(v, torch.Tensor):
                    out[f"opt{j}.{i}.{k}"] = v.clone()
    return out


_STRAIGHT: dict = {}


def _straight(name: str, synth_root: str, tmp_path_factory):
    """The uninterrupted STEPS-step run of a method (shared by (a), (b) and (c))."""
    if name not in _STRAIGHT:
        root = tmp_path_factory.mktemp(f"straight_{name}")
        model, trainer, dm = _fit(name, root, synth_root)
        metrics = {k: v.clone() for k, v in trainer.callback_metrics.items() if k.startswith("train/loss")}
        _STRAIGHT[name] = dict(
            root=root, model=model, trainer=trainer, dm=dm, state=_training_state(model, trainer), metrics=metrics
        )
    return _STRAIGHT[name]


def _assert_same_state(got: dict, want: dict, what: str) -> None:
    assert got.keys() == want.keys(), f"{what}: different state keys {sorted(set(got) ^ set(want))[:5]}"
    differ = [k for k in want if not torch.equal(got[k], want[k])]
    assert not differ, f"{what}: {len(differ)} tensors differ, e.g. {differ[:5]}"


# ---------------------------------------------------------------- (a) hidden labels unreachable
@pytest.mark.parametrize("name", METHODS)
def test_hidden_labels_do_not_reach_the_method(name, synth_root, tmp_path, tmp_path_factory):
    straight = _straight(name, synth_root, tmp_path_factory)
    scramble = ScrambleHiddenLabels(seed=1)
    model, trainer, _ = _fit(name, tmp_path, synth_root, [scramble])
    if scramble.changed == 0:
        assert not model.views()["unlabeled"], f"{name}: unlabelled views but no hidden labels were scrambled"
        pytest.skip(f"{name} trains on labelled clips only")
    state = _training_state(model, trainer)
    trained = [k for k, v in model.initial_state.items() if not torch.equal(v, model.state_dict()[k])]
    assert trained, f"{name}: nothing trained"
    _assert_same_state(state, straight["state"], f"{name} with scrambled hidden labels")
    for k, v in straight["metrics"].items():
        assert torch.equal(trainer.callback_metrics[k], v), k


# ---------------------------------------------------------------- (b) exact resume
CHEAP_RESUME = ["FixMatch"]  # the default suite's representative; every method under -m slow


class Killed(Exception):
    """Stands for `kill -9` between two steps: only the run's files are left."""


class KillAt(L.Callback):
    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if trainer.global_step == self.step:
            raise Killed(f"killed before step {self.step + 1}")


def _check_resume(name: str, synth_root: str, tmp_path: Path, tmp_path_factory) -> None:
    from ssvar.checkpointing import ResumeCheckpoints

    straight = _straight(name, synth_root, tmp_path_factory)
    half = STEPS // 2
    # The same run (same length, so the same schedule), killed after `half` steps; ResumeCheckpoints
    # keeps last.ckpt up to date every `half` steps.
    with pytest.raises(Killed):
        _fit(name, tmp_path / "first", synth_root, [ResumeCheckpoints(every_n_train_steps=half), KillAt(half)])
    last = tmp_path / "first" / "ck" / "last.ckpt"
    assert last.is_file() and torch.load(last, map_location="cpu", weights_only=False)["global_step"] == half
    # Another seed: everything must come from the checkpoint.
    model, trainer, _ = _fit(name, tmp_path / "resumed", synth_root, ckpt_path=str(last), seed=123)
    _assert_same_state(_training_state(model, trainer), straight["state"], f"{name} resumed at step {half}")


@pytest.mark.parametrize("name", CHEAP_RESUME)
def test_exact_resume(name, synth_root, tmp_path, tmp_path_factory):
    _check_resume(name, synth_root, tmp_path, tmp_path_factory)


@pytest.mark.slow
@pytest.mark.parametrize("name", [m for m in METHODS if m not in CHEAP_RESUME])
def test_exact_resume_every_method(name, synth_root, tmp_path, tmp_path_factory):
    _check_resume(name, synth_root, tmp_path, tmp_path_factory)


# ---------------------------------------------------------------- (c) predict round-trip
def _modules(name: str, d: Path) -> dict[str, nn.Module]:
    """The constructor's module arguments: a checkpoint stores their weights, not their configs."""
    build, _ = _recipe(name)
    return {k: v for k, v in build(d).items() if isinstance(v, nn.Module)}


@pytest.mark.parametrize("name", METHODS)
def test_checkpoint_predicts_every_video_and_reloads_the_same_logits(name, synth_root, tmp_path_factory):
    run = _straight(name, synth_root, tmp_path_factory)
    model, dm = run["model"], run["dm"]
    last = run["root"] / "ck" / "last.ckpt"
    assert last.is_file(), f"{name}: no last.ckpt written"
    loaded = _cls(name).load_from_checkpoint(str(last), map_location="cpu", **_modules(name, run["root"]))
    assert type(loaded) is _cls(name)
    _assert_same_state({k: v for k, v in loaded.state_dict().items()}, {k: v for k, v in model.state_dict().items()},
                       f"{name} loaded from last.ckpt")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 4, 24, 24, generator=g)
    model.eval(), loaded.eval()
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x)), f"{name}: load_from_checkpoint changed the outputs"
    if _is_pretraining(model):
        return  # no classifier: nothing to predict
    preds = tiny_trainer(run["root"] / "p1").predict(model, datamodule=dm)
    again = tiny_trainer(run["root"] / "p2").predict(loaded, datamodule=dm)
    index = torch.cat([p["index"] for p in preds])
    assert sorted(index.tolist()) == list(range(len(dm.splits.test))), f"{name}: not every test video predicted once"
    probs, probs2 = torch.cat([p["probs"] for p in preds]), torch.cat([p["probs"] for p in again])
    assert probs.shape == (len(dm.splits.test), NUM_CLASSES)
    assert torch.allclose(probs.sum(1), torch.ones(len(probs)), atol=1e-5)
    assert torch.equal(torch.cat([p["index"] for p in again]), index) and torch.equal(probs2, probs)


# ---------------------------------------------------------------- (d) config, (e) docs page
@pytest.mark.parametrize("name", METHODS)
def test_a_shipped_config_instantiates_the_method(name, request):
    from lightning.pytorch.cli import instantiate_module

    if name in MISSING_CONFIG:
        request.applymarker(pytest.mark.xfail(strict=True, reason=MISSING_CONFIG[name]))
    path = REPO / "ssvar" / "configs" / "methods" / f"{_file(name)}.yaml"
    assert path.is_file(), (f"{name} has no shipped config: add ssvar/configs/methods/{_file(name)}.yaml "
                            f"(model: class_path: ssvar.methods.{name}, a CPU-sized backbone)")
    model_cfg = yaml.safe_load(path.read_text())["model"]
    assert model_cfg["class_path"] == f"ssvar.methods.{name}", f"{path.name} names {model_cfg['class_path']}"
    cfg = {"_class_path": model_cfg["class_path"], **(model_cfg.get("init_args") or {}), "num_classes": NUM_CLASSES}
    assert type(instantiate_module(L.LightningModule, cfg)) is _cls(name)


@pytest.mark.parametrize("name", METHODS)
def test_a_docs_page_names_the_method(name):
    page = DOCS_PAGE.get(name, _file(name))
    path = REPO / "docs" / "methods" / f"{page}.md"
    assert path.is_file(), (
        f"{name} has no docs page: add docs/methods/{page}.md (what it does, its arguments, a config)"
    )
    assert re.search(rf"\b{name}\b", path.read_text()), f"docs/methods/{page}.md never names {name}"


def test_the_exceptions_name_real_methods():
    """The tables above do not outlive the methods they name."""
    assert set(TINY) <= set(METHODS), f"recipes without a method: {sorted(set(TINY) - set(METHODS))}"
    assert set(DOCS_PAGE) <= set(METHODS) and set(MISSING_CONFIG) <= set(METHODS)
