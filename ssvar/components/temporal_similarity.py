"""Temporal-similarity reweighting of two teachers (TimeBalance, Dave et al. CVPR 2023).

For each video, K clips spread uniformly over its length are embedded by each teacher; each
teacher gives a K x K *temporal similarity matrix* (cosine similarity of one timestamp's feature
to another's); the matrices of the teachers are averaged (the paper: "from the average matrix
C_i a temporal similarity score s_i is computed"). A video whose content stays alike over time
gets a high score and more weight on the temporally-invariant teacher; a video that changes gets
a low one and more weight on the temporally-distinctive teacher:
``P_T = s * P_inv + (1 - s) * P_dist``.

The paper's exact statistic and normalisation could not be retrieved (its figure on teacher
reweighting says only that "from the average matrix C_i a temporal similarity score s_i is
computed") and the official repository ships neither the code nor the scores (a pickle keyed by
file name); see ``docs/methods/timebalance.md``.
Our choice (documented, both arguments):

* ``statistic="offdiag_mean"`` (default): the mean of the off-diagonal entries of the averaged
  matrix, i.e. the average cosine similarity between two different timestamps (the diagonal is
  1 for every video and carries no information). ``"adjacent_mean"``: only the K - 1
  entries next to the diagonal (similarity of consecutive clips).
* ``normalization="minmax"`` (default): min-max over all videos of all sets, so scores span
  [0, 1] and the most static video of the training set trusts the invariant teacher fully.
  ``"rank"``: the video's rank over all videos scaled to [0, 1] (uniform scores, robust to
  outliers). ``"none"``: the raw statistic clamped to [0, 1] (cosines of post-ReLU pooled CNN
  features are non-negative).

A video that cannot be decoded gets no score of its own: it gets the mean of the normalised
scores of every scored video (all sets), a neutral middle between the teachers, and is counted
(:attr:`TemporalSimilarityReweighter.unscored`) and logged. Our choice: a corrupt file must not
kill a run, and 0.5 would be an arbitrary point of a min-max or rank scale.

The scores are computed by :meth:`TemporalSimilarityReweighter.compute` once, before training,
and cached in persistent buffers indexed by each dataset's sample index (``score_labeled``,
``score_unlabeled``): a checkpoint resumes without recomputing, and under DDP each rank embeds
its shard and the scores are summed across ranks, so every rank holds the same scores.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssvar.components.distributed import all_reduce_sum

__all__ = ["TemporalSimilarityReweighter", "temporal_similarity_matrix"]

log = logging.getLogger(__name__)


def temporal_similarity_matrix(features: Tensor) -> Tensor:
    """``[N, K, D]`` features of K timestamps -> ``[N, K, K]`` cosine similarities."""
    if features.dim() != 3:
        raise ValueError(f"expected per-timestamp features [N, K, D], got {tuple(features.shape)}")
    f = F.normalize(features.float(), dim=-1)
    return f @ f.transpose(1, 2)


class TemporalSimilarityReweighter(nn.Module):
    """Per-video weight ``s`` of the temporally-invariant teacher, from temporal self-similarity.

    Args:
        num_clips: K, clips per video (uniform centres, one centre crop) embedded by each teacher
            (our choice: 8; the paper says "a set of clips").
        statistic: ``"offdiag_mean"`` or ``"adjacent_mean"`` (module docstring).
        normalization: ``"minmax"``, ``"rank"`` or ``"none"`` (module docstring).
        sets: names of the index spaces scored (one buffer ``score_<name>`` each).
    """

    def __init__(
        self,
        num_clips: int = 8,
        statistic: Literal["offdiag_mean", "adjacent_mean"] = "offdiag_mean",
        normalization: Literal["minmax", "rank", "none"] = "minmax",
        sets: Sequence[str] = ("labeled", "unlabeled"),
    ):
        super().__init__()
        if num_clips < 2:
            raise ValueError(f"num_clips must be >= 2 (a similarity between timestamps), got {num_clips}")
        if statistic not in ("offdiag_mean", "adjacent_mean"):
            raise ValueError(f"statistic must be 'offdiag_mean' or 'adjacent_mean', got {statistic!r}")
        if normalization not in ("minmax", "rank", "none"):
            raise ValueError(f"normalization must be 'minmax', 'rank' or 'none', got {normalization!r}")
        if not sets:
            raise ValueError("sets must name at least one index space")
        self.num_clips = num_clips
        self.statistic = statistic
        self.normalization = normalization
        self.sets = tuple(sets)
        for name in self.sets:
            self.register_buffer(f"score_{name}", torch.zeros(0))
        self.unscored: dict[str, int] = {}  # videos per set that got the fallback score

    # -- the score --------------------------------------------------------------------------
    def raw_score(self, features: Sequence[Tensor]) -> Tensor:
        """``[N]`` statistic of the averaged temporal similarity matrix of ``features`` (one
        ``[N, K, D]`` tensor per teacher)."""
        if not features:
            raise ValueError("raw_score needs the features of at least one teacher")
        c = torch.stack([temporal_similarity_matrix(f) for f in features]).mean(0)  # [N, K, K]
        k = c.shape[-1]
        if k < 2:
            raise ValueError(f"need at least 2 timestamps per video, got {k}")
        if self.statistic == "adjacent_mean":
            return torch.diagonal(c, offset=1, dim1=1, dim2=2).mean(1)
        off = ~torch.eye(k, dtype=torch.bool, device=c.device)
        return c[:, off].mean(1)

    def normalize(self, raw: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Normalise the raw scores of all sets jointly (one scale for every video)."""
        allv = torch.cat([raw[n] for n in raw])
        if self.normalization == "none":
            return {n: v.clamp(0, 1) for n, v in raw.items()}
        if self.normalization == "minmax":
            lo, hi = allv.min(), allv.max()
            scale = (hi - lo).clamp_min(1e-12)
            return {n: ((v - lo) / scale).clamp(0, 1) for n, v in raw.items()}
        ranks = torch.empty_like(allv)
        ranks[allv.argsort()] = torch.arange(len(allv), dtype=allv.dtype, device=allv.device)
        ranks = ranks / max(1, len(allv) - 1)
        out, i = {}, 0
        for n, v in raw.items():
            out[n] = ranks[i : i + len(v)]
            i += len(v)
        return out

    # -- cache ------------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        """True once every set has its scores (computed, or restored from a checkpoint)."""
        return all(getattr(self, f"score_{n}").numel() > 0 for n in self.sets)

    def set_scores(self, scores: Mapping[str, Tensor]) -> None:
        for n, v in scores.items():
            if n not in self.sets:
                raise KeyError(f"unknown score set {n!r}; this reweighter holds {self.sets}")
            buf = getattr(self, f"score_{n}")
            setattr(self, f"score_{n}", v.detach().to(device=buf.device, dtype=torch.float32).clone())

    def forward(self, name: str, index: Tensor) -> Tensor:
        """``s`` of the samples ``index`` of set ``name`` (``[B]``, on the buffer's device)."""
        buf = getattr(self, f"score_{name}")
        if buf.numel() == 0:
            raise RuntimeError(f"temporal similarity scores of {name!r} are not computed yet (call compute)")
        return buf[index.to(buf.device)]

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ):
        # Buffers start empty; take the stored size so a checkpoint restores the cache exactly.
        for n in self.sets:
            key = prefix + f"score_{n}"
            if key in state_dict:
                setattr(
                    self, f"score_{n}", torch.zeros_like(state_dict[key], device=getattr(self, f"score_{n}").device)
                )
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    @torch.no_grad()
    def compute(
        self,
        teachers: Sequence[Callable[[Tensor], Tensor]],
        loaders: Mapping[str, tuple[Iterable[dict], int]],
        prepare: Callable[[Tensor], Tensor] = lambda x: x,
    ) -> dict[str, Tensor]:
        """Embed every video's K clips with every teacher and cache the normalised scores.

        Args:
            teachers: feature extractors ``[B, C, T, H, W] -> [B, D]`` (in eval mode).
            loaders: set name -> (loader, dataset size); batches hold ``video``
                ``[B, K, C, T, H, W]`` and ``index``, and may hold ``decode_failures``: a row
                with failures stands in for an unreadable video and is not used (its own video
                is scored at its own index). Under DDP each rank passes its shard (every index
                at most once over all ranks). Indices left without a score get the fallback
                (module docstring).
            prepare: moves a uint8 batch to the device and normalises it.
        Returns the scores by set (also stored in the buffers).
        """
        raw: dict[str, Tensor] = {}
        scored: dict[str, Tensor] = {}
        dev = getattr(self, f"score_{self.sets[0]}").device
        for name in self.sets:
            if name not in loaders:
                raise KeyError(f"no loader for score set {name!r}")
            loader, size = loaders[name]
            vals = torch.zeros(size, dtype=torch.float64, device=dev)
            seen = torch.zeros(size, dtype=torch.float64, device=dev)
            for batch in loader:
                video = batch["video"]
                if video.dim() != 6 or video.shape[1] != self.num_clips:
                    raise ValueError(f"expected [B, {self.num_clips}, C, T, H, W] clips, got {tuple(video.shape)}")
                idx = batch["index"]
                failures = batch.get("decode_failures")
                if isinstance(failures, Tensor) and bool((failures > 0).any()):
                    keep = failures == 0  # substitutes for unreadable videos: not this index's video
                    video, idx = video[keep], idx[keep]
                    if len(idx) == 0:
                        continue
                b, k = video.shape[:2]
                x = prepare(video.flatten(0, 1))
                feats = [t(x).view(b, k, -1) for t in teachers]
                idx = idx.to(dev)
                vals[idx] = self.raw_score(feats).to(device=dev, dtype=torch.float64)
                seen[idx] += 1
            all_reduce_sum(vals)  # each rank scored its shard: every rank gets all scores
            all_reduce_sum(seen)
            if bool((seen > 1).any()):
                raise RuntimeError(
                    f"score set {name!r}: {int((seen > 1).sum())} of {size} videos were scored more than once"
                )
            raw[name] = vals.float()
            scored[name] = seen == 1
        if not any(bool(m.any()) for m in scored.values()):
            raise RuntimeError("no video could be scored: every video of every set is unreadable")
        # Normalise over the scored videos only, then give the others the pool's mean.
        scores = {n: torch.zeros_like(v) for n, v in raw.items()}
        normed = self.normalize({n: raw[n][scored[n]] for n in raw})
        for n in raw:
            scores[n][scored[n]] = normed[n]
        mean = torch.cat(list(normed.values())).mean()
        self.unscored = {}
        for n in raw:
            missing = int((~scored[n]).sum())
            self.unscored[n] = missing
            if missing:
                scores[n][~scored[n]] = mean
                log.warning(
                    "temporal similarity: %d of %d %s videos could not be decoded; they get the mean score %.3f",
                    missing,
                    len(raw[n]),
                    n,
                    float(mean),
                )
        self.set_scores(scores)
        return scores
