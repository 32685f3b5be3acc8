"""The ``ssvar`` command.

* ``ssvar fit|validate|test|predict --config X.yaml``: LightningCLI, model and data given by
  ``class_path`` (any ``ssvar.methods`` method, any ``ssvar.data`` DataModule).
* ``ssvar splits make|verify ...``: class-balanced labelled subsets and their checks.
* ``ssvar check-videos ROOT``: list unreadable or too-short videos (exit status 1 if any).
* ``ssvar prepare-videos SRC DST``: re-encode a dataset to a small short side and short GOP
  (``ssvar.data.prepare``), verified, resumable.
* ``ssvar predict --ckpt X.ckpt VIDEO_OR_FOLDER ...``: top-k classes of new videos
  (``ssvar.predict``); with ``--config`` it is LightningCLI's predict on a data module instead.
"""

from __future__ import annotations

import sys

from lightning.pytorch.cli import LightningCLI

from ssvar.data.datamodule import SemiSupervisedDataModule
from ssvar.methods.base import SemiSupervisedModule


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

    def after_fit(self) -> None:
        if self.config.get(self.subcommand, {}).get("test_after_fit"):
            ckpt = self.trainer.checkpoint_callback.best_model_path if self.trainer.checkpoint_callback else None
            self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=ckpt or None)


def run_cli(args: list[str] | None = None, run: bool = True) -> SsvarCLI:
    """LightningCLI entry, usable from Python and tests (``args`` as on the command line).

    With ``run=False`` the model and data are only built (a leading subcommand is ignored).
    """
    if not run and args and args[0] in ("fit", "validate", "test", "predict"):
        args = args[1:]
    return SsvarCLI(
        SemiSupervisedModule,
        SemiSupervisedDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=args,
        run=run,
        save_config_kwargs={"overwrite": True},
    )


def main(argv: list[str] | None = None) -> int:
    from_command_line = argv is None
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "splits":
        from ssvar.data.splits import splits_main

        return splits_main(argv[1:])
    if argv and argv[0] == "check-videos":
        from ssvar.data.check import check_videos_main

        return check_videos_main(argv[1:])
    if argv and argv[0] == "prepare-videos":
        from ssvar.data.prepare import prepare_videos_main

        return prepare_videos_main(argv[1:])
    if argv and argv[0] == "predict" and not _lightning_predict(argv[1:]):
        from ssvar.predict import predict_main

        return predict_main(argv[1:])
    # From the command line LightningCLI reads sys.argv itself (passing it too makes it warn).
    run_cli(None if from_command_line else argv)
    return 0


def _lightning_predict(args: list[str]) -> bool:
    """``ssvar predict`` goes to LightningCLI when it is given a config or model/data arguments."""
    own = ("-c", "--config", "--print_config", "--model", "--data", "--trainer")
    return any(a.split("=", 1)[0] in own or a.startswith(("--model.", "--data.", "--trainer.")) for a in args)


if __name__ == "__main__":
    sys.exit(main())
