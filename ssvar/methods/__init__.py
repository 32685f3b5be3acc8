"""One LightningModule per method, all on :class:`SemiSupervisedModule`."""

from ssvar.methods.base import SemiSupervisedModule
from ssvar.methods.fixmatch import FixMatch
from ssvar.methods.mean_teacher import MeanTeacher
from ssvar.methods.supervised import Supervised

__all__ = ["SemiSupervisedModule", "Supervised", "FixMatch", "MeanTeacher"]
