"""Weights handed from one training stage to the next, and frozen teachers.

Multi-stage methods (TimeBalance: self-supervised pretraining -> teacher fine-tuning -> student
distillation) pass networks between runs as checkpoint files. :func:`load_weights` loads one
sub-module's tensors from such a file and **fails loudly** when anything does not match: no key
with the prefix, a key the module lacks, a tensor the file lacks, or a shape mismatch. (A loader
that ignores mismatches silently trains from scratch; TimeBalance's released fine-tuning script
does exactly that: its R3D-50 builder ignores the self-supervised checkpoint it is given; see
``docs/methods/timebalance.md``.)

:class:`FrozenTeacher` wraps a network that never trains again: parameters without gradients,
eval mode whatever ``.train()`` the trainer calls, forward under ``no_grad``.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["FrozenTeacher", "load_weights", "read_state_dict"]


def read_state_dict(path: str, allow_pickle: bool | None = None) -> dict[str, torch.Tensor]:
    """The state dict stored in ``path``: a Lightning checkpoint (``state_dict``), a
    ``{"model_state": ...}`` / ``{"model": ...}`` wrapper, or a plain state dict.

    Read with ``torch.load(weights_only=True)`` (:func:`ssvar.serialization.load_file`): a file
    that needs full unpickling is refused unless ``allow_pickle`` or ``$SSVAR_ALLOW_PICKLE=1``."""
    from ssvar.serialization import load_file

    obj = load_file(path, allow_pickle=allow_pickle)
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state", "model"):
            if isinstance(obj.get(key), dict):
                return obj[key]
        return obj
    raise TypeError(f"{path} holds a {type(obj).__name__}, not a state dict")


def load_weights(module: nn.Module, path: str, prefix: str = "") -> int:
    """Load the tensors of ``path`` whose keys start with ``prefix`` (stripped) into ``module``,
    strictly. Returns the number of tensors loaded.

    Raises ``RuntimeError`` naming the file, the prefix and the offending keys when the keys or
    shapes do not match exactly (``KeyError`` when no key has the prefix).
    """
    state = read_state_dict(path)
    sub = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    if not sub:
        tops = sorted({k.split(".", 1)[0] + "." for k in state})
        raise KeyError(f"no key of {path} starts with {prefix!r}; its top-level prefixes are {tops[:10]}")
    own = module.state_dict()
    missing = [k for k in own if k not in sub]
    unexpected = [k for k in sub if k not in own]
    shapes = [
        f"{k}: file {tuple(sub[k].shape)} vs module {tuple(own[k].shape)}"
        for k in own
        if k in sub and sub[k].shape != own[k].shape
    ]
    if missing or unexpected or shapes:
        raise RuntimeError(
            f"weights {path} (prefix {prefix!r}) do not match {type(module).__name__}: "
            f"{len(missing)} missing {missing[:5]}, {len(unexpected)} unexpected {unexpected[:5]}, "
            f"{len(shapes)} shape mismatches {shapes[:3]}"
        )
    module.load_state_dict(sub, strict=True)
    return len(sub)


class FrozenTeacher(nn.Module):
    """A network that only predicts: no gradients, always in eval mode (BatchNorm uses its
    running statistics, dropout is off), forward under ``torch.no_grad``.

    Args:
        model: the network (its parameters are frozen in place).
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.model.eval()

    def train(self, mode: bool = True) -> FrozenTeacher:
        # Lightning calls .train() on the whole LightningModule every epoch: stay in eval.
        super().train(False)
        return self

    @torch.no_grad()
    def forward(self, *args, **kwargs):
        # Lightning may set ``.training`` flags directly (not through .train()): re-assert eval.
        self.model.train(False)
        return self.model(*args, **kwargs)
