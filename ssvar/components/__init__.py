"""Reusable parts of semi-supervised methods; no part imports a method."""

from ssvar.components.co_training import CrossPseudoLabeler, CrossPseudoLabels, co_training_param_groups, forward_parts
from ssvar.components.contrastive import (
    CrossArchContrastiveHead,
    CrossModalContrastive,
    PairedContrastive,
    ProjectionHead,
    global_local_contrastive,
    info_nce,
    local_local_contrastive,
    nt_xent,
)
from ssvar.components.distillation import distillation_loss, feature_alignment_loss
from ssvar.components.distributed import (
    all_reduce_sum,
    broadcast_from_rank0,
    gather_no_grad,
    gather_with_grad,
    is_distributed,
    rank,
    rank_offset,
    world_size,
)
from ssvar.components.ema import EMATeacher
from ssvar.components.foreground import foreground_merge, motion_mask, static_background
from ssvar.components.prototype_bank import (
    BankStep,
    GaussianMixture1D,
    PrototypeBank,
    adaptive_contrastive_loss,
    fit_gmm_1d,
)
from ssvar.components.pseudo_label import PseudoLabeler, PseudoLabels
from ssvar.components.temporal_calibration import (
    CrossScaleCalibration,
    supports_time_features,
    temporal_alignment_loss,
    temporal_slices,
    time_features,
)
from ssvar.components.temporal_gradient import split_rgb_tg, temporal_gradient
from ssvar.components.temporal_similarity import TemporalSimilarityReweighter, temporal_similarity_matrix
from ssvar.components.token_mix import TokenMixDraw, TubeTokenMix, token_mix_loss
from ssvar.components.weights import FrozenTeacher, load_weights

__all__ = [
    "EMATeacher",
    "foreground_merge",
    "motion_mask",
    "static_background",
    "PseudoLabeler",
    "PseudoLabels",
    "CrossArchContrastiveHead",
    "CrossModalContrastive",
    "PairedContrastive",
    "CrossPseudoLabeler",
    "CrossPseudoLabels",
    "co_training_param_groups",
    "forward_parts",
    "ProjectionHead",
    "FrozenTeacher",
    "TemporalSimilarityReweighter",
    "all_reduce_sum",
    "broadcast_from_rank0",
    "distillation_loss",
    "feature_alignment_loss",
    "gather_no_grad",
    "gather_with_grad",
    "is_distributed",
    "rank",
    "world_size",
    "global_local_contrastive",
    "info_nce",
    "load_weights",
    "local_local_contrastive",
    "nt_xent",
    "rank_offset",
    "PreciseBN",
    "recompute_bn_stats",
    "split_rgb_tg",
    "temporal_gradient",
    "TokenMixDraw",
    "TubeTokenMix",
    "token_mix_loss",
    "BankStep",
    "GaussianMixture1D",
    "PrototypeBank",
    "adaptive_contrastive_loss",
    "fit_gmm_1d",
    "CrossScaleCalibration",
    "supports_time_features",
    "temporal_alignment_loss",
    "temporal_slices",
    "time_features",
    "temporal_similarity_matrix",
]


def __getattr__(name: str):
    # PreciseBN is a Lightning callback and lives in ssvar.callbacks; the old names stay
    # importable from here, loaded only when asked for, so the parts (and the processes spawned
    # by their DDP tests) do not import Lightning.
    if name in ("PreciseBN", "recompute_bn_stats"):
        from ssvar import callbacks

        return getattr(callbacks, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
