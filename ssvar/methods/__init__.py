"""One LightningModule per method, all on :class:`SemiSupervisedModule`."""

from ssvar.methods.acl_mtl import ACLMTL
from ssvar.methods.actnetformer import ActNetFormer
from ssvar.methods.base import SemiSupervisedModule
from ssvar.methods.clip_contrastive import ClipContrastive
from ssvar.methods.cmpl import CMPL
from ssvar.methods.fixmatch import FixMatch
from ssvar.methods.mean_teacher import MeanTeacher
from ssvar.methods.supervised import Supervised
from ssvar.methods.svformer import SVFormer
from ssvar.methods.tg_fixmatch import TGFixMatch
from ssvar.methods.timebalance import TimeBalance
from ssvar.methods.timebalance_pretrain import TimeBalancePretrain

__all__ = [
    "SemiSupervisedModule",
    "Supervised",
    "FixMatch",
    "MeanTeacher",
    "TGFixMatch",
    "CMPL",
    "ActNetFormer",
    "SVFormer",
    "ACLMTL",
    "TimeBalancePretrain",
    "TimeBalance",
    "ClipContrastive",
]
