"""Video decoding, clip sampling, transforms, indexes and splits, datasets and DataModules."""

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

__all__ = [
    "FolderDataModule",
    "HMDB51DataModule",
    "Kinetics400DataModule",
    "SemiSupervisedDataModule",
    "SyntheticActionsDataModule",
    "UCF101DataModule",
    "VideoDataset",
    "ViewSpec",
    "PyAVDecoder",
    "VideoDecodeError",
    "SplitError",
    "VideoIndex",
    "VideoRecord",
    "TemporalWarp",
]
