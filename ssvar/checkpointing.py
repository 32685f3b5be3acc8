"""Checkpoints that are never lost, never partial, and resumes that never silently start over.

* :class:`AtomicCheckpointIO`: every checkpoint is written to a temporary file in its own folder,
  flushed to disk (``fsync``) and renamed over the final name, so a kill at any moment leaves
  either the previous complete file or the new complete file, never a partial one, and no
  temporary file behind. (Lightning's default goes through a temporary file that may live on
  another filesystem, where the final "rename" is a copy that a kill can cut short.)
* :class:`ResumeCheckpoints`: keeps ``last.ckpt`` up to date: ``ModelCheckpoint``'s
  ``save_last`` is turned on (unless a config says ``save_last: false``), ``last.ckpt`` is also
  written every ``every_n_train_steps`` optimiser steps (a killed run loses at most that
  interval), and SIGINT / SIGTERM during ``fit`` finish the current step, write a resumable
  ``last.ckpt`` and stop. Every ssvar method adds it (and the atomic writes) by default.
* :func:`resolve_ckpt_path`: ``ckpt_path="last"`` finds the newest ``last.ckpt`` under the run's
  root folder (each run writes into a new ``version_N`` folder, where Lightning's own lookup
  finds nothing and silently starts from scratch); asking to resume when there is nothing to
  resume from raises :class:`CheckpointNotFoundError`.
* :class:`GlobalRNGState`: the global RNG states travel with every checkpoint (exact resume).
"""

from __future__ import annotations

import glob
import logging
import os
import random
import signal
import tempfile
import threading
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint

log = logging.getLogger(__name__)

LAST_NAME = "last.ckpt"


# A resume was asked for (``ckpt_path``) and there is no checkpoint to resume from: the same class
# as every other unusable-checkpoint error (one line, exit status 2 from the CLI).
from ssvar.serialization import CheckpointError, CheckpointNotFoundError  # noqa: E402


class CorruptCheckpointError(CheckpointError):
    """The checkpoint to resume from is not a complete checkpoint file."""


# --------------------------------------------------------------------------- atomic writes
def atomic_torch_save(obj: Any, path: str) -> None:
    """``torch.save`` to ``path`` atomically: temporary file in the same folder, fsync, rename.

    On any failure (a full disk, an exception while pickling, an interrupt) the temporary file
    is removed and ``path`` keeps its previous content."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic within one filesystem
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(folder)  # the rename itself survives a power cut


def _fsync_dir(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows: folders cannot be opened
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_stale_temporaries(folder: str) -> list[str]:
    """Delete the temporary files of checkpoint writes that a ``kill -9`` interrupted."""
    removed = []
    for p in glob.glob(os.path.join(glob.escape(folder), ".*.ckpt.*.tmp")):
        try:
            os.unlink(p)
            removed.append(p)
        except OSError:
            pass
    if removed:
        log.info("removed %d interrupted checkpoint write(s) in %s", len(removed), folder)
    return removed


def _is_local(path: Any) -> bool:
    return "://" not in str(path) or str(path).startswith("file://")


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's ``TorchCheckpointIO`` with atomic local writes (see :func:`atomic_torch_save`).

    Remote paths (``s3://`` ...) keep Lightning's behaviour. Use it as
    ``Trainer(plugins=[AtomicCheckpointIO()])``; ssvar methods install it by default."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None or not _is_local(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        local = str(path)[len("file://") :] if str(path).startswith("file://") else str(path)
        atomic_torch_save(checkpoint, local)


def install_atomic_checkpoint_io(trainer: L.Trainer) -> None:
    """Make ``trainer`` write checkpoints atomically, unless a custom CheckpointIO is configured."""
    strategy = trainer.strategy
    io = getattr(strategy, "checkpoint_io", None)
    if io is not None and type(io) is TorchCheckpointIO:
        strategy.checkpoint_io = AtomicCheckpointIO()


# --------------------------------------------------------------------------- "last"
def run_root_dirs(trainer: L.Trainer) -> list[str]:
    """Folders under which a run's checkpoints live: the checkpoint callbacks' fixed ``dirpath``,
    each logger's root (``save_dir/name``) and ``default_root_dir``."""
    roots: list[str] = []
    for cb in trainer.checkpoint_callbacks:
        dirpath = getattr(cb, "dirpath", None)
        if dirpath:
            roots.append(str(dirpath))
    for lg in trainer.loggers:
        root = getattr(lg, "root_dir", None) or getattr(lg, "save_dir", None)
        if root:
            roots.append(str(root))
    roots.append(str(trainer.default_root_dir))
    out = []
    for r in roots:
        r = os.path.abspath(os.path.expanduser(r))
        if r not in out:
            out.append(r)
    return out


def find_last_checkpoint(roots: list[str]) -> str | None:
    """The newest ``last*.ckpt`` anywhere under ``roots`` (``last.ckpt``, ``last-v1.ckpt``)."""
    found: set[str] = set()
    for root in roots:
        if os.path.isdir(root):
            found.update(glob.glob(os.path.join(glob.escape(root), "**", "last*.ckpt"), recursive=True))
    found = {p for p in found if os.path.isfile(p)}
    return max(found, key=lambda p: (os.path.getmtime(p), p)) if found else None


def resolve_ckpt_path(
    ckpt_path: str | None, trainer: L.Trainer | None = None, roots: list[str] | None = None
) -> str | None:
    """What ``fit(ckpt_path=...)`` should really load.

    ``None`` stays ``None`` (a fresh run). ``"last"`` becomes the newest ``last*.ckpt`` under the
    run's root folders (``roots``, else :func:`run_root_dirs` of ``trainer``); ``"best"`` and
    ``"hpc"`` are left to Lightning. A path must exist. Nothing to resume from raises
    :class:`CheckpointNotFoundError` (never a silent fresh start)."""
    if ckpt_path is None or ckpt_path in ("best", "hpc", "registry") or str(ckpt_path).startswith("registry:"):
        return ckpt_path
    if ckpt_path == "last":
        roots = roots if roots is not None else (run_root_dirs(trainer) if trainer is not None else [os.getcwd()])
        found = find_last_checkpoint(roots)
        if found is not None:
            check_checkpoint_file(found)
        if found is None:
            raise CheckpointNotFoundError(
                f"ckpt_path='last': no last.ckpt under {', '.join(roots)}; there is nothing to resume from "
                "(drop --ckpt_path to start a new run)"
            )
        log.info("resuming from %s", found)
        return found
    if _is_local(ckpt_path):
        if not os.path.isfile(str(ckpt_path)):
            raise CheckpointNotFoundError(f"ckpt_path: checkpoint file not found: {ckpt_path}")
        check_checkpoint_file(str(ckpt_path))
    return ckpt_path


def check_checkpoint_file(path: str) -> None:
    """Fail with :class:`CorruptCheckpointError` when ``path`` is not a complete ``torch.save``
    archive (a zip whose directory, written last, is intact): a cut-short copy, not a checkpoint."""
    import zipfile

    if not zipfile.is_zipfile(path):
        size = os.path.getsize(path)
        raise CorruptCheckpointError(
            f"{path} is not a complete checkpoint ({size} bytes; truncated or not a torch.save file)"
        )


# --------------------------------------------------------------------------- loop state
def mark_finished_epoch(trainer: L.Trainer, checkpoint: dict[str, Any]) -> None:
    """A checkpoint saved at the end of an epoch (``on_train_epoch_end``) records a finished epoch
    as finished and the next one as not begun, and an epoch cut short (``max_steps``) as still in
    progress.

    Lightning saves it half-way through its epoch bookkeeping (processed, not completed). With
    ``max_steps`` set it then treats the resume of a finished epoch as a restart inside it and
    trains one extra batch there, shifting every later epoch; an epoch cut short by ``max_steps``
    counts as processed, so a run continued to a larger ``max_steps`` starts the next epoch's
    samples in the middle of the old epoch."""
    loops = checkpoint.get("loops", {}).get("fit_loop")
    if not loops or trainer.state.fn != "fit":
        return
    epoch = loops["epoch_progress"]
    batches = loops["epoch_loop.batch_progress"]
    finished = batches["current"]["processed"] >= trainer.num_training_batches
    mid_bookkeeping = epoch["current"]["processed"] == epoch["current"]["completed"] + 1
    if not (mid_bookkeeping and trainer.training):
        return
    if not finished:  # stopped part-way (max_steps, should_stop): the epoch is still in progress
        for part in ("total", "current"):
            epoch[part]["processed"] = epoch[part]["completed"]
        return
    for part in ("total", "current"):
        epoch[part]["completed"] = epoch[part]["processed"]
    _zero(batches["current"])
    batches["is_last_batch"] = False
    _zero(loops["epoch_loop.scheduler_progress"]["current"])
    for prog in loops["epoch_loop.automatic_optimization.optim_progress"]["optimizer"].values():
        _zero(prog["current"])


def _zero(counts: dict[str, int]) -> None:
    for k in counts:
        counts[k] = 0


# --------------------------------------------------------------------------- last.ckpt
class ResumeCheckpoints(L.Callback):
    """Keeps a resumable ``last.ckpt`` next to the run's other checkpoints.

    * turns ``save_last`` on in every ``ModelCheckpoint`` that left it unset (``None``), so
      ``last.ckpt`` is written at every epoch end / validation;
    * writes ``last.ckpt`` every ``every_n_train_steps`` optimiser steps (``0``: never), so a
      killed run loses at most that many steps;
    * on SIGINT or SIGTERM during ``fit``: finishes the current step, writes ``last.ckpt``
      (mid-epoch checkpoints resume exactly: the data module saves its samplers' positions) and
      stops (``KeyboardInterrupt`` for SIGINT, exit status 143 for SIGTERM). A second signal
      stops at once.
    * makes the trainer write checkpoints atomically (:class:`AtomicCheckpointIO`).

    With no checkpoint callback (``enable_checkpointing=False``) and no ``dirpath`` it does
    nothing: the user asked for no checkpoints.

    Args:
        every_n_train_steps: interval of the step-based ``last.ckpt`` (``0`` turns it off).
        dirpath: where ``last.ckpt`` goes; default: the ``ModelCheckpoint``'s folder.
        on_signal: save and stop on SIGINT/SIGTERM.
    """

    def __init__(self, every_n_train_steps: int = 500, dirpath: str | None = None, on_signal: bool = True):
        if every_n_train_steps < 0:
            raise ValueError(f"every_n_train_steps must be >= 0, got {every_n_train_steps}")
        self.every_n_train_steps = every_n_train_steps
        self.dirpath = dirpath
        self.on_signal = on_signal
        self.last_path: str | None = None
        self._signal: int | None = None
        self._saved_step = -1
        self._previous: dict[int, Any] = {}

    # -- where -----------------------------------------------------------------------------
    def _target(self, trainer: L.Trainer) -> str | None:
        if self.dirpath:
            return os.path.join(self.dirpath, LAST_NAME)
        cb = trainer.checkpoint_callback
        if isinstance(cb, ModelCheckpoint) and cb.dirpath:
            name = (cb.CHECKPOINT_NAME_LAST or "last") + cb.FILE_EXTENSION
            return os.path.join(cb.dirpath, name)
        return None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        install_atomic_checkpoint_io(trainer)
        for cb in trainer.checkpoint_callbacks:
            if isinstance(cb, ModelCheckpoint) and cb.save_last is None:
                cb.save_last = True

    def save_last(self, trainer: L.Trainer) -> str | None:
        path = self._target(trainer)
        if path is None:
            return None
        from ssvar.methods.base import VideoModule

        module = trainer.lightning_module
        if trainer.training and isinstance(module, VideoModule):
            # Callbacks' on_train_batch_end runs before the module's, where the teachers follow
            # this step: move them now (idempotent per step), so the checkpoint holds them.
            module.update_teachers()
        trainer.save_checkpoint(path)
        self.last_path = path
        # ModelCheckpoint remembers its own last path (used by `ckpt_path="last"` in-process).
        cb = trainer.checkpoint_callback
        if isinstance(cb, ModelCheckpoint) and os.path.dirname(path) == str(cb.dirpath):
            cb.last_model_path = path
        return path

    # -- when ------------------------------------------------------------------------------
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._signal = None
        target = self._target(trainer)
        if target and trainer.is_global_zero:
            remove_stale_temporaries(os.path.dirname(target))
        if self.on_signal and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.getsignal(sig)
                signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame) -> None:
        if self._signal is not None:  # a second signal: stop now
            self._restore_handlers()
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            raise SystemExit(128 + signum)
        self._signal = signum
        log.warning("received %s: finishing the current step, then saving last.ckpt", signal.Signals(signum).name)

    def _restore_handlers(self) -> None:
        for sig, h in self._previous.items():
            signal.signal(sig, h if h is not None else signal.SIG_DFL)
        self._previous = {}

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        stop = self._signal is not None
        if trainer.world_size > 1:  # every rank stops at the same step (saving is collective)
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        if stop:
            path = self.save_last(trainer)
            signum = self._signal if self._signal is not None else signal.SIGTERM
            self._restore_handlers()
            name = signal.Signals(signum).name
            if path:
                log.warning("%s: saved a resumable checkpoint to %s (resume with --ckpt_path last)", name, path)
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            raise SystemExit(128 + signum)
        n, step = self.every_n_train_steps, trainer.global_step
        if n and step > 0 and step % n == 0 and step != self._saved_step:  # once per step (accumulation)
            self._saved_step = step
            self.save_last(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore_handlers()

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        mark_finished_epoch(trainer, checkpoint)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._restore_handlers()


__all__ = [
    "AtomicCheckpointIO",
    "CheckpointNotFoundError",
    "CorruptCheckpointError",
    "check_checkpoint_file",
    "ResumeCheckpoints",
    "atomic_torch_save",
    "find_last_checkpoint",
    "install_atomic_checkpoint_io",
    "mark_finished_epoch",
    "remove_stale_temporaries",
    "resolve_ckpt_path",
    "run_root_dirs",
]


# --------------------------------------------------------------------------- global RNG state
class GlobalRNGState(L.Callback):
    """Saves torch's, numpy's and Python's global RNG states in every checkpoint and restores
    them on resume, so the next epoch's worker seeds and (without workers) augmentations continue
    exactly as in an uninterrupted run. Every ssvar method adds it by default.

    Stored under ``ssvar_rng`` as tensors and plain lists, so checkpoints still load with
    ``torch.load(weights_only=True)``; checkpoints of earlier ssvar versions used the same key."""

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        version, pystate, pygauss = random.getstate()
        checkpoint["ssvar_rng"] = {
            "torch": torch.get_rng_state(),
            "numpy": [kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss), float(gauss)],
            "python": [version, list(pystate), pygauss],
        }

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        # Called while the checkpoint is restored, before the fit loop builds the next epoch's
        # iterator (which draws the workers' seeds and, with no workers, the augmentations).
        rng = checkpoint.get("ssvar_rng")
        if rng is None:
            return
        torch.set_rng_state(rng["torch"])
        kind, keys, pos, has_gauss, gauss = rng["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
        version, pystate, pygauss = rng["python"]
        random.setstate((version, tuple(pystate), pygauss))
