"""TimeSformer with divided space-time attention (Bertasius et al., ICML 2021), written on
``torch.nn.functional.scaled_dot_product_attention``.

Parameter names follow the reference implementation (facebookresearch/TimeSformer, ``vit.py``),
which itself follows timm's ViT: ``patch_embed.proj``, ``cls_token``, ``pos_embed``,
``time_embed``, ``blocks.<i>.{norm1, attn.qkv, attn.proj, temporal_norm1, temporal_attn.qkv,
temporal_attn.proj, temporal_fc, norm2, mlp.fc1, mlp.fc2}``, ``norm``. So a reference
TimeSformer checkpoint and a timm image ViT checkpoint (``vit_small_patch16_224``,
``vit_base_patch16_224``, DeiT) load through ``load_checkpoint`` (see ``TimeSformer._remap``).

YAML (LightningCLI)::

    backbone:
      class_path: ssvar.models.TimeSformer
      init_args: {variant: vit_b, img_size: 224, num_frames: 8, drop_path_rate: 0.1}

``variant`` picks the width/depth/heads (``vit_s``: 384-d, 12 layers, 6 heads, the default;
``vit_b``: 768-d, 12 layers, 12 heads); ``embed_dim``, ``depth`` and ``num_heads`` given
explicitly override it (``{depth: 2}`` is a 2-layer ViT-S), and with ``variant: null`` all three
must be given.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, cast

import torch
import torch.nn.functional as F
from einops import rearrange  # the token layouts of divided space-time attention, spelled out
from torch import nn

from ssvar.models.backbones import VideoBackbone

#: (embed_dim, depth, num_heads) of the named variants.
VARIANTS: dict[str, tuple[int, int, int]] = {"vit_s": (384, 12, 6), "vit_b": (768, 12, 12)}

TokenHook = Callable[[torch.Tensor], torch.Tensor]


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Stochastic depth: zero the whole residual branch of a sample (first dim) with probability p."""
    if p == 0.0 or not training:
        return x
    keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1.0 - p)
    return x * keep / (1.0 - p)


class Mlp(nn.Module):
    """``fc1 -> GELU -> dropout -> fc2 -> dropout`` (timm's ``Mlp`` key names)."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class Attention(nn.Module):
    """Multi-head self-attention over the second-to-last dim of ``[..., L, D]`` (timm key names)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed_dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.attn_drop = attn_drop
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        *lead, L, D = x.shape
        x = x.reshape(-1, L, D)
        q, k, v = rearrange(self.qkv(x), "b l (three h d) -> three b h l d", three=3, h=self.num_heads)
        x = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop if self.training else 0.0)
        x = self.proj(rearrange(x, "b h l d -> b l (h d)"))
        return self.proj_drop(x).reshape(*lead, L, D)


class DividedBlock(nn.Module):
    """One divided space-time block on patch tokens ``x [B, T, N, D]`` and the CLS token ``cls [B, 1, D]``.

    1. temporal: ``x += temporal_fc(temporal_attn(temporal_norm1(x)))``, attention over the T tokens of
       each spatial location (CLS not involved);
    2. spatial: per frame, attention among ``[cls, x[:, t]]`` (N+1 tokens, CLS replicated per frame);
       ``x += `` the patch outputs, ``cls += `` the CLS outputs averaged over frames;
    3. ``[cls, x] += mlp(norm2([cls, x]))``.

    As in the reference. Deviation: drop-path drops a branch per clip (the reference drops per
    location in the temporal and per frame in the spatial branch) and is applied after
    ``temporal_fc``, so a dropped temporal branch adds exactly zero.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
    ):
        super().__init__()
        norm = lambda: nn.LayerNorm(dim, eps=1e-6)  # noqa: E731
        self.temporal_norm1 = norm()
        self.temporal_attn = Attention(dim, num_heads, qkv_bias, attn_drop, drop)
        self.temporal_fc = nn.Linear(dim, dim)
        self.norm1 = norm()
        self.attn = Attention(dim, num_heads, qkv_bias, attn_drop, drop)
        self.norm2 = norm()
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)
        self.drop_path = drop_path

    def forward(self, cls: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``cls [B, 1, D]`` (one CLS token shared by the frames, the reference) or ``[B, T, D]``
        (one per frame); ``x [B, T, N, D]``."""
        B, T, N, D = x.shape
        Tc = cls.shape[1]
        dp = lambda r: drop_path(r, self.drop_path, self.training)  # noqa: E731
        # Temporal attention: sequences of length T, one per (clip, spatial location).
        xt = self.temporal_attn(rearrange(self.temporal_norm1(x), "b t n d -> b n t d"))
        xt = rearrange(xt, "b n t d -> b t n d")
        x = x + dp(self.temporal_fc(xt))
        # Spatial attention: sequences of N + 1 tokens, one per (clip, frame).
        xs = torch.cat([cls.unsqueeze(2).expand(B, T, 1, D), x], dim=2)  # [B, T, 1 + N, D]
        rs = dp(self.attn(self.norm1(xs)))
        # A shared CLS token takes the frame average of its updates; per-frame ones keep their own.
        cls = cls + (rs[:, :, 0].mean(dim=1, keepdim=True) if Tc == 1 else rs[:, :, 0])
        x = x + rs[:, :, 1:]
        # MLP on all tokens.
        h = torch.cat([cls, rearrange(x, "b t n d -> b (t n) d")], dim=1)
        h = h + dp(self.mlp(self.norm2(h)))
        return h[:, :Tc], rearrange(h[:, Tc:], "b (t n) d -> b t n d", t=T)


class TimeSformer(VideoBackbone):
    """TimeSformer (divided space-time attention); ``forward`` gives the CLS feature ``[B, embed_dim]``.

    A fresh model has every ``temporal_fc`` and the time embedding at zero, so the temporal
    attention branch adds nothing and the model starts as an image ViT applied to every frame,
    which is what loading an image-pretrained ViT expects (:meth:`load_checkpoint` with a timm ViT
    state dict, see ``_remap``). With the reference layout (``cls_per_frame=False``: one CLS
    token shared by the frames, updated with the frame average of its spatial-attention outputs)
    the frames still meet in that CLS token, so the equivalence is exact only for one frame or
    equal frames. With ``cls_per_frame=True`` every frame has its own CLS token (the pooled
    feature is the frame average of the final CLS features): then, with the temporal parts at
    their initial values, each frame's CLS and patch features equal the image model's on that
    frame, for any clip. Inputs of another spatial size or frame count than ``img_size`` /
    ``num_frames`` interpolate the position (bicubic) and time (linear) embeddings.

    Args:
        variant: ``"vit_s"`` (384-d, 12 layers, 6 heads), ``"vit_b"`` (768-d, 12, 12) or None.
        embed_dim, depth, num_heads: override the variant's (all three required if ``variant`` is None).
        mlp_ratio: MLP hidden width / ``embed_dim``.
        patch_size: square patch side (Conv2d stride = kernel).
        img_size: the input side the position embedding is laid out for.
        num_frames: the frame count the time embedding is laid out for.
        in_channels: 3 for RGB.
        qkv_bias: bias in the qkv projections (True in ViT-S/B).
        drop_rate: dropout after embeddings, attention projections and MLP layers.
        attn_drop: dropout on attention weights.
        drop_path_rate: stochastic depth, increasing linearly from 0 to this over the blocks.
        cls_per_frame: one CLS token per frame instead of the reference's shared one (see above;
            the temporal attention never involves CLS tokens in either layout).
        checkpoint: optional local file to load weights from (see ``_remap`` for accepted layouts).
    """

    has_time_features = True
    has_token_hook = True

    def __init__(
        self,
        variant: Literal["vit_s", "vit_b"] | None = "vit_s",
        embed_dim: int | None = None,
        depth: int | None = None,
        num_heads: int | None = None,
        mlp_ratio: float = 4.0,
        patch_size: int = 16,
        img_size: int = 224,
        num_frames: int = 8,
        in_channels: int = 3,
        qkv_bias: bool = True,
        drop_rate: float = 0.0,
        attn_drop: float = 0.0,
        drop_path_rate: float = 0.0,
        cls_per_frame: bool = False,
        checkpoint: str | None = None,
    ):
        super().__init__()
        if variant is not None:
            if variant not in VARIANTS:
                raise ValueError(f"variant must be one of {sorted(VARIANTS)} or None, got {variant!r}")
            d, n, h = VARIANTS[variant]
            embed_dim = d if embed_dim is None else embed_dim
            depth = n if depth is None else depth
            num_heads = h if num_heads is None else num_heads
        elif embed_dim is None or depth is None or num_heads is None:
            raise ValueError("with variant=None, give embed_dim, depth and num_heads")
        self.embed_dim = self.feature_dim = embed_dim
        self.depth, self.num_heads = depth, num_heads
        self.patch_size, self.img_size, self.num_frames = patch_size, img_size, num_frames
        self.grid = img_size // patch_size
        self.cls_per_frame = cls_per_frame

        self.patch_embed = nn.Module()  # a container, for timm's key names (patch_embed.proj.*)
        self.patch_embed.proj = nn.Conv2d(in_channels, embed_dim, patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.grid**2, embed_dim))
        self.time_embed = nn.Parameter(torch.zeros(1, num_frames, embed_dim))
        self.pos_drop = nn.Dropout(drop_rate)
        self.time_drop = nn.Dropout(drop_rate)
        rates = torch.linspace(0, drop_path_rate, depth).tolist()
        self.blocks = nn.ModuleList(
            DividedBlock(embed_dim, num_heads, mlp_ratio, qkv_bias, drop_rate, attn_drop, r) for r in rates
        )
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self._init_weights()
        self.load_initial_checkpoint(checkpoint)

    def _init_weights(self) -> None:
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for blk in self.blocks:  # the reference zeroes all but the first block's; we zero all
            fc = cast(nn.Linear, blk.temporal_fc)
            nn.init.zeros_(fc.weight)
            nn.init.zeros_(fc.bias)
        # time_embed stays zero (as in the reference).

    # ---------------------------------------------------------------------------------------------
    def _pos_embed(self, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(CLS position embedding [1, 1, D], patch position embeddings [1, 1, h*w, D])."""
        cls_pos, pos = self.pos_embed[:, :1], self.pos_embed[:, 1:]
        if (h, w) != (self.grid, self.grid):
            pos = pos.reshape(1, self.grid, self.grid, -1).permute(0, 3, 1, 2)
            pos = F.interpolate(pos, size=(h, w), mode="bicubic", align_corners=False)
            pos = pos.permute(0, 2, 3, 1).reshape(1, h * w, -1)
        return cls_pos, pos.unsqueeze(1)

    def _time_embed(self, t: int) -> torch.Tensor:
        """Time embeddings [1, t, 1, D]."""
        te: torch.Tensor = self.time_embed
        if t != te.shape[1]:
            te = F.interpolate(te.transpose(1, 2), size=t, mode="linear", align_corners=False).transpose(1, 2)
        return te.unsqueeze(2)

    def embed(self, x: torch.Tensor, token_hook: TokenHook | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Clip ``[B, C, T, H, W]`` -> (CLS ``[B, 1, D]``, or ``[B, T, D]`` with ``cls_per_frame``,
        patch tokens ``[B, T, N, D]``) ready for the blocks.

        ``token_hook(tokens [B, T, N, D]) -> tokens`` runs after the patch embedding and before the
        position/time embeddings (SVFormer's Tube TokenMix mixes tokens here).
        """
        B, C, T, H, W = x.shape
        proj = cast(nn.Conv2d, self.patch_embed.proj)
        x = proj(rearrange(x, "b c t h w -> (b t) c h w"))  # [B*T, D, h, w]
        h, w = x.shape[-2:]
        x = rearrange(x, "(b t) d h w -> b t (h w) d", b=B)
        if token_hook is not None:
            x = token_hook(x)
            if x.shape[:2] != (B, T) or x.shape[2:] != (h * w, self.embed_dim):
                raise ValueError(f"token_hook changed the token shape to {tuple(x.shape)}")
        cls_pos, pos = self._pos_embed(h, w)
        cls = self.pos_drop(self.cls_token + cls_pos).expand(B, T if self.cls_per_frame else 1, -1)
        x = self.time_drop(self.pos_drop(x + pos) + self._time_embed(T))
        return cls, x

    def forward_features(
        self, x: torch.Tensor, token_hook: TokenHook | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(CLS ``[B, D]``, patch tokens ``[B, T, N, D]``) after the last block and the final norm
        (per-frame CLS features are averaged over the frames after the norm)."""
        cls, tokens = self.embed(x, token_hook)
        for blk in self.blocks:
            cls, tokens = blk(cls, tokens)
        return self.norm(cls).mean(dim=1), self.norm(tokens)

    def time_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(CLS ``[B, D]``, frame-wise mean of the patch tokens ``[B, T, D]``), one forward."""
        cls, tokens = self.forward_features(x)
        return cls, tokens.mean(dim=2)

    def forward(self, x: torch.Tensor, token_hook: TokenHook | None = None) -> torch.Tensor:
        """Pooled feature (the CLS output) ``[B, embed_dim]``."""
        return self.forward_features(x, token_hook)[0]

    def forward_tokens(self, x: torch.Tensor, token_hook: TokenHook | None = None) -> torch.Tensor:
        """Per-time-step patch tokens ``[B, T, N, embed_dim]`` (after the final norm)."""
        return self.forward_features(x, token_hook)[1]

    def forward_time(self, x: torch.Tensor, token_hook: TokenHook | None = None) -> torch.Tensor:
        """Per-time-step features ``[B, T, embed_dim]``: each frame's patch tokens averaged."""
        return self.forward_tokens(x, token_hook).mean(dim=2)

    # ---------------------------------------------------------------------------------------------
    def _remap(self, state: dict) -> dict:
        """Accept, besides this module's own state dict:

        - reference TimeSformer checkpoints (``{"model_state": ...}``, keys under ``model.``);
        - timm / DeiT image ViTs with the same block layout (``vit_small_patch16_224``, ...): each
          block's ``attn``/``norm1`` weights are copied into ``temporal_attn``/``temporal_norm1`` (as
          the reference does when it loads ImageNet weights) and ``temporal_fc`` / ``time_embed`` are
          set to zero, so the loaded model is the image ViT applied per frame;
        - ``pos_embed`` / ``time_embed`` of another grid / frame count (resized: bicubic / linear).

        Classifier heads (``head.*``) are dropped.
        """
        if isinstance(state.get("model_state"), dict):
            state = state["model_state"]
        if any(k.startswith("model.") for k in state):
            state = {k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")}
        state = {k: v for k, v in state.items() if not k.startswith(("head.", "head_dist.", "fc_norm."))}
        if not any(".temporal_attn." in k for k in state) and any(".attn.qkv." in k for k in state):
            D = self.embed_dim
            for k in list(state):
                if k.startswith("blocks.") and (".attn." in k or ".norm1." in k):
                    new = k.replace(".attn.", ".temporal_attn.").replace(".norm1.", ".temporal_norm1.")
                    state[new] = state[k].clone()
            for i in range(sum(k.startswith("blocks.") and k.endswith(".attn.qkv.weight") for k in state)):
                state.setdefault(f"blocks.{i}.temporal_fc.weight", torch.zeros(D, D))
                state.setdefault(f"blocks.{i}.temporal_fc.bias", torch.zeros(D))
            state.setdefault("time_embed", torch.zeros_like(self.time_embed))
        pos = state.get("pos_embed")
        if pos is not None and pos.shape != self.pos_embed.shape and pos.shape[-1] == self.embed_dim:
            old = int(round((pos.shape[1] - 1) ** 0.5))
            if old * old == pos.shape[1] - 1:
                grid = pos[:, 1:].reshape(1, old, old, -1).permute(0, 3, 1, 2).float()
                grid = F.interpolate(grid, size=(self.grid, self.grid), mode="bicubic", align_corners=False)
                state["pos_embed"] = torch.cat([pos[:, :1], grid.permute(0, 2, 3, 1).reshape(1, -1, pos.shape[-1])], 1)
        te = state.get("time_embed")
        if te is not None and te.shape != self.time_embed.shape and te.shape[-1] == self.embed_dim:
            state["time_embed"] = F.interpolate(
                te.transpose(1, 2).float(), size=self.num_frames, mode="linear", align_corners=False
            ).transpose(1, 2)
        return state


def timesformer_vit_s(**kwargs) -> TimeSformer:
    """TimeSformer ViT-S/16: 384-d, 12 layers, 6 heads (30.5M parameters at 224 px, 8 frames)."""
    return TimeSformer(variant="vit_s", **kwargs)


def timesformer_vit_b(**kwargs) -> TimeSformer:
    """TimeSformer ViT-B/16: 768-d, 12 layers, 12 heads (121.3M parameters at 224 px, 8 frames)."""
    return TimeSformer(variant="vit_b", **kwargs)
