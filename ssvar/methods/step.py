"""The per-iteration contract between a method and the base: typed batches in, one result out.

A method's :meth:`~ssvar.methods.SemiSupervisedModule.train_step` receives the labelled views
(with labels) and the unlabelled views (never with labels) and returns a :class:`StepOutput`; the
base sums and logs the losses, scores the pseudo-labels against the hidden labels, and logs the
extra values, once, for every method. :class:`Network` declares a method's classifiers, so the
base runs Precise-BN forward passes, builds per-network parameter groups and picks the inference
network without knowing the method.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypedDict

from torch import Tensor, nn

from ssvar.components.pseudo_label import PseudoLabels

__all__ = ["LabeledViews", "Network", "StepOutput", "TrainBatch", "UnlabeledViews"]


class UnlabeledViews(TypedDict, total=False):
    """The views of an unlabelled batch as a method sees them (normalised ``[B, C, T, H, W]``
    clips, or ``[B, S, C, T, H, W]`` for multi-clip views), named by the method's
    :meth:`views`. ``index`` is each video's position in its split. The hidden labels are
    removed before the method sees the batch."""

    weak: Tensor
    strong: Tensor
    index: Tensor
    # views some methods ask for (see each method's ``views``)
    weak_aux: Tensor
    strong_aux: Tensor
    weak_tg: Tensor
    strong_tg: Tensor
    long: Tensor


class LabeledViews(UnlabeledViews, total=False):
    """The views of a labelled batch, plus ``label`` ``[B]``."""

    label: Tensor


class TrainBatch(TypedDict, total=False):
    """What the training loader yields (``unlabeled`` is absent or empty without an unlabelled loader)."""

    labeled: LabeledViews
    unlabeled: UnlabeledViews


@dataclass
class StepOutput:
    """What one training iteration of a method did.

    Attributes:
        losses: the weighted loss terms by name; their sum is the training loss, and each is
            logged as ``train/loss_<name>``.
        logits: the deployed network's logits of the labelled clips (``train/acc1_labeled``).
        pseudo_labels: the pseudo-labels the deployed network learns from (or, for
            consistency methods, the teacher's predictions at a monitoring threshold): scored
            against the hidden labels as ``train/pl_*``, per-class counts and the reliability
            diagram.
        extra_pseudo_labels: other pseudo-label sets by name (e.g. those a primary network hands
            an auxiliary one), logged as ``train/pl_<name>_*``.
        logs: other values to log: ``name`` as ``train/<name>``; a name with a ``/`` as is.
    """

    losses: dict[str, Tensor]
    logits: Tensor
    pseudo_labels: PseudoLabels | None = None
    extra_pseudo_labels: dict[str, PseudoLabels] = field(default_factory=dict)
    logs: dict[str, Tensor | float] = field(default_factory=dict)


@dataclass
class Network:
    """One classifier a method trains, as the base needs to know it.

    Attributes:
        model: backbone + head as one module (:class:`~ssvar.models.Classifier`).
        view: the training view it reads (Precise-BN forwards that view through it).
        lr: its own peak learning rate; when a network of the method sets one, every network
            gets its own parameter groups (:func:`~ssvar.components.co_training.co_training_param_groups`).
        trains_with: other modules in its parameter groups (projection heads).
        precise_bn: re-estimate its BatchNorm statistics in :class:`~ssvar.callbacks.PreciseBN`.
    """

    model: nn.Module
    view: str = "weak"
    lr: float | None = None
    trains_with: tuple[nn.Module, ...] = ()
    precise_bn: bool = True
