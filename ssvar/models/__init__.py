"""Video backbones: pooled features of a clip, behind one interface."""

from ssvar.models.backbones import R3D18, BackboneCapabilityError, Tiny3D, VideoBackbone, backbone_can, check_backbone
from ssvar.models.heads import Classifier, ClassifierHead
from ssvar.models.resnet3d import ResNet3d18, SlowOnlyR50
from ssvar.models.timesformer import TimeSformer, timesformer_vit_b, timesformer_vit_s

__all__ = [
    "VideoBackbone",
    "Classifier",
    "ClassifierHead",
    "check_backbone",
    "backbone_can",
    "BackboneCapabilityError",
    "Tiny3D",
    "R3D18",
    "ResNet3d18",
    "SlowOnlyR50",
    "TimeSformer",
    "timesformer_vit_s",
    "timesformer_vit_b",
]
