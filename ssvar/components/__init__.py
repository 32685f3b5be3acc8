"""Reusable parts of semi-supervised methods; no part imports a method."""

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
from ssvar.components.pseudo_label import PseudoLabeler, PseudoLabels
from ssvar.components.temporal_gradient import split_rgb_tg, temporal_gradient
from ssvar.components.temporal_similarity import TemporalSimilarityReweighter, temporal_similarity_matrix
from ssvar.components.weights import FrozenTeacher, load_weights

__all__ = [
    "EMATeacher",
    "PseudoLabeler",
    "PseudoLabels",
    "CrossArchContrastiveHead",
    "CrossModalContrastive",
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
    "temporal_similarity_matrix",
]


def __getattr__(name: str):
    # PreciseBN is a Lightning callback: import Lightning only when it is asked for, so the
    # parts (and the processes spawned by their DDP tests) load quickly.
    if name in ("PreciseBN", "recompute_bn_stats"):
        from ssvar.components import precise_bn

        return getattr(precise_bn, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
