"""Supervised: the labelled-only baseline.

Per iteration: one weakly augmented clip per labelled video, cross-entropy on its label.
The unlabelled videos are not loaded. Every semi-supervised method is compared with it at
the same number of iterations.
"""

from __future__ import annotations

from ssvar.data.dataset import ViewSpec
from ssvar.methods.base import SemiSupervisedModule


class Supervised(SemiSupervisedModule):
    """Cross-entropy on labelled clips only (see :class:`SemiSupervisedModule` for arguments)."""

    def views(self) -> dict[str, dict[str, ViewSpec]]:
        return {"labeled": {"weak": ViewSpec("weak")}, "unlabeled": {}}
