"""Classifier heads: what turns a backbone's pooled features into class logits."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Classifier", "ClassifierHead"]


class ClassifierHead(nn.Sequential):
    """Dropout then a linear layer, ``[B, D] -> [B, K]``.

    An ``nn.Sequential`` so its state-dict keys are ``1.weight`` / ``1.bias``, the layout of every
    ssvar checkpoint (and of MMAction2's ``dropout + fc_cls`` head)."""

    def __init__(self, in_dim: int, num_classes: int, dropout: float = 0.5):
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        super().__init__(nn.Dropout(dropout), nn.Linear(in_dim, num_classes))


class Classifier(nn.Module):
    """Backbone + head as one module: what an EMA teacher copies, Precise-BN forwards and
    ``ssvar predict`` runs. Built on the fly from a method's registered modules, so it adds no
    state-dict keys of its own."""

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))
