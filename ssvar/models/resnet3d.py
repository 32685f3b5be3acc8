"""3D ResNets: SlowOnly-R50 (TimeBalance, ActNetFormer; pytorchvideo ``slow_r50``) and MMAction2's
ResNet3d-18 (LTG's "3D-ResNet-18")."""

from __future__ import annotations

import warnings

import torch
from torch import nn

from ssvar.models.backbones import VideoBackbone


class SlowOnlyR50(VideoBackbone):
    """pytorchvideo's ``slow_r50`` layout, from scratch, without its classifier head.

    Built with ``pytorchvideo.models.resnet.create_resnet`` exactly as the hub builder ``slow_r50``
    does (stem conv 1x7x7 stride 1x2x2 + max-pool 1x3x3; ResNet bottleneck stages of 3/4/6/3
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

    def __init__(self, checkpoint: str | None = None, depth: int = 50, in_channels: int = 3, width_multiplier: float = 1.0):
        super().__init__()
        stem = 64 * width_multiplier
        if width_multiplier <= 0 or stem != int(stem):
            raise ValueError(f"width_multiplier must make 64 * width_multiplier a positive whole number, got {width_multiplier}")
        stem = int(stem)
        with warnings.catch_warnings():  # fvcore: "torch.jit.script is deprecated" (FutureWarning)
            warnings.simplefilter("ignore", FutureWarning)
            from pytorchvideo.models.resnet import create_resnet

        net = create_resnet(
            input_channel=in_channels,
            model_depth=depth,
            stem_conv_kernel_size=(1, 7, 7),  # slow_r50; every other setting is create_resnet's default
            stem_dim_out=stem,  # every later width follows from it (x4 out, x2 per stage)
            head=None,
        )
        # Same key names as pytorchvideo's Net ("blocks.<i>..."): stem, res2, res3, res4, res5.
        self.blocks = net.blocks
        self.stage_dims = [4 * stem, 8 * stem, 16 * stem, 32 * stem]
        self.feature_dim = 32 * stem
        if checkpoint:
            self.load_checkpoint(checkpoint)

    def init_weights(self) -> None:
        """pytorchvideo's own scheme (``init_net_weights``, what ``create_resnet`` does): conv
        Kaiming-normal (fan-out), BatchNorm 1 / 0 except each bottleneck's last BatchNorm, which
        starts at 0."""
        from pytorchvideo.models.weight_init import init_net_weights

        init_net_weights(self, style="resnet")

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
        if checkpoint:
            self.load_checkpoint(checkpoint)

    def init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

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
