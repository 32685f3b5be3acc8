"""Reusable parts of semi-supervised methods; no part imports a method."""

from ssvar.components.ema import EMATeacher
from ssvar.components.pseudo_label import PseudoLabeler, PseudoLabels

__all__ = ["EMATeacher", "PseudoLabeler", "PseudoLabels"]
