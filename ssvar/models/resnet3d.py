"""SlowOnly-R50: the 3D-ResNet-50 of TimeBalance and ActNetFormer (pytorchvideo ``slow_r50``)."""

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
        self.load_initial_checkpoint(checkpoint)

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
