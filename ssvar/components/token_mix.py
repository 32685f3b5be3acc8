"""Tube TokenMix (SVFormer, Xing et al. CVPR 2023): mix two clips at the token level.

For a batch of unlabelled clips, one draw picks a partner for every clip (a random permutation
``perm`` of the batch), a ratio ``lambda ~ Beta(alpha, alpha)`` and a *tube* mask: a random set of
``round(lambda * N)`` of the ``N`` spatial token positions, the same in every frame. A mixed clip
takes its own tokens at the kept positions and its partner's elsewhere:

    tokens_mix[b, t, n] = tokens[b, t, n] if keep[n] else tokens[perm[b], t, n]

Targets (pseudo-labels, confidence masks) are mixed by the same ratio:
``y_mix = r * y + (1 - r) * y[perm]``, where ``r = kept / N`` is the fraction of tokens actually
kept (the released code uses the sampled ``lambda``, which differs from it by less than ``1 / N``;
using ``r`` makes the target weights the token shares exactly).

The mask acts on patch tokens after the patch embedding and before the position/time embeddings
(both clips' tokens then get the same embeddings). Any backbone that exposes that point works:
``ssvar.models.TimeSformer`` takes the draw as ``token_hook``::

    mix = token_mix.draw(batch_size, device)
    logits_mix = head(backbone(clips, token_hook=mix))
    targets_mix = mix.mix(targets)
    loss = token_mix_loss(logits_mix, targets_mix, mix.mix(mask), kind="mse")

Tokens may be ``[B, T, N, D]`` (video, the mask broadcast over frames) or ``[B, N, D]``.
Random draws use torch's global CPU generator (restored on resume with the other RNG states):
no device synchronisation. Under DDP each rank mixes its own batch; there is no shared state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn


@dataclass
class TokenMixDraw:
    """One Tube TokenMix draw for a batch: call it on tokens, then :meth:`mix` the targets.

    The tube mask is drawn at the first call, once the number of token positions is known; the
    same draw gives the same mask on every later call.
    """

    perm: torch.Tensor  # [B] index of each clip's partner
    lam: float  # the sampled ratio
    keep: torch.Tensor | None = field(default=None)  # [N] bool, True: the clip's own token
    ratio: float | None = field(default=None)  # kept fraction of the N positions

    def draw_mask(self, num_tokens: int, device: torch.device | None = None) -> torch.Tensor:
        """The ``[N]`` mask (drawn once)."""
        if self.keep is None:
            k = min(num_tokens, max(0, round(self.lam * num_tokens)))
            keep = torch.zeros(num_tokens, dtype=torch.bool)
            keep[torch.randperm(num_tokens)[:k]] = True
            self.keep, self.ratio = (keep if device is None else keep.to(device)), k / num_tokens
        elif self.keep.numel() != num_tokens:
            raise ValueError(f"this draw has a mask of {self.keep.numel()} tokens, got {num_tokens}")
        return self.keep

    def tube_mask(self, num_frames: int) -> torch.Tensor:
        """The mask as ``[T, N]`` (the same row in every frame), for inspection."""
        if self.keep is None:
            raise RuntimeError("the mask is drawn at the first call on tokens")
        return self.keep.expand(num_frames, -1)

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        """``tokens [B, T, N, D]`` or ``[B, N, D]`` -> mixed tokens of the same shape."""
        if tokens.dim() < 3 or tokens.shape[0] != self.perm.numel():
            raise ValueError(f"expected tokens [B={self.perm.numel()}, (T,) N, D], got {tuple(tokens.shape)}")
        keep = self.draw_mask(tokens.shape[-2], tokens.device).view(-1, 1)  # [N, 1]: broadcast over D
        return torch.where(keep, tokens, tokens[self.perm.to(tokens.device)])

    def mix(self, values: torch.Tensor) -> torch.Tensor:
        """``r * values + (1 - r) * values[perm]`` for per-clip ``values [B, ...]`` (float)."""
        if self.ratio is None:
            raise RuntimeError("mix targets after the tokens: the ratio is fixed when the mask is drawn")
        r = self.ratio
        return r * values + (1.0 - r) * values[self.perm.to(values.device)]


class TubeTokenMix(nn.Module):
    """Draws Tube TokenMix masks and partners.

    Args:
        alpha: ``lambda ~ Beta(alpha, alpha)`` (10 in SVFormer's code: ratios near 1/2).
    """

    def __init__(self, alpha: float = 10.0):
        super().__init__()
        if not alpha > 0:
            raise ValueError(f"alpha must be > 0, got {alpha}")
        self.alpha = float(alpha)
        self._beta = torch.distributions.Beta(torch.tensor(self.alpha), torch.tensor(self.alpha))

    def draw(self, batch_size: int, device: torch.device | str | None = None) -> TokenMixDraw:
        """A draw for a batch of ``batch_size`` clips (partners on ``device``)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        lam = float(self._beta.sample())
        perm = torch.randperm(batch_size).to(device) if device is not None else torch.randperm(batch_size)
        return TokenMixDraw(perm=perm, lam=lam)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


def token_mix_loss(
    logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor, kind: Literal["mse", "ce"] = "mse"
) -> torch.Tensor:
    """SVFormer's TokenMix loss of the mixed clips' ``logits`` ``[B, K]`` against their mixed
    ``targets`` ``[B, K]`` (:meth:`TokenMixDraw.mix`), each clip weighted by its mixed confidence
    mask ``weights`` ``[B]`` and averaged over the batch.

    ``"mse"``: per clip, the mean over classes of ``(logits - targets)^2`` on the raw logits (the
    released code); ``"ce"``: the soft cross-entropy ``-sum_c targets_c log softmax(logits)_c``.
    Computed in float32 at least.
    """
    if logits.dim() != 2 or logits.shape != targets.shape or weights.shape != logits.shape[:1]:
        raise ValueError(
            "expected logits and targets [B, K] and weights [B], got "
            f"{tuple(logits.shape)}, {tuple(targets.shape)}, {tuple(weights.shape)}"
        )
    if kind == "mse":
        per_clip = (logits.float() - targets).pow(2).mean(dim=1)
    elif kind == "ce":
        per_clip = -(targets * logits.float().log_softmax(dim=1)).sum(dim=1)
    else:
        raise ValueError(f"kind must be 'mse' or 'ce', got {kind!r}")
    return (per_clip * weights).mean()
