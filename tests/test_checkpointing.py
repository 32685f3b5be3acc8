"""Checkpoints: atomic writes, last.ckpt by default (epoch ends, step interval, SIGINT/SIGTERM) and
`ckpt_path="last"` that finds the last run's checkpoint or fails, never silently starting over."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from synth import TINY, tiny_datamodule, tiny_trainer

from ssvar.checkpointing import (
    AtomicCheckpointIO,
    CheckpointNotFoundError,
    ResumeCheckpoints,
    atomic_torch_save,
    resolve_ckpt_path,
)
from ssvar.components import EMATeacher
from ssvar.methods import FixMatch
from ssvar.models import Tiny3D

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    return str(tmp_path_factory.mktemp("synth"))


def _model():
    return FixMatch(Tiny3D(width=4), num_classes=4, threshold=0.5, teacher=EMATeacher(0.9), lr=0.05)


# --------------------------------------------------------------------------- atomic writes
class _Explodes:
    """Pickling fails after part of the checkpoint has been written."""

    def __reduce__(self):
        raise OSError(28, "No space left on device")


def test_failed_write_keeps_the_previous_checkpoint_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "last.ckpt"
    atomic_torch_save({"step": 1, "w": torch.ones(1000)}, str(path))
    with pytest.raises(OSError, match="No space"):
        atomic_torch_save({"w": torch.zeros(100_000), "z": _Explodes()}, str(path))
    assert torch.load(path, weights_only=True)["step"] == 1
    assert os.listdir(tmp_path) == ["last.ckpt"]


def test_checkpoint_io_writes_in_the_destination_folder_then_renames(tmp_path, monkeypatch):
    renames = []
    real = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (renames.append((a, b)), real(a, b))[1])
    AtomicCheckpointIO().save_checkpoint({"a": torch.ones(3)}, tmp_path / "sub" / "x.ckpt")
    (src, dst), = renames
    assert os.path.dirname(src) == os.path.dirname(dst) == str(tmp_path / "sub")  # never across filesystems
    assert torch.load(dst, weights_only=True)["a"].sum() == 3


def test_kill_9_during_writes_never_leaves_a_partial_checkpoint(tmp_path):
    """A process rewriting a 16 MB checkpoint is killed (SIGKILL) at random moments: the file
    under the checkpoint's name always loads; the next run removes the interrupted temporaries."""
    path = tmp_path / "last.ckpt"
    script = textwrap.dedent(f"""
        import sys, torch
        sys.path.insert(0, {REPO!r})
        from ssvar.checkpointing import atomic_torch_save
        i = 0
        while True:
            i += 1
            atomic_torch_save({{"i": i, "w": torch.full((4_000_000,), float(i))}}, {str(path)!r})
            print(i, flush=True)
    """)
    seen = set()
    for delay in (0.05, 0.13, 0.29):
        p = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        p.stdout.readline()  # the first checkpoint is written: now kill it mid-way through others
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait()
        ck = torch.load(path, weights_only=True)
        assert float(ck["w"][-1]) == ck["i"]  # complete
        seen.add(ck["i"])
    assert seen, "the writer never finished one checkpoint"
    from ssvar.checkpointing import remove_stale_temporaries

    remove_stale_temporaries(str(tmp_path))
    assert os.listdir(tmp_path) == ["last.ckpt"]


# --------------------------------------------------------------------------- last.ckpt
def test_last_ckpt_is_saved_by_default_and_every_n_steps(tmp_path, synth_root):
    L.seed_everything(0)
    ck = tmp_path / "ck"
    saves = []

    class Spy(L.Callback):
        def on_save_checkpoint(self, trainer, module, checkpoint):
            saves.append(trainer.global_step)

    mc = ModelCheckpoint(dirpath=str(ck))
    trainer = tiny_trainer(
        tmp_path,
        enable_checkpointing=True,
        max_steps=4,
        callbacks=[mc, ResumeCheckpoints(every_n_train_steps=2), Spy()],
    )
    trainer.fit(_model(), datamodule=tiny_datamodule(synth_root))
    assert mc.save_last is True and (ck / "last.ckpt").is_file()
    assert torch.load(ck / "last.ckpt", weights_only=True)["global_step"] == 4
    assert 2 in saves  # the step-interval save
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)


def test_every_ssvar_method_adds_the_resume_checkpoints_by_default(tmp_path, synth_root):
    trainer = tiny_trainer(tmp_path, enable_checkpointing=True, max_steps=1)
    trainer.fit(_model(), datamodule=tiny_datamodule(synth_root))
    assert any(isinstance(c, ResumeCheckpoints) for c in trainer.callbacks)
    assert trainer.checkpoint_callback.save_last is True
    assert os.path.isfile(os.path.join(trainer.checkpoint_callback.dirpath, "last.ckpt"))
    # A config's own ResumeCheckpoints wins (no second one).
    mine = ResumeCheckpoints(every_n_train_steps=7)
    trainer = tiny_trainer(tmp_path, enable_checkpointing=True, max_steps=1, callbacks=[mine])
    trainer.fit(_model(), datamodule=tiny_datamodule(synth_root))
    assert [c for c in trainer.callbacks if isinstance(c, ResumeCheckpoints)] == [mine]


class _SignalAt(L.Callback):
    def __init__(self, step: int, sig: int):
        self.step, self.sig = step, sig

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.sig)


@pytest.mark.parametrize("sig,exit_code", [(signal.SIGTERM, 143), (signal.SIGINT, 1)])
def test_signal_saves_a_resumable_checkpoint_mid_epoch(sig, exit_code, tmp_path, synth_root):
    """SIGTERM/SIGINT during fit: the step finishes, last.ckpt is written mid-epoch, the run stops;
    resuming from it ends with the weights of the run that was never interrupted."""
    spe = tiny_datamodule(synth_root).steps_per_epoch()
    limits = dict(max_epochs=2, max_steps=-1)
    L.seed_everything(0)
    straight = _model()
    tiny_trainer(tmp_path / "s", deterministic=True, **limits).fit(straight, datamodule=tiny_datamodule(synth_root))

    ck = tmp_path / "ck"
    L.seed_everything(0)
    t1 = tiny_trainer(
        tmp_path / "a",
        deterministic=True,
        enable_checkpointing=True,
        callbacks=[ModelCheckpoint(dirpath=str(ck)), _SignalAt(spe + 2, sig)],
        **limits,
    )
    before = signal.getsignal(sig)
    with pytest.raises(SystemExit) as e:
        t1.fit(_model(), datamodule=tiny_datamodule(synth_root))
    assert e.value.code == exit_code
    assert signal.getsignal(sig) is before  # handlers restored
    saved = torch.load(ck / "last.ckpt", weights_only=True)
    assert saved["global_step"] == spe + 2

    L.seed_everything(5)
    resumed = _model()
    t2 = tiny_trainer(tmp_path / "b", deterministic=True, **limits)
    t2.fit(resumed, datamodule=tiny_datamodule(synth_root), ckpt_path=str(ck / "last.ckpt"))
    assert t2.global_step == 2 * spe
    a, b = straight.state_dict(), resumed.state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k


# --------------------------------------------------------------------------- ckpt_path="last"
def test_resolve_last_picks_the_newest_last_ckpt_under_the_root(tmp_path):
    old = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    new = tmp_path / "lightning_logs" / "version_1" / "checkpoints" / "last.ckpt"
    for i, p in enumerate((old, new)):
        p.parent.mkdir(parents=True)
        atomic_torch_save({"i": i}, str(p))
        os.utime(p, (1000 + i, 1000 + i))
    (tmp_path / "lightning_logs" / "version_2").mkdir()  # the new run's empty folder
    assert resolve_ckpt_path("last", roots=[str(tmp_path)]) == str(new)
    with pytest.raises(CheckpointNotFoundError, match="nothing to resume from"):
        resolve_ckpt_path("last", roots=[str(tmp_path / "elsewhere")])
    with pytest.raises(CheckpointNotFoundError, match="not found"):
        resolve_ckpt_path(str(tmp_path / "missing.ckpt"))
    assert resolve_ckpt_path(None) is None
    # A truncated checkpoint (a copy cut short) is named, not loaded into a traceback.
    from ssvar.checkpointing import CorruptCheckpointError

    good = tmp_path / "good.ckpt"
    atomic_torch_save({"w": torch.ones(10_000)}, str(good))
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    assert resolve_ckpt_path(str(good)) == str(good)
    with pytest.raises(CorruptCheckpointError, match="not a complete checkpoint"):
        resolve_ckpt_path(str(cut))
    os.replace(cut, new)  # the newest last.ckpt is the cut one
    with pytest.raises(CorruptCheckpointError):
        resolve_ckpt_path("last", roots=[str(tmp_path)])


def _cli_args(root, synth):
    args = [
        "fit",
        "--config",
        os.path.join(REPO, "examples", "configs", "demo.yaml"),
        "--data.init_args.root",
        str(synth),
    ]
    for k, v in TINY.items():
        args += [f"--data.init_args.{k}", str(v)]
    return args + [
        "--data.init_args.labeled_per_class", "1", "--data.init_args.test_fraction", "0.34",
        "--data.init_args.batch_size", "2", "--data.init_args.num_workers", "0",
        "--data.init_args.num_frames", "4", "--data.init_args.crop_size", "24", "--data.init_args.short_side", "28",
        "--trainer.default_root_dir", str(root), "--trainer.enable_progress_bar", "false",
        "--trainer.limit_val_batches", "0", "--test_after_fit", "false", "--trainer.max_epochs", "-1",
    ]


def test_cli_ckpt_path_last_resumes_across_version_folders_or_fails(tmp_path, synth_root, capsys):
    from ssvar.cli import main, run_cli

    args = _cli_args(tmp_path / "runs", synth_root)
    # Nothing to resume from: one line, exit status 2, no training.
    assert main([*args, "--trainer.max_steps", "2", "--ckpt_path", "last"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nothing to resume from" in err[0]
    assert not (tmp_path / "runs" / "lightning_logs").exists() or not list((tmp_path / "runs").rglob("*.ckpt"))
    # A run "killed" after 3 steps (its last.ckpt is all that is left), then resumed.
    first = run_cli([*args, "--trainer.max_steps", "3"])
    assert first.trainer.global_step == 3
    second = run_cli([*args, "--trainer.max_steps", "5", "--ckpt_path", "last"])
    assert second.trainer.global_step == 5
    assert second.trainer.log_dir != first.trainer.log_dir  # a new version folder, and still found
