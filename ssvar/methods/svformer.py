"""SVFormer (Xing et al., CVPR 2023; docs/methods/svformer.md): an EMA-teacher TimeSformer with
Tube TokenMix and temporal warping.

Per iteration (as the released ``train_net_emamix.py``):

1. supervised cross-entropy on the labelled clips (the base class);
2. the EMA teacher (eval mode, no gradient) predicts on the weak view of each unlabelled clip:
   ``p = softmax``, confidence mask ``m = 1[max p >= delta]``, hard label ``y_hat = argmax p``;
3. the strong view is temporally warped (by the data pipeline, :class:`TemporalWarp`) and loses
   whole colour channels (channel dropout, ``input_dropout``); the student predicts on it:
   ``L_un = mean_i m_i CE(s_i, y_hat_i)``;
4. Tube TokenMix: the strong clips are mixed with a permutation of themselves at the token
   level (a spatial mask, the same in every frame, keeping a ratio ``r`` with
   ``lambda ~ Beta(alpha, alpha)``); targets ``y_i`` = one-hot(``y_hat_i``) if confident else
   ``p_i``, ``y_mix = r y + (1 - r) y_perm``, ``m_mix = r m + (1 - r) m_perm``;
   ``L_mix = mean_i m_mix_i mean_c (f_mix_ic - y_mix_ic)^2`` (squared error on raw logits, as
   released; ``mix_loss="ce"`` for a soft cross-entropy);
5. ``L = L_s + gamma1 L_un + gamma2 L_mix``; SGD step; then the EMA update of the teacher.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ssvar.components.ema import EMATeacher
from ssvar.components.pseudo_label import PseudoLabeler, PseudoLabels
from ssvar.components.schedules import WeightSchedule
from ssvar.components.token_mix import TokenMixDraw, TubeTokenMix, token_mix_loss
from ssvar.data.dataset import ViewSpec
from ssvar.data.transforms import TemporalWarp
from ssvar.methods.base import SemiSupervisedModule
from ssvar.methods.step import LabeledViews, StepOutput, UnlabeledViews
from ssvar.models.backbones import check_backbone


class SVFormer(SemiSupervisedModule):
    """SVFormer: EMA teacher on the weak view, student on the warped strong view, Tube TokenMix.

    Defaults follow the released code (its missing config keys take the values an earlier commit
    hard-codes; docs/methods/svformer.md).

    Args:
        backbone: a token backbone whose ``forward`` takes ``token_hook`` (``ssvar.models.TimeSformer``);
            SVFormer initialises it from an ImageNet ViT (``checkpoint``: a local timm state dict).
        num_classes: see :class:`SemiSupervisedModule`.
        threshold: confidence threshold delta of the teacher's pseudo-labels (0.3).
        gamma1: weight of the pseudo-label loss ``L_un`` (2).
        gamma2: weight of the TokenMix loss ``L_mix`` (2).
        mix_alpha: the mixing ratio is drawn from ``Beta(mix_alpha, mix_alpha)`` (10).
        ema_decay: decay of the EMA teacher (0.99, constant); ignored when ``teacher`` is given.
        teacher: full control of the EMA teacher (a decay schedule, ...).
        strong_window: ``"different"`` (released code): the strong view is decoded from its own
            random temporal window with its own crop and flip; ``"same"``: the strong view is
            the weak view's frames and crop (FixMatch's pairing), then warped.
        warp_anchors, warp_probs: temporal warping of the strong view (anchor counts and their
            probabilities, see :class:`TemporalWarp`; released: 0, 2 or 4 anchors, equal odds);
            ``warp_anchors=[0]`` switches warping off.
        strong_randaugment: add RandAugment to the strong view. False by default: the released
            code has it but it never runs (docs/methods/svformer.md).
        input_dropout: channel dropout on the strong clip before the student (``dropout2d`` on
            the ``[B, C, T, H, W]`` input in the released code: a whole colour channel of a clip
            is zeroed), 0.2.
        mix_loss: ``"mse"`` on logits against the mixed targets (released) or ``"ce"``: soft
            cross-entropy ``-sum_c y_mix_c log softmax(f_mix)_c``.
        unsup_warmup_steps: iterations before ``L_un`` and ``L_mix`` switch on (0 as released;
            a float in (0, 1) is a fraction of the total).
        **kwargs: :class:`SemiSupervisedModule` arguments (optimiser, schedule, ...). The released
            recipe is SGD lr 0.005, momentum 0.9, weight decay 1e-4, head dropout 0.5.

    Deviation (our choice): the released code mixes the channel-dropped strong clips with the
    permuted strong clips *without* channel dropout; here both come from the one channel-dropped
    batch (one patch embedding, one forward), so the partner tokens are dropped too.
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        threshold: float = 0.3,
        gamma1: float = 2.0,
        gamma2: float = 2.0,
        mix_alpha: float = 10.0,
        ema_decay: float = 0.99,
        teacher: EMATeacher | None = None,
        strong_window: Literal["different", "same"] = "different",
        warp_anchors: tuple[int, ...] = (0, 2, 4),
        warp_probs: tuple[float, ...] | None = None,
        strong_randaugment: bool = False,
        input_dropout: float = 0.2,
        mix_loss: Literal["mse", "ce"] = "mse",
        unsup_warmup_steps: float = 0,
        **kwargs,
    ):
        super().__init__(backbone, num_classes, **kwargs)
        check_backbone(backbone, "backbone", "SVFormer", needs=("token_hook",))  # Tube TokenMix edits patch tokens
        if strong_window not in ("different", "same"):
            raise ValueError(f"strong_window must be 'different' or 'same', got {strong_window!r}")
        if mix_loss not in ("mse", "ce"):
            raise ValueError(f"mix_loss must be 'mse' or 'ce', got {mix_loss!r}")
        if not 0.0 <= input_dropout < 1.0:
            raise ValueError(f"input_dropout must be in [0, 1), got {input_dropout}")
        try:
            self.temporal_warp = TemporalWarp(
                tuple(warp_anchors), tuple(warp_probs) if warp_probs is not None else None
            )
        except ValueError as e:
            raise ValueError(f"warp_anchors / warp_probs: {e}") from None
        # Confident clips get one-hot targets, the others their soft teacher distribution.
        self.pseudo_labeler = PseudoLabeler(threshold=threshold, targets="hard", normalize="batch")
        self.teacher = (teacher or EMATeacher(decay=ema_decay)).attach(self.classifier())
        if not mix_alpha > 0:
            raise ValueError(f"mix_alpha must be > 0, got {mix_alpha}")
        self.token_mix = TubeTokenMix(alpha=mix_alpha)
        self.gamma1, self.gamma2 = gamma1, gamma2
        self.strong_window = strong_window
        self.strong_randaugment = strong_randaugment
        self.input_dropout = input_dropout
        self.mix_loss = mix_loss
        self.unsup_schedule = WeightSchedule(start=unsup_warmup_steps)

    def views(self) -> dict[str, dict[str, ViewSpec]]:
        warp = None if set(self.temporal_warp.anchors) == {0} else self.temporal_warp
        aug = "strong" if self.strong_randaugment else "weak"  # "weak" = crop + flip only
        if self.strong_window == "same":
            strong = ViewSpec(aug, same_as="weak", temporal_warp=warp)
        else:
            strong = ViewSpec(aug, window="own", temporal_warp=warp)
        return {"labeled": {"weak": ViewSpec("weak")}, "unlabeled": {"weak": ViewSpec("weak"), "strong": strong}}

    def mixed_targets(self, pl: PseudoLabels, mix: TokenMixDraw) -> tuple[torch.Tensor, torch.Tensor]:
        """Targets of the mixed clips ``[B, K]`` and their weights ``[B]``: each clip's target
        (one-hot if confident, else the teacher's distribution) and confidence mask, mixed with
        its partner's by the share of tokens it kept."""
        onehot = F.one_hot(pl.targets, self.num_classes).to(pl.probs.dtype)
        targets = torch.where(pl.mask[:, None] > 0, onehot, pl.probs)
        return mix.mix(targets), mix.mix(pl.mask)

    def teachers(self) -> list[tuple[EMATeacher, nn.Module]]:
        return super().teachers() + [(self.teacher, self.classifier())]

    def train_step(self, labeled: LabeledViews, unlabeled: UnlabeledViews) -> StepOutput:
        # 1. supervised cross-entropy on the labelled clips
        out = super().train_step(labeled, unlabeled)
        if not unlabeled:
            return out
        step = self.global_step
        # 2. Teacher on the weak view.
        pl = out.pseudo_labels = self.pseudo_labeler(self.teacher(unlabeled["weak"]), step)
        # 3. Student on the (already warped) strong view after channel dropout.
        strong = unlabeled["strong"]
        if self.input_dropout > 0:
            strong = F.dropout3d(strong, self.input_dropout, training=self.training)
        loss_un = self.pseudo_labeler.loss(self(strong), pl)
        # 4. Tube TokenMix of the strong clips with a permutation of themselves.
        mix = self.token_mix.draw(strong.shape[0], strong.device)
        logits_mix = self.head(self.backbone(strong, token_hook=mix))
        y_mix, m_mix = self.mixed_targets(pl, mix)
        loss_mix = token_mix_loss(logits_mix, y_mix, m_mix, self.mix_loss)
        # 5. L = L_s + gamma1 L_un + gamma2 L_mix (unlabelled terms off during the warm-up)
        on = self.unsup_schedule(step, self.total_steps())
        out.losses.update(unsupervised=on * self.gamma1 * loss_un, mix=on * self.gamma2 * loss_mix)
        out.logs["mix_ratio"] = float(mix.ratio if mix.ratio is not None else mix.lam)
        return out
