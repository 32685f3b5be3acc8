"""TimeBalance, stage 1: self-supervised pretraining of the teachers and the student initialisation
(Dave et al., CVPR 2023, on TCLR, Dave et al. CVIU 2022; docs/methods/timebalance.md).

Runs on the unlabelled pool only (labels are never loaded). Per iteration, for each video:

1. one **sparse clip** (``num_frames`` at ``sparse_stride``) and ``num_dense_clips`` consecutive
   **dense clips** (``dense_stride``) that tile the sparse clip's span, each drawn twice with
   independent augmentations; every clip comes from one decode of the video;
2. the backbone embeds the sparse clips as a global feature (pooled over time and space) plus
   ``num_dense_clips`` time-slice features (the last feature map pooled to that many time steps)
   and each dense clip as one pooled feature; one projection MLP maps all to ``proj_dim``;
3. losses, temperature ``temperature``:

   * ``L_IC`` instance contrastive (temporally invariant): NT-Xent between the two augmentations
     of the sparse clip, plus ``dense_instance_weight`` times the mean over j of NT-Xent between
     dense clip j of augmentation 1 and dense clip j+1 (mod K) of augmentation 2 (clips of
     different times of one video are positives); negatives: the other videos of the global
     batch, gathered across ranks with gradients;
   * ``L_LL`` local-local temporal contrastive (temporally distinctive): within each video,
     dense clip j's two augmentations are positives, the video's other dense clips negatives;
   * ``L_GL`` global-local temporal contrastive (temporally distinctive): the sparse clip's
     time-slice j should match dense clip j among the video's K dense clips, both directions,
     for each augmentation;

4. ``L = w_IC * L_IC + w_LL * L_LL + w_GL * L_GL``.

The loss switches give TimeBalance's three runs (official configs conf_inv_teacher.py,
conf_dist_teacher.py, conf_ssl.py): invariant teacher ``(1, 0, 0)``, distinctive teacher
``(0, 1, 1)``, student initialisation (TCLR) ``(1, 1, 1)``. Stage 2 fine-tunes a teacher with
:class:`~ssvar.methods.Supervised` and ``init_backbone_from=<this run's checkpoint>``.

The module has no classifier: validation and testing do nothing (set ``limit_val_batches: 0``).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from ssvar.components.contrastive import ProjectionHead, global_local_contrastive, local_local_contrastive, nt_xent
from ssvar.components.temporal_calibration import temporal_slices
from ssvar.data.dataset import ViewSpec
from ssvar.data.sampling import tiling_offsets
from ssvar.methods.base import SelfSupervisedPretraining
from ssvar.models.backbones import check_backbone


class TimeBalancePretrain(SelfSupervisedPretraining):
    """Instance and temporal contrastive pretraining (TCLR losses with switches).

    Args:
        backbone: a 3D-CNN (``forward_stages``) or a transformer with ``forward_features``
            (per-time-step tokens); the time slices come from its last feature map.
        num_classes: the data's class count (linked by the CLI; no classifier is built).
        instance_weight: weight of ``L_IC`` (invariant teacher and student: 1; distinctive: 0).
        local_local_weight: weight of ``L_LL`` (distinctive teacher and student: 1).
        global_local_weight: weight of ``L_GL`` (distinctive teacher and student: 1).
        dense_instance_weight: weight of the dense-clip term inside ``L_IC`` (official code: 1).
        temperature: temperature of all three losses (official: 0.1).
        num_frames: frames of the sparse clip (official: 16).
        sparse_stride: stride of the sparse clip (official: 4, a 64-frame window).
        num_dense_clips: dense clips per video, also the number of time slices (official: 4).
        dense_stride: stride of the dense clips (official: 1); their length is
            ``num_frames * sparse_stride / (num_dense_clips * dense_stride)`` so that they tile
            the sparse window (16 frames in the official setting).
        proj_dim, proj_hidden_dim: projection MLP ``Linear-BN-ReLU-Linear-BN`` (official:
            2048 -> 128 -> 128).
        augmentation: ``"strong"`` (crop + flip + RandAugment, the colour and geometric ops
            standing in for the official colour jitter / grayscale / erasing; our choice) or
            ``"weak"`` (crop + flip). Each clip draws its own parameters.
        gather: gather the instance-contrastive negatives across ranks (official: one process
            with DataParallel, so the whole batch; yes).
        **kwargs: :class:`SemiSupervisedModule` arguments (optimiser and schedule).
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        instance_weight: float = 1.0,
        local_local_weight: float = 1.0,
        global_local_weight: float = 1.0,
        dense_instance_weight: float = 1.0,
        temperature: float = 0.1,
        num_frames: int = 16,
        sparse_stride: int = 4,
        num_dense_clips: int = 4,
        dense_stride: int = 1,
        proj_dim: int = 128,
        proj_hidden_dim: int = 128,
        augmentation: Literal["weak", "strong"] = "strong",
        gather: bool = True,
        **kwargs,
    ):
        super().__init__(backbone, num_classes, **kwargs)
        for name, w in (("instance_weight", instance_weight), ("local_local_weight", local_local_weight),
                        ("global_local_weight", global_local_weight), ("dense_instance_weight", dense_instance_weight)):
            if w < 0:
                raise ValueError(f"{name} must be >= 0, got {w}")
        if instance_weight == local_local_weight == global_local_weight == 0:
            raise ValueError("all loss weights are 0: set instance_weight, local_local_weight or global_local_weight")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if num_dense_clips < 2:
            raise ValueError(f"num_dense_clips must be >= 2, got {num_dense_clips}")
        span = num_frames * sparse_stride
        if num_frames % num_dense_clips or span % (num_dense_clips * dense_stride):
            raise ValueError(
                f"num_dense_clips={num_dense_clips} dense clips at dense_stride={dense_stride} cannot tile a "
                f"{num_frames} x {sparse_stride} sparse clip (num_frames must be a multiple of num_dense_clips)"
            )
        if augmentation not in ("weak", "strong"):
            raise ValueError(f"augmentation must be 'weak' or 'strong', got {augmentation!r}")
        check_backbone(backbone, "backbone", "TimeBalancePretrain", needs=("time_features",))
        self.projector = ProjectionHead(
            backbone.feature_dim, proj_hidden_dim, proj_dim, num_layers=2, last_bn_affine=True
        )
        self.instance_weight = instance_weight
        self.local_local_weight = local_local_weight
        self.global_local_weight = global_local_weight
        self.dense_instance_weight = dense_instance_weight
        self.temperature = temperature
        self.num_frames = num_frames
        self.sparse_stride = sparse_stride
        self.num_dense_clips = num_dense_clips
        self.dense_stride = dense_stride
        self.dense_frames = span // (num_dense_clips * dense_stride)
        self.augmentation = augmentation
        self.gather = gather

    # -- data -----------------------------------------------------------------------------
    def _needs_dense(self) -> bool:
        return bool(
            self.local_local_weight or self.global_local_weight or (self.instance_weight and self.dense_instance_weight)
        )

    def views(self) -> dict[str, dict[str, ViewSpec]]:
        # Two identical specs without same_as: the same frames (decoded once), independent draws.
        sparse = ViewSpec(self.augmentation, num_frames=self.num_frames, stride=self.sparse_stride)
        views = {"sparse": sparse, "sparse_aug": sparse}
        if self._needs_dense():
            offsets = tiling_offsets(
                self.num_frames, self.sparse_stride, self.num_dense_clips, self.dense_frames, self.dense_stride
            )
            dense = ViewSpec(self.augmentation, num_frames=self.dense_frames, stride=self.dense_stride,
                             offsets=offsets, independent_clips=True)
            views.update(dense=dense, dense_aug=dense)
        return {"labeled": {}, "unlabeled": views}

    # -- model ----------------------------------------------------------------------------
    def _project(self, feats: torch.Tensor) -> torch.Tensor:
        shape = feats.shape[:-1]
        return self.projector(feats.reshape(-1, feats.shape[-1])).view(*shape, -1)

    # -- the iteration --------------------------------------------------------------------
    def pretext_losses(self, views: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The weighted loss terms of one batch of normalised views (``sparse``, ``sparse_aug``
        ``[B, C, T, H, W]``; ``dense``, ``dense_aug`` ``[B, K, C, T_d, H, W]``)."""
        b, k, t = views["sparse"].shape[0], self.num_dense_clips, self.temperature
        glob, slices = temporal_slices(self.backbone, torch.cat([views["sparse"], views["sparse_aug"]]), k)
        zg = self._project(glob)  # [2B, P]
        losses: dict[str, torch.Tensor] = {}
        zd = None
        if self._needs_dense():
            dense = torch.cat([views["dense"], views["dense_aug"]])  # [2B, K, C, T_d, H, W]
            zd = self._project(self.backbone(dense.flatten(0, 1)).view(2 * b, k, -1))  # [2B, K, P]
        if self.instance_weight:
            ic = nt_xent(zg[:b], zg[b:], t, self.gather)
            if self.dense_instance_weight:
                shifted = torch.roll(torch.arange(k, device=zg.device), -1)  # clip j vs clip j+1 of the other view
                ic = ic + self.dense_instance_weight * torch.stack(
                    [nt_xent(zd[:b, j], zd[b:, shifted[j]], t, self.gather) for j in range(k)]
                ).mean()
            losses["instance"] = self.instance_weight * ic
        if self.local_local_weight:
            losses["local_local"] = self.local_local_weight * local_local_contrastive(zd[:b], zd[b:], t)
        if self.global_local_weight:
            zs = self._project(slices)  # [2B, K, P]
            losses["global_local"] = self.global_local_weight * 0.5 * (
                global_local_contrastive(zs[:b], zd[:b], t) + global_local_contrastive(zs[b:], zd[b:], t)
            )
        return losses
