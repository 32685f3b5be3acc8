"""Video backbones behind one interface.

A backbone is an ``nn.Module`` mapping a float clip ``[B, C, T, H, W]`` to pooled features
``[B, feature_dim]`` (``forward``). The classifier head lives in the method, so one backbone
class serves every method. All backbones start from scratch (no hub weights are reachable);
``checkpoint`` loads a user's own state-dict file (safely: ``torch.load(weights_only=True)``, see
:mod:`ssvar.serialization`).

The ``checkpoint`` given to a backbone's constructor is its *initial* weights: once a model has
been trained, its own checkpoint holds every weight, so rebuilding it to test, predict or resume
must not need that file again. Code that rebuilds a trained model does so inside
:func:`restoring_trained_weights`, where backbones skip their initial ``checkpoint``.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import ClassVar

import torch
from torch import nn

_RESTORING = contextvars.ContextVar("ssvar_restoring_trained_weights", default=False)


@contextlib.contextmanager
def restoring_trained_weights() -> Iterator[None]:
    """While active, backbones built with ``checkpoint=`` do not read that file (the trained
    checkpoint loaded afterwards overwrites every weight anyway)."""
    token = _RESTORING.set(True)
    try:
        yield
    finally:
        _RESTORING.reset(token)


class VideoBackbone(nn.Module):
    """Base class: subclasses set ``feature_dim`` and implement ``forward``.

    Convolutional backbones also set ``stage_dims`` (channels per residual stage) and implement
    ``forward_stages(x) -> list[Tensor]`` (the feature map ``[B, C_s, T_s, H_s, W_s]`` after each
    stage), for methods that align features at every stage.
    """

    feature_dim: int
    stage_dims: list[int]
    # What a backbone can do beyond pooled features, declared (not probed) and checked by
    # :func:`check_backbone` for the methods that need it.
    has_stage_features: ClassVar[bool] = False  # forward_stages(x) and stage_dims (3D-CNNs)
    has_time_features: ClassVar[bool] = False  # time_features(x): per-time-step features
    has_token_hook: ClassVar[bool] = False  # forward(x, token_hook=...): patch tokens can be edited

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        raise NotImplementedError(f"{type(self).__name__} has no per-stage features")

    def time_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(pooled [B, D], per_time [B, T', D])`` from one forward. 3D-CNNs: the last feature
        map averaged over time and space as ``forward`` does (so ``pooled`` equals ``forward(x)``
        bit for bit), and over space only for ``per_time``."""
        if not self.has_stage_features:
            raise NotImplementedError(f"{type(self).__name__} has no per-time-step features")
        fmap = self.forward_stages(x)[-1]  # [B, D, T', H', W']
        return fmap.mean(dim=(2, 3, 4)), fmap.mean(dim=(3, 4)).transpose(1, 2)

    def init_weights(self) -> None:
        """Fresh weights drawn by this architecture's own initialiser (what its constructor
        does; e.g. TG-FixMatch's TG network, a copy of the RGB one with new weights). Default:
        every layer's PyTorch ``reset_parameters``; backbones with their own scheme override it."""
        for m in self.modules():
            reset = getattr(m, "reset_parameters", None)
            if m is not self and callable(reset):
                reset()

    def load_initial_checkpoint(self, path: str | None) -> None:
        """The constructor's ``checkpoint``: loaded unless a trained model is being rebuilt
        (:func:`restoring_trained_weights`)."""
        if path and not _RESTORING.get():
            self.load_checkpoint(path)

    def load_checkpoint(
        self, path: str, prefix: str = "", strict: bool = True, allow_pickle: bool | None = None
    ) -> None:
        """Load weights from a local file: a state dict (``torch.save`` or ``.safetensors``), a
        Lightning checkpoint, or ``{"state_dict": ...}``; ``prefix`` selects (and strips) a
        sub-module's keys. Files are read with ``torch.load(weights_only=True)``; a file that
        needs full unpickling is refused unless ``allow_pickle`` (or ``$SSVAR_ALLOW_PICKLE=1``)."""
        from ssvar.serialization import CheckpointError, load_file

        if str(path).endswith(".safetensors"):  # timm / Hugging Face weight files
            try:
                from safetensors.torch import load_file as load_safetensors
            except ImportError:
                raise ImportError(
                    "loading a .safetensors file needs the safetensors package: pip install safetensors"
                ) from None
            try:
                obj = load_safetensors(str(path), device="cpu")
            except (OSError, ValueError, RuntimeError) as e:
                raise CheckpointError(f"weights file {path} cannot be read: {e}") from None
        else:
            obj = load_file(path, allow_pickle=allow_pickle, what="weights file")
        state = obj.get("state_dict", obj) if isinstance(obj, dict) else obj
        if not isinstance(state, dict):
            raise CheckpointError(f"weights file {path} holds a {type(state).__name__}, not a state dict")
        if prefix:
            state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            if not state:
                raise KeyError(f"no key of {path} starts with {prefix!r}")
        state = self._remap(state)
        try:
            missing, unexpected = self.load_state_dict(state, strict=False)
        except RuntimeError as e:  # shape mismatches
            raise RuntimeError(f"checkpoint {path} does not match {type(self).__name__}: {e}") from None
        if strict and (missing or unexpected):
            raise RuntimeError(
                f"checkpoint {path} does not match {type(self).__name__}: missing {missing[:5]}, unexpected "
                f"{unexpected[:5]}"
            )

    def _remap(self, state: dict) -> dict:
        """Rename keys of foreign layouts to this module's (identity by default)."""
        return state


_CAPABILITIES = {
    "stage_features": "per-stage feature maps (forward_stages, stage_dims: a 3D-CNN such as Tiny3D, R3D18, "
    "ResNet3d18 or SlowOnlyR50)",
    "time_features": "per-time-step features (time_features: a 3D-CNN or TimeSformer)",
    "token_hook": "patch tokens it can edit (forward(x, token_hook=...): TimeSformer)",
}


def backbone_can(backbone: nn.Module, capability: str) -> bool:
    """Whether ``backbone`` declares ``capability`` (``"stage_features"``, ``"time_features"``,
    ``"token_hook"``): its class attribute ``has_<capability>``."""
    if capability not in _CAPABILITIES:
        raise ValueError(f"unknown backbone capability {capability!r}; known: {sorted(_CAPABILITIES)}")
    return bool(getattr(type(backbone), f"has_{capability}", False))


def check_backbone(backbone: object, argument: str = "backbone", user: str = "", needs: tuple[str, ...] = ()) -> None:
    """The one check of what a method needs from a backbone: a module with an integer
    ``feature_dim`` and each capability in ``needs``. Errors name the argument and the method.

    Raises:
        TypeError: not a module, or no ``feature_dim``.
        BackboneCapabilityError: a missing capability (a ``TypeError`` and a ``ValueError``).
    """
    who = f"{user} " if user else ""
    if not isinstance(backbone, nn.Module) or not isinstance(getattr(backbone, "feature_dim", None), int):
        raise TypeError(
            f"{argument}: {type(backbone).__name__} has no feature_dim attribute; use an ssvar.models backbone "
            "(or a VideoBackbone subclass that sets feature_dim)"
        )
    for cap in needs:
        if not backbone_can(backbone, cap):
            raise BackboneCapabilityError(
                f"{argument}: {who}needs {_CAPABILITIES[cap]}; {type(backbone).__name__} does not declare "
                f"has_{cap} = True"
            )


class BackboneCapabilityError(TypeError, ValueError):
    """A backbone lacks what a method needs (see :func:`check_backbone`)."""


class Tiny3D(VideoBackbone):
    """A small 3D-CNN for CPU work and tests (~0.1M parameters at width 16).

    Four conv-BN-ReLU stages; the first keeps time (kernel 3x3x3, spatial stride 2), later ones
    downsample space and time, then global average pooling.

    Args:
        width: channels of the first stage (doubled per stage up to 4x).
        in_channels: 3 for RGB.
        checkpoint: optional local file to load weights from.
    """

    has_stage_features = True
    has_time_features = True

    def __init__(self, width: int = 16, in_channels: int = 3, checkpoint: str | None = None):
        super().__init__()
        w = [width, width * 2, width * 4, width * 4]

        def block(cin: int, cout: int, stride: tuple[int, int, int]) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv3d(cin, cout, 3, stride=stride, padding=1, bias=False),
                nn.BatchNorm3d(cout),
                nn.ReLU(inplace=True),
            )

        self.stages = nn.Sequential(
            block(in_channels, w[0], (1, 2, 2)),
            block(w[0], w[1], (1, 2, 2)),
            block(w[1], w[2], (2, 2, 2)),
            block(w[2], w[3], (2, 2, 2)),
        )
        self.feature_dim = w[3]
        self.stage_dims = list(w)
        self.load_initial_checkpoint(checkpoint)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(x).mean(dim=(2, 3, 4))

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for stage in self.stages:
            x = stage(x)
            out.append(x)
        return out


class R3D18(VideoBackbone):
    """torchvision's ``r3d_18`` (3D ResNet-18), from scratch, without its classifier.

    Not LTG's "3D-ResNet-18": torchvision's stem has no max-pool, so its stages run at 112/56/28/14
    px for a 224 input (about 4x the compute per stage of MMAction2's layout, another receptive
    field). For LTG's network use :class:`~ssvar.models.ResNet3d18`.

    Args:
        checkpoint: optional local file to load weights from (torchvision's key layout).
    """

    has_stage_features = True
    has_time_features = True

    def __init__(self, checkpoint: str | None = None):
        super().__init__()
        from torchvision.models.video import r3d_18

        net = r3d_18(weights=None)  # torchvision's VideoResNet initialises itself (init_weights)
        self.feature_dim = net.fc.in_features
        net.fc = nn.Identity()
        self.net = net
        self.stage_dims = [64, 128, 256, 512]
        self.load_initial_checkpoint(checkpoint)

    def init_weights(self) -> None:
        """torchvision ``VideoResNet``'s scheme: conv Kaiming-normal (fan-out, ReLU), BatchNorm
        weight 1 / bias 0."""
        init_resnet_weights(self)

    def _remap(self, state: dict) -> dict:
        # Accept torchvision's own layout (keys without "net.") as well as ours; drop its fc.
        return {(k if k.startswith("net.") else "net." + k): v for k, v in state.items() if ".fc." not in "." + k}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps after ``layer1``..``layer4``: time strides 1/2/4/8, space strides 2/4/8/16
        (the stem halves space and keeps time)."""
        x = self.net.stem(x)
        out = []
        for layer in (self.net.layer1, self.net.layer2, self.net.layer3, self.net.layer4):
            x = layer(x)
            out.append(x)
        return out


def init_resnet_weights(module: nn.Module) -> None:
    """The initialisation 3D ResNets share (pytorchvideo's ``init_net_weights(style="resnet")``,
    torchvision's ``VideoResNet``, MMAction2's ``ResNet3d`` without pretrained weights):
    convolutions Kaiming-normal (fan-out, ReLU), BatchNorm weight 1 and bias 0 except each
    bottleneck's last BatchNorm (weight 0), linear layers normal(0, 0.01)."""
    for m in module.modules():
        if isinstance(m, nn.Conv3d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm3d):
            nn.init.constant_(m.weight, 0.0 if getattr(m, "block_final_bn", False) else 1.0)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.01)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
