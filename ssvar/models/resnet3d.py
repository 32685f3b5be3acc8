"""3D ResNets: SlowOnly-R50 (TimeBalance, ActNetFormer; pytorchvideo's ``slow_r50`` layout, written
here: pytorchvideo itself is not needed) and MMAction2's ResNet3d-18 (LTG's "3D-ResNet-18")."""

from __future__ import annotations

import torch
from torch import nn

from ssvar.models.backbones import VideoBackbone, init_resnet_weights

_DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}


class _Stem(nn.Module):
    """conv 1x7x7 stride 1x2x2, BatchNorm, ReLU, max-pool 1x3x3 stride 1x2x2 (pytorchvideo's
    ``ResNetBasicStem`` key names)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv3d(cin, cout, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False)
        self.norm = nn.BatchNorm3d(cout)
        self.activation = nn.ReLU()
        self.pool = nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.activation(self.norm(self.conv(x))))


class _Bottleneck(nn.Module):
    """``conv_a`` (t x 1 x 1) -> ``conv_b`` (1 x 3 x 3, spatially strided) -> ``conv_c`` (1 x 1 x 1),
    each with BatchNorm; ReLU after a and b (pytorchvideo's ``BottleneckBlock``)."""

    def __init__(self, cin: int, inner: int, cout: int, t_kernel: int, stride: int):
        super().__init__()
        self.conv_a = nn.Conv3d(cin, inner, (t_kernel, 1, 1), padding=(t_kernel // 2, 0, 0), bias=False)
        self.norm_a = nn.BatchNorm3d(inner)
        self.act_a = nn.ReLU()
        self.conv_b = nn.Conv3d(inner, inner, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1), bias=False)
        self.norm_b = nn.BatchNorm3d(inner)
        self.act_b = nn.ReLU()
        self.conv_c = nn.Conv3d(inner, cout, 1, bias=False)
        self.norm_c = nn.BatchNorm3d(cout)
        self.norm_c.block_final_bn = True  # starts at zero: each residual block starts as identity

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act_a(self.norm_a(self.conv_a(x)))
        x = self.act_b(self.norm_b(self.conv_b(x)))
        return self.norm_c(self.conv_c(x))


class _ResBlock(nn.Module):
    """``activation(branch1(x) + branch2(x))``, ``branch1`` a strided 1x1x1 conv + BatchNorm when the
    shape changes, else the identity (pytorchvideo's ``ResBlock``)."""

    def __init__(self, cin: int, inner: int, cout: int, t_kernel: int, stride: int):
        super().__init__()
        if cin != cout or stride != 1:
            self.branch1_conv = nn.Conv3d(cin, cout, 1, stride=(1, stride, stride), bias=False)
            self.branch1_norm = nn.BatchNorm3d(cout)
        else:
            self.branch1_conv = self.branch1_norm = None
        self.branch2 = _Bottleneck(cin, inner, cout, t_kernel, stride)
        self.activation = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.branch1_conv is None else self.branch1_norm(self.branch1_conv(x))
        return self.activation(shortcut + self.branch2(x))


class _Stage(nn.Module):
    def __init__(self, blocks: list[_ResBlock]):
        super().__init__()
        self.res_blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.res_blocks:
            x = block(x)
        return x


class SlowOnlyR50(VideoBackbone):
    """pytorchvideo's ``slow_r50`` layout, from scratch, without its classifier head.

    The network ``pytorchvideo.models.resnet.create_resnet`` builds for the hub's ``slow_r50``,
    written out here with the same module and key names and the same initialisation (a test checks
    both against pytorchvideo where it is installed): stem conv 1x7x7 stride 1x2x2 + max-pool
    1x3x3; ResNet bottleneck stages of 3/4/6/3
    blocks for depth 50; temporal kernel 1 in res2/res3 and 3 in res4/res5 (the bottlenecks'
    first 1x1 conv becomes 3x1x1); spatial stride 2 in res3..res5; **no temporal downsampling**),
    with ``head=None``. The hub head (an average pool of fixed size 8x7x7, dropout and a 2048->400
    linear) is replaced by a global average pool over time and space, so any clip size works.
    ~31.6M parameters at depth 50.

    Args:
        checkpoint: optional local file to load weights from: this module's own state dict or a
            pytorchvideo ``slow_r50`` state dict (same ``blocks.*`` keys; its head ``blocks.5.*`` is
            dropped; a ``{"model_state": ...}`` wrapper, as in pytorchvideo's released files, is
            unwrapped).
        depth: 50, 101 or 152 (``create_resnet``'s bottleneck depths); ``feature_dim`` is
            ``2048 * width_multiplier`` for all.
        in_channels: 3 for RGB.
        width_multiplier: scales every channel count (stem 64 -> ``64 * width_multiplier``, stages
            and ``feature_dim`` alike); 0.25 gives the "R50-1/4" low-capacity auxiliary network of
            CMPL (~2M parameters). ``64 * width_multiplier`` must be a whole number.
    """

    has_stage_features = True
    has_time_features = True

    def __init__(self, checkpoint: str | None = None, depth: int = 50, in_channels: int = 3, width_multiplier: float = 1.0):
        super().__init__()
        stem = 64 * width_multiplier
        if width_multiplier <= 0 or stem != int(stem):
            raise ValueError(f"width_multiplier must make 64 * width_multiplier a positive whole number, got {width_multiplier}")
        stem = int(stem)
        if depth not in _DEPTHS:
            raise ValueError(f"depth must be one of {sorted(_DEPTHS)}, got {depth}")
        # slow_r50: temporal kernel 1 in res2/res3 and 3 in res4/res5, spatial stride 2 from res3,
        # no temporal downsampling anywhere.
        blocks: list[nn.Module] = [_Stem(in_channels, stem)]
        cin, inner = stem, stem
        for n, t_kernel, stride in zip(_DEPTHS[depth], (1, 1, 3, 3), (1, 2, 2, 2)):
            cout = inner * 4
            blocks.append(_Stage([_ResBlock(cin if i == 0 else cout, inner, cout, t_kernel, stride if i == 0 else 1) for i in range(n)]))
            cin, inner = cout, inner * 2
        # Same key names as pytorchvideo's Net ("blocks.<i>..."): stem, res2, res3, res4, res5.
        self.blocks = nn.ModuleList(blocks)
        init_resnet_weights(self)
        self.stage_dims = [4 * stem, 8 * stem, 16 * stem, 32 * stem]
        self.feature_dim = 32 * stem
        self.load_initial_checkpoint(checkpoint)

    def init_weights(self) -> None:
        """Fresh weights, drawn as the constructor does (:func:`init_resnet_weights`)."""
        init_resnet_weights(self)

    def _remap(self, state: dict) -> dict:
        if isinstance(state.get("model_state"), dict):
            state = state["model_state"]
        # Drop the hub head (blocks.5: proj.weight / proj.bias) and a "net."/"model." wrapper prefix.
        out = {}
        for k, v in state.items():
            for p in ("net.", "model."):
                if k.startswith(p + "blocks."):
                    k = k[len(p) :]
            if not k.startswith(f"blocks.{len(self.blocks)}."):
                out[k] = v
        return out

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps after res2..res5 (``stage_dims`` channels; time kept, space /4, /8, /16, /32)."""
        x = self.blocks[0](x)
        out = []
        for stage in self.blocks[1:]:
            x = stage(x)
            out.append(x)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x.mean(dim=(2, 3, 4))


def _conv_bn(cin: int, cout: int, kernel, stride, padding, eps: float, relu: bool) -> nn.Sequential:
    layers = [nn.Conv3d(cin, cout, kernel, stride=stride, padding=padding, bias=False), nn.BatchNorm3d(cout, eps=eps)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class _BasicBlock3d(nn.Module):
    """Two 3x3x3 conv-BN layers (the first strided, with ReLU) and a residual; a 1x1x1 conv-BN
    shortcut when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: tuple[int, int, int], eps: float):
        super().__init__()
        self.conv1 = _conv_bn(cin, cout, 3, stride, 1, eps, relu=True)
        self.conv2 = _conv_bn(cout, cout, 3, 1, 1, eps, relu=False)
        self.downsample = _conv_bn(cin, cout, 1, stride, 0, eps, relu=False) if stride[1] != 1 or cin != cout else None
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(self.conv2(self.conv1(x)) + identity)


class ResNet3d18(VideoBackbone):
    """MMAction2's ``ResNet3d`` at depth 18 as LTG configures it (its "3D-ResNet-18"), from scratch.

    Layout (LTG's released configs + MMAction2 ``mmaction/models/backbones/resnet3d.py``):
    stem conv 3x7x7, stride 1x2x2, 64 channels, BatchNorm, ReLU; max-pool 1x3x3, stride 1x2x2;
    four stages of two basic blocks with every conv inflated to 3x3x3, 64/128/256/512 channels,
    spatial strides 1/2/2/2 and temporal strides 1/2/2/2 (in each stage's first block and its
    1x1x1 shortcut); ``pool2``, a 2x1x1 temporal max-pool after the first stage (MMAction2's
    default ``with_pool2=True``, which LTG's configs keep); BatchNorm ``eps=1e-3`` everywhere
    (LTG: SyncBN eps 1e-3; use ``trainer.sync_batchnorm`` for the "Sync"). Stages run at
    56/28/14/7 px for a 224 input, against 112/56/28/14 for torchvision's :class:`R3D18`.

    Initialisation (MMAction2 with ``pretrained=None`` and LTG's ``zero_init_residual=False``):
    conv Kaiming-normal (fan-out, ReLU), BatchNorm weight 1 / bias 0.

    Args:
        checkpoint: optional local file to load weights from (this module's key layout).
        in_channels: 3 for RGB.
        with_pool2: the temporal max-pool after the first stage (MMAction2/LTG: on).
        bn_eps: BatchNorm epsilon (LTG: 1e-3).
    """

    has_stage_features = True
    has_time_features = True

    def __init__(self, checkpoint: str | None = None, in_channels: int = 3, with_pool2: bool = True, bn_eps: float = 1e-3):
        super().__init__()
        widths = [64, 128, 256, 512]
        self.stem = nn.Sequential(
            _conv_bn(in_channels, 64, (3, 7, 7), (1, 2, 2), (1, 3, 3), bn_eps, relu=True),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
        )
        stages, cin = [], 64
        for i, w in enumerate(widths):
            s = 1 if i == 0 else 2
            stages.append(nn.Sequential(_BasicBlock3d(cin, w, (s, s, s), bn_eps), _BasicBlock3d(w, w, (1, 1, 1), bn_eps)))
            cin = w
        self.stages = nn.ModuleList(stages)
        self.pool2 = nn.MaxPool3d(kernel_size=(2, 1, 1), stride=(2, 1, 1)) if with_pool2 else None
        self.stage_dims = list(widths)
        self.feature_dim = widths[-1]
        self.init_weights()
        self.load_initial_checkpoint(checkpoint)

    def init_weights(self) -> None:
        """MMAction2's scheme with ``pretrained=None``: conv Kaiming-normal (fan-out), BatchNorm 1 / 0."""
        init_resnet_weights(self)

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps after each stage (the first after ``pool2``): space /4, /8, /16, /32;
        time /2, /4, /8, /16 with ``pool2`` (never below 1)."""
        x = self.stem(x)
        out = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i == 0 and self.pool2 is not None and x.shape[2] > 1:
                x = self.pool2(x)
            out.append(x)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_stages(x)[-1].mean(dim=(2, 3, 4))
