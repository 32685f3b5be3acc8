"""Multi-scale temporal learning parts (MTL, Wang et al. 2024, arXiv 2404.16416).

* :func:`time_features`: pooled features ``[B, D]`` and per-time-step features ``[B, T', D]`` of
  a clip batch from one forward of any ssvar backbone (3D-CNNs: the last stage averaged over
  space; TimeSformer: the CLS output and each frame's patch tokens averaged); :func:`temporal_slices`
  pools the time steps to a fixed number of slices.
* :class:`CrossScaleCalibration`: attention of a short-term clip's feature over the time steps of
  long-term clips at several temporal scales; the softmax weights emphasise informative segments
  and suppress noisy ones, and the weighted values form the calibrated long-term representation.
* :func:`temporal_alignment_loss`: aligns the short-term representation with the (detached)
  calibrated long-term one.

Long clips come from the data pipeline: a view ``ViewSpec("weak", scales=(2, 4), same_as="weak")``
delivers, per sample, clips at strides ``2s`` and ``4s`` around the short clip's centre, with the
short clip's crop, as ``[S, C, T, H, W]`` (``ssvar.data.sampling``).

The paper's equations are not available: the attention form (single query, multi-head,
learned scale and time embeddings, no residual to the query) and the losses are our design
(``docs/methods/acl_mtl.md``), every choice an argument.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssvar.models.backbones import backbone_can

__all__ = [
    "CrossScaleCalibration",
    "supports_time_features",
    "temporal_alignment_loss",
    "temporal_slices",
    "time_features",
]


def supports_time_features(backbone: nn.Module) -> bool:
    """Whether ``backbone`` declares per-time-step features (``has_time_features``)."""
    return backbone_can(backbone, "time_features")


def time_features(backbone: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
    """``(pooled [B, D], per_time [B, T', D])`` of clips ``x`` ``[B, C, T, H, W]``, one forward:
    the backbone's own ``time_features``. For 3D-CNNs ``pooled`` equals ``backbone(x)`` bit for
    bit and ``per_time`` is the last feature map averaged over space; for TimeSformer ``pooled``
    is the CLS output and ``per_time`` the frame-wise mean of the patch tokens."""
    if not supports_time_features(backbone):
        raise TypeError(f"backbone {type(backbone).__name__} declares no per-time-step features (has_time_features)")
    return backbone.time_features(x)


def temporal_slices(backbone: nn.Module, x: Tensor, slices: int) -> tuple[Tensor, Tensor]:
    """``(pooled [B, D], slices [B, slices, D])`` of clips ``x`` ``[B, C, T, H, W]``, one forward:
    :func:`time_features`, with the per-time-step features average-pooled over time to
    ``slices`` steps (adaptive pooling, so ``T' < slices`` repeats steps, as TCLR's R3D-18).
    These are TCLR's time-slice features of a sparse clip (TimeBalance's global-local loss).
    """
    if slices < 1:
        raise ValueError(f"slices must be >= 1, got {slices}")
    pooled, per_time = time_features(backbone, x)
    return pooled, F.adaptive_avg_pool1d(per_time.transpose(1, 2), slices).transpose(1, 2)


class CrossScaleCalibration(nn.Module):
    """Cross-scale temporal calibration: the short clip attends over all long-clip time steps.

    ``q = W_q LN(h_short)``, ``k = W_k LN(u + e_scale + e_time)``, ``v = W_v LN(u)`` for the
    time-step features ``u`` of the ``S`` long clips (``S * T'`` tokens), multi-head
    ``softmax(q k^T / sqrt(d_head))`` over the tokens (all scales compete, so a noisy segment of
    one scale loses weight to an informative one of another), output ``W_o`` back to the feature
    size: the calibrated long-term representation ``g [B, dim]``. No residual from the query, so
    ``g`` carries long-term content only (a residual would let the alignment loss be met trivially).

    Args:
        dim: feature size of the backbone (short and long features).
        num_scales: number of long-clip scales ``S``.
        max_time_steps: longest ``T'`` per scale (size of the learned time embedding).
        num_heads: attention heads (``dim`` must divide by it).
        attn_dim: inner width of queries and keys (default ``dim``).
        dropout: dropout on the attention weights.
    """

    def __init__(
        self,
        dim: int,
        num_scales: int,
        max_time_steps: int = 16,
        num_heads: int = 1,
        attn_dim: int | None = None,
        dropout: float = 0.0,
    ):
        super().__init__()
        attn_dim = attn_dim or dim
        if num_scales < 1:
            raise ValueError(f"num_scales must be >= 1, got {num_scales}")
        if num_heads < 1 or attn_dim % num_heads:
            raise ValueError(f"attn_dim ({attn_dim}) must be divisible by num_heads ({num_heads})")
        self.dim, self.num_scales, self.max_time_steps = dim, num_scales, max_time_steps
        self.num_heads, self.attn_dim = num_heads, attn_dim
        self.norm_q, self.norm_kv = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.q = nn.Linear(dim, attn_dim)
        self.k = nn.Linear(dim, attn_dim)
        self.v = nn.Linear(dim, attn_dim)
        self.out = nn.Linear(attn_dim, dim)
        self.scale_embed = nn.Parameter(torch.zeros(num_scales, dim))
        self.time_embed = nn.Parameter(torch.zeros(max_time_steps, dim))
        nn.init.trunc_normal_(self.scale_embed, std=0.02)
        nn.init.trunc_normal_(self.time_embed, std=0.02)
        self.dropout = dropout
        self.last_attention: Tensor | None = None  # [B, heads, S * T'] of the last call, detached

    def forward(self, short: Tensor, long_steps: Tensor) -> Tensor:
        """``short [B, dim]``, ``long_steps [B, S, T', dim]`` -> calibrated ``[B, dim]``."""
        if long_steps.dim() != 4 or long_steps.shape[1] != self.num_scales or long_steps.shape[-1] != self.dim:
            raise ValueError(
                f"long_steps must be [B, {self.num_scales}, T', {self.dim}], got {tuple(long_steps.shape)}"
            )
        b, s, t, d = long_steps.shape
        if t > self.max_time_steps:
            raise ValueError(f"{t} time steps per long clip exceed max_time_steps={self.max_time_steps}")
        h, dh = self.num_heads, self.attn_dim // self.num_heads
        u = self.norm_kv(long_steps)
        pos = self.scale_embed[None, :, None, :] + self.time_embed[None, None, :t, :]
        k = self.k(u + pos).reshape(b, s * t, h, dh).transpose(1, 2)  # [B, h, N, dh]
        v = self.v(u).reshape(b, s * t, h, dh).transpose(1, 2)
        q = self.q(self.norm_q(short)).reshape(b, 1, h, dh).transpose(1, 2)  # [B, h, 1, dh]
        attn = (q @ k.transpose(-1, -2)) * dh**-0.5  # [B, h, 1, N]
        attn = attn.softmax(dim=-1)
        self.last_attention = attn.detach()[:, :, 0]
        attn = F.dropout(attn, self.dropout, self.training)
        g = (attn @ v).transpose(1, 2).reshape(b, h * dh)
        return self.out(g)


def temporal_alignment_loss(
    short: Tensor,
    calibrated_long: Tensor,
    kind: Literal["cosine", "mse"] = "cosine",
    weight: Tensor | None = None,
) -> Tensor:
    """Alignment of the short-term representation with the calibrated long-term one, which is
    detached (a stop-gradient target: the short clip learns the long-term semantics; the
    calibration is trained by its own loss). ``"cosine"``: ``1 - cos``; ``"mse"``: squared
    distance of the L2-normalised vectors (twice ``1 - cos``). ``weight [B]`` weights samples;
    the sum is divided by ``B``."""
    if kind not in ("cosine", "mse"):
        raise ValueError(f"kind must be 'cosine' or 'mse', got {kind!r}")
    target = calibrated_long.detach().float()
    cos = F.cosine_similarity(short.float(), target, dim=1)
    per = 1.0 - cos if kind == "cosine" else 2.0 - 2.0 * cos
    if weight is not None:
        per = per * weight
    return per.sum() / max(1, short.shape[0])
