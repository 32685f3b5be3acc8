"""Video decoding, clip sampling, transforms, indexes and splits, datasets and DataModules.

The names below are imported on first use, so ``ssvar splits`` and ``ssvar check-videos`` start
without importing torch or Lightning.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_WHERE = {
    "FolderDataModule": "ssvar.data.datamodule",
    "HMDB51DataModule": "ssvar.data.datamodule",
    "Kinetics400DataModule": "ssvar.data.datamodule",
    "SemiSupervisedDataModule": "ssvar.data.datamodule",
    "SyntheticActionsDataModule": "ssvar.data.datamodule",
    "UCF101DataModule": "ssvar.data.datamodule",
    "VideoDataset": "ssvar.data.dataset",
    "ViewSpec": "ssvar.data.dataset",
    "PyAVDecoder": "ssvar.data.decode",
    "VideoDecodeError": "ssvar.data.decode",
    "SplitError": "ssvar.data.index",
    "VideoIndex": "ssvar.data.index",
    "VideoRecord": "ssvar.data.index",
    "TemporalWarp": "ssvar.data.transforms",
}

__all__ = list(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ssvar.data' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))


if TYPE_CHECKING:
    from ssvar.data.datamodule import (
        FolderDataModule,
        HMDB51DataModule,
        Kinetics400DataModule,
        SemiSupervisedDataModule,
        SyntheticActionsDataModule,
        UCF101DataModule,
    )
    from ssvar.data.dataset import VideoDataset, ViewSpec
    from ssvar.data.decode import PyAVDecoder, VideoDecodeError
    from ssvar.data.index import SplitError, VideoIndex, VideoRecord
    from ssvar.data.transforms import TemporalWarp
