"""``ssvar fit|validate|test|predict``: LightningCLI with ssvar's defaults.

* Model and data are given by ``class_path`` (any ``ssvar.methods`` method, any ``ssvar.data``
  DataModule); ``num_classes`` is linked from the data.
* ``--config`` takes a file or the name of a shipped config (``demo``, ``methods/fixmatch``,
  ``ssvar:trainer/csv``; ``ssvar configs list``).
* The method's own arguments choose the optimiser and its schedule (``--model.init_args.lr``,
  ``optimizer``, ``warmup_steps``, ...): LightningCLI's ``--optimizer``/``--lr_scheduler`` are not
  offered, because they would replace ssvar's SGD, warm-up + cosine schedule and no-decay groups.
* ``--ckpt_path`` is checked before anything is built: a missing file, a folder, a corrupt file
  or one from another program is a one-line error (exit status 2). ``validate``, ``test`` and
  ``predict`` need one. A model rebuilt to load a checkpoint does not read its backbone's initial
  ``checkpoint`` file again (the trained checkpoint holds every weight).
* ``predict`` writes ``predictions.csv`` into the run folder (:class:`ssvar.callbacks.PredictionWriter`).
* The run's config goes into the run's own versioned folder, whatever the logger.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings

from lightning.pytorch.cli import LightningCLI, SaveConfigCallback

from ssvar.config_files import resolve_config_args
from ssvar.data.datamodule import SemiSupervisedDataModule
from ssvar.methods.base import VideoModule
from ssvar.models.backbones import restoring_trained_weights
from ssvar.serialization import CheckpointError, check_checkpoint_path

# Checkpoint names Lightning resolves itself (no file to check here).
_SPECIAL_CKPT = ("last", "best", "hpc", "registry")


def quiet_warnings() -> None:
    """Hide warnings that ask nothing of the user (Lightning internals, by-design hooks)."""
    for message in (
        r".*overridden `on_after_batch_transfer`.*",  # the methods move augmentation to the device on purpose
        r".*overridden `on_before_batch_transfer`.*",
        r".*isinstance\(treespec, LeafSpec\).*",  # torch.utils._pytree deprecation inside Lightning
        r".*skip_none parameter was deprecated.*",  # jsonargparse, from LightningCLI's config saving
        r"LightningCLI's args parameter is intended.*",  # we pass the resolved argv ourselves
        r".*module\(s\) in eval mode at the start of training.*",  # frozen teachers are in eval on purpose
        r"(?s).*was deprecated in v4\.\d+.*",  # jsonargparse deprecations triggered inside LightningCLI
    ):
        warnings.filterwarnings("ignore", message=message)


class RunConfigCallback(SaveConfigCallback):
    """Saves ``config.yaml`` into the run's own versioned folder (:func:`ssvar.callbacks.run_dir`),
    for every logger (Lightning's default puts it in W&B's shared ``save_dir``, where runs overwrite
    each other's)."""

    def setup(self, trainer, pl_module, stage: str) -> None:
        if self.already_saved:
            return
        if trainer.is_global_zero:
            from ssvar.callbacks import run_dir

            folder = run_dir(trainer)
            os.makedirs(folder, exist_ok=True)
            self.parser.save(self.config, os.path.join(folder, self.config_filename), skip_none=False, overwrite=True, multifile=self.multifile)
            self.already_saved = True
        self.already_saved = trainer.strategy.broadcast(self.already_saved)


class SsvarCLI(LightningCLI):
    """LightningCLI that links the data's class count into the model and can test after fit."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("data.num_classes", "model.init_args.num_classes", apply_on="instantiate")
        parser.add_argument(
            "--test_after_fit",
            type=bool,
            default=False,
            help="after `fit`, run `test` (multi-view) on the last checkpoint",
        )

    # -- checkpoints ----------------------------------------------------------------------
    def _ckpt_path(self) -> str | None:
        sub = self.config.get(self.subcommand) if self.subcommand else None
        return sub.get("ckpt_path") if sub is not None else None

    def _parse_ckpt_path(self) -> None:
        # Checked before LightningCLI reads the checkpoint's hyperparameters (its first load).
        sub = self.config.get("subcommand")
        if sub:
            ckpt = self.config[sub].get("ckpt_path")
            if ckpt is None and sub in ("validate", "test", "predict"):
                raise CheckpointError("give the trained checkpoint with --ckpt_path FILE (the model would otherwise be untrained)")
            if ckpt is not None and str(ckpt) not in _SPECIAL_CKPT:
                check_checkpoint_path(ckpt)
        super()._parse_ckpt_path()

    def instantiate_classes(self) -> None:
        # With a checkpoint to load, backbones skip their initial `checkpoint` weights file.
        restoring = self.subcommand is not None and self._ckpt_path() is not None
        with restoring_trained_weights() if restoring else contextlib.nullcontext():
            super().instantiate_classes()

    def _resolve_ckpt_path(self) -> None:
        # `--ckpt_path last`: the newest last.ckpt under the run's root (each run has a new version
        # folder); nothing to resume from is an error, never a silent fresh start.
        from ssvar.checkpointing import resolve_ckpt_path

        cfg = self.config_init[self.subcommand]
        given = cfg.get("ckpt_path")
        cfg["ckpt_path"] = resolve_ckpt_path(given, self.trainer)
        if given == "last":  # the file found is checked like a named one
            check_checkpoint_path(cfg["ckpt_path"])

    def before_fit(self) -> None:
        self._resolve_ckpt_path()

    def before_validate(self) -> None:
        self._resolve_ckpt_path()

    def before_test(self) -> None:
        self._resolve_ckpt_path()

    # -- predict writes its results -------------------------------------------------------
    def before_predict(self) -> None:
        self._resolve_ckpt_path()
        from ssvar.callbacks import PredictionWriter

        if not any(isinstance(c, PredictionWriter) for c in self.trainer.callbacks):
            self.trainer.callbacks.append(PredictionWriter())

    def after_predict(self) -> None:
        from ssvar.callbacks import PredictionWriter

        for c in self.trainer.callbacks:
            if isinstance(c, PredictionWriter) and c.written and self.trainer.is_global_zero:
                print(f"predictions written to {c.written}")

    def after_fit(self) -> None:
        if self.config.get(self.subcommand, {}).get("test_after_fit"):
            ckpt = self.trainer.checkpoint_callback.best_model_path if self.trainer.checkpoint_callback else None
            self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=ckpt or None)


def run_cli(args: list[str] | None = None, run: bool = True) -> SsvarCLI:
    """LightningCLI entry, usable from Python and tests (``args`` as on the command line).

    With ``run=False`` the model and data are only built (a leading subcommand is ignored).
    """
    quiet_warnings()
    args = resolve_config_args(list(sys.argv[1:] if args is None else args))
    if not run and args and args[0] in ("fit", "validate", "test", "predict"):
        args = args[1:]
    return SsvarCLI(
        VideoModule,
        SemiSupervisedDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=args,
        run=run,
        save_config_callback=RunConfigCallback,
        save_config_kwargs={"overwrite": True},
        auto_configure_optimizers=False,
    )


def main(argv: list[str]) -> int:
    """``ssvar fit|validate|test|predict ...`` (``argv[0]`` is the subcommand)."""
    if argv[0] == "predict" and any(a == "--ckpt" or a.startswith("--ckpt=") for a in argv[1:]):
        print(
            "ssvar predict: to predict video files use `ssvar predict-videos --ckpt CKPT VIDEO ...`; "
            "`ssvar predict --config X.yaml --ckpt_path CKPT` predicts a data module's test list",
            file=sys.stderr,
        )
        return 2
    from ssvar.data.index import SplitError

    try:
        run_cli(argv)
    except (CheckpointError, SplitError) as e:  # a bad checkpoint or split list: one line, exit 2
        print(f"ssvar {argv[0]}: error: {e}", file=sys.stderr)
        return 2
    return 0
