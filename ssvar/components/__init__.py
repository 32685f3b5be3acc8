"""Reusable parts of semi-supervised methods; no part imports a method."""

from ssvar.components.co_training import CrossPseudoLabeler, CrossPseudoLabels, co_training_param_groups, forward_parts
from ssvar.components.contrastive import (
    CrossArchContrastiveHead,
    CrossModalContrastive,
    ProjectionHead,
    gather_no_grad,
    gather_with_grad,
    global_local_contrastive,
    info_nce,
    local_local_contrastive,
    nt_xent,
    rank_offset,
)
from ssvar.components.ema import EMATeacher
from ssvar.components.prototype_bank import GaussianMixture1D, PrototypeBank, adaptive_contrastive_loss, fit_gmm_1d
from ssvar.components.pseudo_label import PseudoLabeler, PseudoLabels
from ssvar.components.temporal_calibration import (
    CrossScaleCalibration,
    supports_time_features,
    temporal_alignment_loss,
    time_features,
)
from ssvar.components.temporal_gradient import split_rgb_tg, temporal_gradient
from ssvar.components.token_mix import TokenMixDraw, TubeTokenMix
from ssvar.components.temporal_similarity import TemporalSimilarityReweighter, temporal_similarity_matrix
from ssvar.components.weights import FrozenTeacher, load_weights

__all__ = [
    "EMATeacher",
    "PseudoLabeler",
    "PseudoLabels",
    "CrossArchContrastiveHead",
    "CrossModalContrastive",
    "CrossPseudoLabeler",
    "CrossPseudoLabels",
    "co_training_param_groups",
    "forward_parts",
    "ProjectionHead",
    "FrozenTeacher",
    "TemporalSimilarityReweighter",
    "gather_no_grad",
    "gather_with_grad",
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
    "GaussianMixture1D",
    "PrototypeBank",
    "adaptive_contrastive_loss",
    "fit_gmm_1d",
    "CrossScaleCalibration",
    "supports_time_features",
    "temporal_alignment_loss",
    "time_features",
    "temporal_similarity_matrix",
]


def __getattr__(name: str):
    # PreciseBN is a Lightning callback: import Lightning only when it is asked for, so the
    # parts (and the processes spawned by their DDP tests) load quickly.
    if name in ("PreciseBN", "recompute_bn_stats"):
        from ssvar.components import precise_bn

        return getattr(precise_bn, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
