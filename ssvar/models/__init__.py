"""Video backbones: pooled features of a clip, behind one interface."""

from ssvar.models.backbones import R3D18, Tiny3D, VideoBackbone
from ssvar.models.resnet3d import ResNet3d18, SlowOnlyR50
from ssvar.models.timesformer import TimeSformer, timesformer_vit_b, timesformer_vit_s

__all__ = [
    "VideoBackbone",
    "Tiny3D",
    "R3D18",
    "ResNet3d18",
    "SlowOnlyR50",
    "TimeSformer",
    "timesformer_vit_s",
    "timesformer_vit_b",
]
