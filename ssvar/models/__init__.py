"""Video backbones: pooled features of a clip, behind one interface."""

from ssvar.models.backbones import R3D18, Tiny3D, VideoBackbone

__all__ = ["VideoBackbone", "Tiny3D", "R3D18"]
