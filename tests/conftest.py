"""Shared fixtures. Video helpers live in ``tests/helpers.py`` (importable as ``helpers``:
pytest puts this folder on ``sys.path`` for its conftest)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from helpers import TINY_CLASSES, write_video


@pytest.fixture
def video_factory(tmp_path):
    """``make(name, num_frames=16, width=32, height=32, **write_video_kwargs) -> str``: a real
    video at ``tmp_path / name`` (sub-folders are created; the extension picks the container)."""

    def make(name: str = "video.mp4", num_frames: int = 16, width: int = 32, height: int = 32, **kwargs) -> str:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return write_video(path, num_frames, width, height, **kwargs)

    return make


@pytest.fixture
def tiny_tree(video_factory, tmp_path) -> Path:
    """``tmp_path/tree/<class>/<class>_<i>.mp4``: 3 classes x 3 index-encoding videos (24 frames, 32x32)."""
    for c in TINY_CLASSES:
        for i in range(3):
            video_factory(f"tree/{c}/{c}_{i}.mp4", num_frames=24)
    return tmp_path / "tree"


@pytest.fixture(autouse=True)
def _wandb_service_per_test():
    """Stop W&B's background service after a test that used it: the service outlives the run and
    resolves the next run's relative `save_dir` against the folder it was started in (an earlier
    test's), so the next test's files would land there."""
    yield
    wandb = sys.modules.get("wandb")
    if wandb is not None and hasattr(wandb, "teardown"):
        wandb.teardown()
