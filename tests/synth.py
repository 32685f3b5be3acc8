"""A tiny SyntheticActions set shared by the method, data module and CLI tests."""

from __future__ import annotations

TINY = dict(num_classes=4, videos_per_class=6, video_frames=16, resolution=32)


def tiny_data_args(root: str, **overrides) -> dict:
    """The tiny set's ``SyntheticActionsDataModule`` arguments (also a config's ``data.init_args``)."""
    kw = dict(
        root=str(root),
        **TINY,
        labeled_per_class=1,
        test_fraction=0.34,
        batch_size=2,
        num_workers=0,
        num_frames=4,
        stride=2,
        crop_size=24,
        short_side=28,
        test_clips=2,
        test_crops=1,
    )
    kw.update(overrides)
    return kw


def tiny_datamodule(root: str, **overrides):
    from ssvar.data import SyntheticActionsDataModule

    return SyntheticActionsDataModule(**tiny_data_args(root, **overrides))


def load_benchmark(name: str):
    """The module of ``benchmarks/<name>.py`` (scripts, not a package)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


import lightning as L  # noqa: E402


def tiny_trainer(root, **overrides) -> L.Trainer:
    """A quiet CPU trainer for tests: no logger, checkpoints, progress bar or validation."""
    args = dict(
        accelerator="cpu",
        max_steps=3,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(root),
    )
    args.update(overrides)
    return L.Trainer(**args)


class RecordIndices(L.Callback):
    """Writes each rank's labelled and unlabelled sample indices per step (a JSON line each)."""

    def __init__(self, out_dir: str):
        self.out_dir = out_dir

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        import json
        import os

        row = {k: batch[k]["index"].tolist() for k in ("labeled", "unlabeled") if k in batch}
        with open(os.path.join(self.out_dir, f"rank{trainer.global_rank}.jsonl"), "a") as f:
            f.write(json.dumps(row) + "\n")


class SaveTeacher(L.Callback):
    """Each rank saves its EMA teacher's state at the end of training (to compare ranks)."""

    def __init__(self, out_dir: str):
        self.out_dir = out_dir

    def on_train_end(self, trainer, module):
        import os

        import torch

        state = {k: v.detach().cpu().clone() for k, v in module.teacher.state_dict().items()}
        torch.save(state, os.path.join(self.out_dir, f"teacher_rank{trainer.global_rank}.pt"))
