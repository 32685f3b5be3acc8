"""Checkpoints written by ssvar before the per-iteration contract (issue 14) still load.

The tree before that refactor (commit ``OLD``) is taken from git history and writes one tiny
checkpoint per method (``tests/fixtures/write_old_checkpoints.py``: one training step on the tiny
SyntheticActions set, in a subprocess). Each must load strictly into the method as it is built
today, and a run must resume from one (optimiser state, loop state and the global RNG state
restored by today's callbacks). Skipped where the git history is not there (an sdist)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile

import lightning as L
import pytest
import torch
from synth import tiny_datamodule, tiny_trainer

from ssvar.components import EMATeacher
from ssvar.methods import ACLMTL, CMPL, ActNetFormer, ClipContrastive, FixMatch, MeanTeacher, TGFixMatch
from ssvar.models import TimeSformer, Tiny3D
from ssvar.serialization import read_lightning_checkpoint

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OLD = "65d8752"  # the last tree before the per-iteration contract


@pytest.fixture(scope="module")
def old_dir(tmp_path_factory) -> str:
    """The old tree's checkpoints (written once per test session)."""
    tmp = tmp_path_factory.mktemp("old")
    tree = tmp / "tree"
    tree.mkdir()
    try:
        archive = subprocess.run(
            ["git", "-C", REPO, "archive", OLD, "ssvar", "tests/synth.py"], capture_output=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip(f"the git history with commit {OLD} is not available")
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(tree, filter="data")
    out = tmp / "ckpt"
    out.mkdir()
    env = dict(os.environ, PYTHONPATH=str(tree), WANDB_MODE="offline")
    script = os.path.join(REPO, "tests", "fixtures", "write_old_checkpoints.py")
    subprocess.run(
        [sys.executable, script, str(out), str(tmp / "data")], cwd=tree, env=env, check=True, capture_output=True
    )
    return str(out)


def _vit():
    return TimeSformer(variant=None, embed_dim=16, depth=1, num_heads=2, patch_size=8, img_size=24, num_frames=4)


# The constructors the fixtures were written with (modules given in Python are not in the hparams).
MAKERS = {
    "fixmatch_ema": lambda: FixMatch(Tiny3D(width=4), num_classes=4, teacher=EMATeacher(0.9), threshold=0.0),
    "mean_teacher": lambda: MeanTeacher(Tiny3D(width=4), num_classes=4),
    "cmpl": lambda: CMPL(Tiny3D(width=4), num_classes=4, aux_backbone=Tiny3D(width=2), threshold=0.0),
    "tg_fixmatch": lambda: TGFixMatch(Tiny3D(width=4), num_classes=4, proj_dim=8),
    "actnetformer": lambda: ActNetFormer(
        Tiny3D(width=4), num_classes=4, aux_backbone=_vit(), proj_dim=8, proj_hidden_dim=8
    ),
    "acl_mtl": lambda: ACLMTL(Tiny3D(width=4), num_classes=4, bank_size=16, min_fill=4, proj_dim=8, proj_hidden_dim=8),
    "clip_contrastive": lambda: ClipContrastive(
        Tiny3D(width=4), num_classes=4, proj_dim=8, proj_hidden_dim=8, num_frames=4
    ),
}


@pytest.mark.parametrize("name", list(MAKERS))
def test_an_old_checkpoint_loads_strictly(name, old_dir):
    ckpt = read_lightning_checkpoint(os.path.join(old_dir, f"{name}.ckpt"))
    model = MAKERS[name]()
    model.load_state_dict(ckpt["state_dict"], strict=True)  # every key and shape as today's
    model.on_load_checkpoint(ckpt)
    assert model.class_names == ckpt["ssvar_class_names"]
    x = torch.randn(2, 3, 4, 24, 24)
    with torch.no_grad():
        out = model.eval()(x)
    assert out.shape[0] == 2 and torch.isfinite(out).all()


@pytest.mark.parametrize("name", ["fixmatch_ema", "cmpl"])
def test_a_run_resumes_from_an_old_checkpoint(name, tmp_path, old_dir):
    L.seed_everything(0)
    model = MAKERS[name]()
    trainer = tiny_trainer(tmp_path, max_steps=2)
    trainer.fit(
        model, datamodule=tiny_datamodule(str(tmp_path / "synth")), ckpt_path=os.path.join(old_dir, f"{name}.ckpt")
    )
    assert trainer.global_step == 2  # one step in the old run, one more here
