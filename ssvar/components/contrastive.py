"""Contrastive losses and projection heads with DDP gathering.

:class:`PairedContrastive` contrasts two networks' projected embeddings of the same clips in
two forms:

* ``loss="info_nce"`` (LTG): symmetric InfoNCE between the projected RGB and temporal
  gradient embeddings of the same clip; the negatives of an anchor are the *other modality's*
  embeddings of the global batch.
* ``loss="nt_xent"`` (ActNetFormer): NT-Xent between the projected 3D-CNN and
  transformer embeddings of the same video; the negatives are the other videos' embeddings from
  *both* architectures.

The gathers are :mod:`ssvar.components.distributed`'s (re-exported here under their old names).

**DDP by construction.** The candidates (keys) are gathered from every rank with
:func:`gather_with_grad`, whose backward sends each rank's slice of the gradient back to its owner
*summed* over ranks (as ``torch.distributed.nn.functional.all_gather`` and Lightning's
``all_gather(..., sync_grads=True)`` do). Each rank then returns the mean loss of its
local anchors. No rescaling is needed, and none is applied, because:

* the mean over ranks of the per-rank losses equals the single-process loss on the global batch
  (equal local batch sizes, which ``all_gather`` requires anyway);
* on rank r the gradient reaching a local embedding is ``d(sum_r' L_r')/dx``: the anchor term
  from its own loss plus, through the summed gather backward, the candidate terms from every
  rank's loss. That is ``world_size`` times the single-process gradient ``dL/dx`` of the mean
  loss, for every local sample. DDP (and Lightning) averages parameter gradients over ranks,
  which divides by ``world_size`` again, so the parameter update equals the single-process one.
  Multiplying the loss by ``world_size`` (a common fix for gathers whose backward keeps only the
  local slice) would double count here; ``tests/components/test_contrastive.py`` checks the
  factor in a 2-process gloo run.

The consequence for anyone reading raw gradients: a per-sample input gradient on one rank is
``world_size`` times the single-process one; only the DDP-averaged parameter gradients match.

Every rank must call the loss (the gather and its backward are collectives), with the same local
batch size. BatchNorm in the projection heads uses each rank's own batch statistics unless the
model is converted to SyncBatchNorm (Lightning ``Trainer(sync_batchnorm=True)``, GPU only), so in
train mode a DDP run equals a single process that applies the head to each rank's chunk
separately and computes the loss on the concatenated embeddings (tested too).
"""

from __future__ import annotations

import warnings
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# The distributed helpers live in ssvar.components.distributed; these names stay importable from
# here (older code and tests import them from this module).
from ssvar.components.distributed import _AllGatherWithGrad, gather_no_grad, gather_with_grad, rank_offset, world_size  # noqa: F401
from ssvar.components.distributed import is_distributed as _distributed  # noqa: F401
from ssvar.components.distributed import rank as _rank  # noqa: F401

__all__ = [
    "CrossArchContrastiveHead",
    "CrossModalContrastive",
    "PairedContrastive",
    "ProjectionHead",
    "gather_no_grad",
    "gather_with_grad",
    "global_local_contrastive",
    "info_nce",
    "local_local_contrastive",
    "nt_xent",
    "rank_offset",
    "world_size",
]


def _normalise(x: Tensor) -> Tensor:
    # Similarities in at least float32: exp(cos / 0.1) overflows and rounds badly in half precision.
    if x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    return F.normalize(x, dim=1)


def _check_pair(a: Tensor, b: Tensor, temperature: float) -> None:
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if a.dim() != 2 or b.dim() != 2:
        raise ValueError(f"expected pooled embeddings [B, D], got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape != b.shape:
        raise ValueError(
            f"the two embeddings must have the same shape [B, D], got {tuple(a.shape)} and {tuple(b.shape)}"
        )


def info_nce(anchors: Tensor, candidates: Tensor, temperature: float, gather: bool = True) -> Tensor:
    """One-directional InfoNCE ``l(a, b)`` of LTG, averaged over the local anchors.

    ``anchors`` and ``candidates`` are ``[B, D]`` (L2-normalised here). The positive of anchor i is
    candidate i of the same rank; its negatives are every other candidate of the global batch
    (``world * B - 1`` of them), gathered with gradients when ``gather`` and distributed.
    """
    _check_pair(anchors, candidates, temperature)
    a, c = _normalise(anchors), _normalise(candidates)
    offset = 0
    if gather and world_size() > 1:
        c = gather_with_grad(c)
        offset = rank_offset(a.shape[0])
    logits = a @ c.t() / temperature
    targets = torch.arange(a.shape[0], device=a.device) + offset
    return F.cross_entropy(logits, targets)


def nt_xent(z1: Tensor, z2: Tensor, temperature: float, gather: bool = True) -> Tensor:
    """Symmetric NT-Xent (SimCLR) over the 2N embeddings of the global batch.

    For each ``z1[i]`` the positive is ``z2[i]`` and the negatives are all other embeddings of both
    views in the global batch (``2 * world * B - 2``), itself excluded; likewise for each ``z2[i]``.
    Averaged over the 2B local anchors.
    """
    _check_pair(z1, z2, temperature)
    a1, a2 = _normalise(z1), _normalise(z2)
    b = a1.shape[0]
    offset, n = 0, b
    c1, c2 = a1, a2
    if gather and world_size() > 1:
        both = gather_with_grad(torch.stack([a1, a2], dim=1))  # one collective for both views
        c1, c2 = both[:, 0], both[:, 1]
        offset, n = rank_offset(b), both.shape[0]
    anchors = torch.cat([a1, a2], dim=0)  # [2B, D]
    candidates = torch.cat([c1, c2], dim=0)  # [2N, D]: all view-1 then all view-2 embeddings
    logits = anchors @ candidates.t() / temperature
    local = torch.arange(b, device=anchors.device) + offset
    self_idx = torch.cat([local, local + n])
    pos_idx = torch.cat([local + n, local])
    rows = torch.arange(2 * b, device=anchors.device)
    # -inf (not a large negative) so the self-similarity adds exactly nothing to the denominator.
    logits = logits.index_put((rows, self_idx), torch.tensor(float("-inf"), dtype=logits.dtype, device=logits.device))
    return F.cross_entropy(logits, pos_idx)


def local_local_contrastive(z1: Tensor, z2: Tensor, temperature: float) -> Tensor:
    """TCLR's local-local temporal contrastive loss (temporally distinctive).

    ``z1``, ``z2``: ``[B, K, D]`` embeddings of a video's K consecutive dense clips under two
    augmentations. Within each video, NT-Xent over its 2K embeddings: the positive of clip j of
    one augmentation is clip j of the other, the negatives are the video's other 2K - 2 clips
    (other times, both augmentations). Negatives never leave the video, so nothing is gathered
    across ranks and the loss is DDP-exact by construction. Mean over the 2BK anchors.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if z1.dim() != 3 or z1.shape != z2.shape or z1.shape[1] < 2:
        raise ValueError(f"expected two [B, K, D] embeddings with K >= 2, got {tuple(z1.shape)} and {tuple(z2.shape)}")
    b, k, _ = z1.shape
    z = torch.cat([z1, z2], dim=1)
    z = F.normalize(z.float() if z.dtype in (torch.float16, torch.bfloat16) else z, dim=-1)  # [B, 2K, D]
    logits = z @ z.transpose(1, 2) / temperature  # [B, 2K, 2K]
    eye = torch.eye(2 * k, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(eye, float("-inf"))  # no self-similarity in the denominator
    pos = (torch.arange(2 * k, device=z.device) + k) % (2 * k)
    return F.cross_entropy(logits.flatten(0, 1), pos.repeat(b))


def global_local_contrastive(local_of_global: Tensor, dense: Tensor, temperature: float) -> Tensor:
    """TCLR's global-local temporal contrastive loss (temporally distinctive).

    ``local_of_global``: ``[B, K, D]``, the K temporal slices of the sparse (global) clip's
    feature map; ``dense``: ``[B, K, D]``, the K dense clips covering the same K time segments.
    Per video, a K x K similarity matrix; cross-entropy with the diagonal as the target, in both
    directions (slice -> dense clips and dense clip -> slices), averaged. Within-video negatives
    only, so no gathering across ranks.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if local_of_global.dim() != 3 or local_of_global.shape != dense.shape or dense.shape[1] < 2:
        raise ValueError(
            "expected two [B, K, D] embeddings with K >= 2, got "
            f"{tuple(local_of_global.shape)} and {tuple(dense.shape)}"
        )
    b, k, _ = dense.shape
    g, d = _normalise(local_of_global.flatten(0, 1)).view(b, k, -1), _normalise(dense.flatten(0, 1)).view(b, k, -1)
    logits = g @ d.transpose(1, 2) / temperature  # [B, K, K]
    target = torch.arange(k, device=dense.device).repeat(b)
    return 0.5 * (
        F.cross_entropy(logits.flatten(0, 1), target) + F.cross_entropy(logits.transpose(1, 2).flatten(0, 1), target)
    )


class ProjectionHead(nn.Module):
    """MLP projection head of LTG: ``Linear(in, hidden, no bias) + BN + ReLU``, then
    ``Linear(hidden, hidden) + BN + ReLU`` for each middle layer, then ``Linear(hidden, out)`` +
    BN (non-affine by default, as LTG; ``last_bn=False`` drops it, SimCLR-style).

    Args:
        in_dim: feature size of the backbone (pooled features ``[B, in_dim]``).
        hidden_dim: width of the hidden layers.
        out_dim: embedding size.
        num_layers: number of linear layers (>= 1); with 1 the head is ``Linear(in, out)`` + last BN.
        last_bn_affine: learnable scale/shift on the last BN (LTG: False).
        last_bn: whether the last layer has a BN at all.
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int = 512,
        out_dim: int = 512,
        num_layers: int = 3,
        last_bn_affine: bool = False,
        last_bn: bool = True,
    ):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        layers: list[nn.Module] = []
        d = in_dim
        for i in range(num_layers - 1):
            # The first Linear has no bias as in LTG's head; the BN after it makes a bias redundant.
            layers += [nn.Linear(d, hidden_dim, bias=i > 0), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True)]
            d = hidden_dim
        layers.append(nn.Linear(d, out_dim, bias=num_layers > 1 or not last_bn))
        if last_bn:
            layers.append(nn.BatchNorm1d(out_dim, affine=last_bn_affine))
        self.net = nn.Sequential(*layers)
        self.in_dim, self.out_dim = in_dim, out_dim

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 2 or x.shape[1] != self.in_dim:
            raise ValueError(f"ProjectionHead expects pooled features [B, {self.in_dim}], got {tuple(x.shape)}")
        return self.net(x)


class PairedContrastive(nn.Module):
    """Contrastive loss between two networks' embeddings of the same clips (two modalities, two
    architectures): each network's pooled features go through its own projection head
    (``head_a``, ``head_b``) to a shared space, where the two embeddings of a clip are the positive
    pair. Negatives come from the global batch (gathered across ranks with gradients when
    ``gather``). Two forms:

    * ``loss="info_nce"`` (LTG's cross-modal loss, Xiao et al. CVPR 2022; ``docs/methods/tg_fixmatch.md``):
      ``0.5 * [l(h_a, h_b) + l(h_b, h_a)]`` with ``l`` the InfoNCE of :func:`info_nce`; an anchor's
      negatives are the *other network's* embeddings of the other clips (``world * B - 1``).
    * ``loss="nt_xent"`` (ActNetFormer's cross-architecture loss, Dass et al. ICPR 2024,
      Sec. 3.4.3): :func:`nt_xent` over the ``2N`` embeddings; an anchor's negatives are the
      other clips' embeddings from *both* networks (``2 * world * B - 2``).

    The heads are :class:`ProjectionHead` ``Linear(d, hidden, no bias) + BN + ReLU`` ...
    ``Linear(hidden, proj_dim)``, with a final non-affine BN when ``last_bn`` (LTG) and without
    one otherwise (SimCLR-v2 style, ActNetFormer: the paper gives neither heads nor temperature,
    see ``docs/methods/actnetformer.md``).

    Args:
        dim_a: pooled feature size of network a (e.g. RGB, or 2048 for a 3D-ResNet-50).
        dim_b: pooled feature size of network b (e.g. temporal gradient, or 384 for ViT-S).
        proj_dim: shared embedding size (LTG: 512; ActNetFormer, our choice: 128).
        hidden_dim: hidden width of both heads (LTG: 512; ActNetFormer, our choice: 512).
        num_layers: linear layers per head (LTG: 3; ActNetFormer, our choice: 2).
        temperature: softmax temperature (LTG: 0.5; ActNetFormer, our choice: 0.1).
        gather: gather negatives across ranks.
        loss: ``"nt_xent"`` or ``"info_nce"`` (see above).
        last_bn: a final non-affine BatchNorm in both heads (LTG: yes).
    """

    def __init__(
        self,
        dim_a: int,
        dim_b: int,
        proj_dim: int = 128,
        hidden_dim: int = 512,
        num_layers: int = 2,
        temperature: float = 0.1,
        gather: bool = True,
        loss: Literal["nt_xent", "info_nce"] = "nt_xent",
        last_bn: bool = False,
    ):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if loss not in ("nt_xent", "info_nce"):
            raise ValueError(f"loss must be 'nt_xent' or 'info_nce', got {loss!r}")
        # Attribute names head_a / head_b are the checkpoint keys of TG-FixMatch and ActNetFormer.
        self.head_a = ProjectionHead(dim_a, hidden_dim, proj_dim, num_layers, last_bn=last_bn)
        self.head_b = ProjectionHead(dim_b, hidden_dim, proj_dim, num_layers, last_bn=last_bn)
        self.temperature = temperature
        self.gather = gather
        self.loss = loss
        # Negatives per anchor in the last forward: plain int, for logging only.
        self.last_num_negatives = 0

    def forward(self, feat_a: Tensor, feat_b: Tensor) -> Tensor:
        z_a, z_b = self.head_a(feat_a), self.head_b(feat_b)
        ranks = world_size() if self.gather else 1
        if self.loss == "info_nce":
            self.last_num_negatives = ranks * z_a.shape[0] - 1
            return 0.5 * (
                info_nce(z_a, z_b, self.temperature, self.gather) + info_nce(z_b, z_a, self.temperature, self.gather)
            )
        self.last_num_negatives = 2 * ranks * z_a.shape[0] - 2
        return nt_xent(z_a, z_b, self.temperature, self.gather)


class CrossModalContrastive(PairedContrastive):
    """Deprecated: ``PairedContrastive(loss="info_nce", last_bn=True)`` with LTG's defaults
    (512-wide, 3 layers, temperature 0.5). Same submodules and state-dict keys."""

    def __init__(
        self,
        dim_a: int,
        dim_b: int,
        hidden_dim: int = 512,
        proj_dim: int = 512,
        num_layers: int = 3,
        temperature: float = 0.5,
        gather: bool = True,
    ):
        warnings.warn(
            "CrossModalContrastive is deprecated: use PairedContrastive(dim_a, dim_b, proj_dim=512, hidden_dim=512, "
            "num_layers=3, temperature=0.5, loss='info_nce', last_bn=True)",
            DeprecationWarning,
            stacklevel=2,
        )
        super().__init__(
            dim_a, dim_b, proj_dim, hidden_dim, num_layers, temperature, gather, loss="info_nce", last_bn=True
        )


class CrossArchContrastiveHead(PairedContrastive):
    """Deprecated: ``PairedContrastive(loss="nt_xent", last_bn=False)`` (ActNetFormer's defaults:
    128-d, 512 hidden, 2 layers, temperature 0.1). Same submodules and state-dict keys."""

    def __init__(
        self,
        dim_a: int,
        dim_b: int,
        proj_dim: int = 128,
        hidden_dim: int = 512,
        num_layers: int = 2,
        temperature: float = 0.1,
        gather: bool = True,
    ):
        warnings.warn(
            "CrossArchContrastiveHead is deprecated: use PairedContrastive(dim_a, dim_b, proj_dim=128, hidden_dim=512, "
            "num_layers=2, temperature=0.1, loss='nt_xent')",
            DeprecationWarning,
            stacklevel=2,
        )
        super().__init__(
            dim_a, dim_b, proj_dim, hidden_dim, num_layers, temperature, gather, loss="nt_xent", last_bn=False
        )
