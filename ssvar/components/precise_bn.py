"""Old home of :class:`~ssvar.callbacks.PreciseBN` and :func:`~ssvar.callbacks.recompute_bn_stats`.

Precise-BN is a Lightning callback, so it lives in :mod:`ssvar.callbacks`; these names stay
importable from here (configs with ``class_path: ssvar.components.precise_bn.PreciseBN`` or
``ssvar.components.PreciseBN`` keep working).
"""

from ssvar.callbacks import PreciseBN, recompute_bn_stats

__all__ = ["PreciseBN", "recompute_bn_stats"]
