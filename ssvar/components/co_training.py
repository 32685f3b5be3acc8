"""Co-training two networks: cross pseudo-labels, one optimiser with a parameter group per network,
and one batched forward per network.

The cross-model form of FixMatch (CMPL, Xu et al. CVPR 2022; ActNetFormer, Dass et al. ICPR 2024,
Sec. 3.4.2, Eqs. 4-5; ``docs/methods/cmpl.md``, ``docs/methods/actnetformer.md``): each
network's confident prediction on the weak view of an unlabelled clip is the target of the *other*
network's prediction on the strong view. Targets are computed under ``no_grad`` from detached
logits, so neither network receives a gradient through the targets it hands out (the
stop-gradient of the papers' figures).

Both networks are trained by one optimiser on one summed loss. :func:`co_training_param_groups`
gives each network its own parameter groups (weights with weight decay, norms and biases
without), each with its own learning rate, and refuses a split that leaves a trainable parameter
out or puts one in two networks.

DDP: nothing here communicates. The pseudo-labels of a sample depend only on that sample, so a
DDP run equals a single process on the global batch (the unlabelled loss is a mean over the
local batch and DDP averages the gradients over equal local batches).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ssvar.components.pseudo_label import PseudoLabeler, PseudoLabels

__all__ = ["CrossPseudoLabeler", "CrossPseudoLabels", "co_training_param_groups", "forward_parts"]


@dataclass
class CrossPseudoLabels:
    """Result of :class:`CrossPseudoLabeler`: the two losses and the pseudo-labels behind them."""

    loss_a: Tensor  # network a's strong-view logits against b's pseudo-labels
    loss_b: Tensor  # network b's strong-view logits against a's pseudo-labels
    from_a: PseudoLabels  # made by a from its weak view: the targets of b
    from_b: PseudoLabels  # made by b from its weak view: the targets of a


class CrossPseudoLabeler(nn.Module):
    """Cross pseudo-labelling between two networks a and b.

    ``L_u^a = (1/B_u) sum_i 1[max q_i^b >= tau] CE(a(strong_i), argmax q_i^b)`` with
    ``q^b = softmax(b(weak))`` (stop-gradient), and ``L_u^b`` symmetrically; the normalisation and
    target form come from the :class:`PseudoLabeler` (default: hard targets, divided by the whole
    unlabelled batch, as in FixMatch's reference code).

    Args:
        threshold: confidence threshold tau of both networks' pseudo-labels (ActNetFormer: 0.8).
            Ignored when ``pseudo_labeler`` is given.
        pseudo_labeler: full control (scheduled threshold, soft targets, normalisation); used for
            both directions.
    """

    def __init__(self, threshold: float = 0.8, pseudo_labeler: PseudoLabeler | None = None):
        super().__init__()
        self.pseudo_labeler = pseudo_labeler or PseudoLabeler(threshold=threshold)

    def forward(
        self, weak_a: Tensor, weak_b: Tensor, strong_a: Tensor, strong_b: Tensor, step: int = 0
    ) -> CrossPseudoLabels:
        """Logits ``[B_u, K]`` of both networks on the weak and on the strong views."""
        if not (weak_a.shape == weak_b.shape == strong_a.shape == strong_b.shape):
            raise ValueError(
                "cross pseudo-labels need logits of one shape [B_u, K] from both networks and views, got "
                f"{tuple(weak_a.shape)}, {tuple(weak_b.shape)}, {tuple(strong_a.shape)}, {tuple(strong_b.shape)}"
            )
        from_a = self.pseudo_labeler(weak_a, step)  # detached, no_grad inside
        from_b = self.pseudo_labeler(weak_b, step)
        return CrossPseudoLabels(
            loss_a=self.pseudo_labeler.loss(strong_a, from_b),
            loss_b=self.pseudo_labeler.loss(strong_b, from_a),
            from_a=from_a,
            from_b=from_b,
        )


def co_training_param_groups(
    model: nn.Module,
    networks: Mapping[str, Sequence[nn.Module]],
    lrs: Mapping[str, float],
    weight_decay: float,
) -> list[dict]:
    """Parameter groups of one optimiser over several networks, each with its own learning rate.

    Args:
        model: the module whose trainable parameters must all be covered (the method).
        networks: network name -> the modules it is made of (backbone, classifier head,
            projection head, ...).
        lrs: network name -> peak learning rate of its groups.
        weight_decay: on weights (``ndim > 1``); norms and biases get none.

    Returns:
        Two groups per network, ``{"params", "lr", "weight_decay", "name"}`` with names
        ``<network>`` and ``<network>_no_decay``; empty groups are left out.

    Raises:
        ValueError: a network without a learning rate, a parameter in two networks, or a
            trainable parameter of ``model`` in none (named).
    """
    missing = [n for n in networks if n not in lrs]
    if missing:
        raise ValueError(f"no learning rate for network(s) {missing}; lrs has {sorted(lrs)}")
    owner: dict[int, str] = {}
    groups: list[dict] = []
    for name, modules in networks.items():
        decay: list[nn.Parameter] = []
        no_decay: list[nn.Parameter] = []
        seen: set[int] = set()
        for m in modules:
            for p in m.parameters():
                if not p.requires_grad or id(p) in seen:
                    continue
                if id(p) in owner:
                    raise ValueError(f"a parameter belongs to two networks: {owner[id(p)]!r} and {name!r}")
                owner[id(p)] = name
                seen.add(id(p))
                (no_decay if p.ndim <= 1 else decay).append(p)
        for suffix, params, wd in (("", decay, weight_decay), ("_no_decay", no_decay, 0.0)):
            if params:
                groups.append({"params": params, "lr": float(lrs[name]), "weight_decay": wd, "name": name + suffix})
    left = [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in owner]
    if left:
        raise ValueError(f"trainable parameters in no network: {left[:5]}{' ...' if len(left) > 5 else ''}")
    return groups


def forward_parts(backbone: nn.Module, head: nn.Module, parts: Sequence[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
    """One forward of ``backbone`` and ``head`` over the concatenated clip batches ``parts``
    (BatchNorm sees the whole iteration, as in one FixMatch-style batch); returns the pooled
    features and the logits split back per part."""
    sizes = [p.shape[0] for p in parts]
    feats = backbone(torch.cat(list(parts)) if len(parts) > 1 else parts[0])
    logits = head(feats)
    return list(feats.split(sizes)), list(logits.split(sizes))
