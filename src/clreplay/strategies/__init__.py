"""Rehearsal methods, one file each, built on the replay memory and the strategy's seams.

=========  ==================================  ==========================================
name       Python                              what it changes
=========  ==================================  ==========================================
er         :class:`~clreplay.ReplayPlugin`     nothing: experience replay (the default)
der        :class:`DERPlugin` (``beta=0``)     loss: + alpha * MSE to stored logits
derpp      :class:`DERPlugin` (``beta>0``)     loss: + beta * CE on a second memory draw
xder       :class:`XDERPlugin`                 stored logits updated; margin constraints
er-ace     :class:`ERACEPlugin`                loss: stream CE over current classes only
agem       :class:`AGEMPlugin`                 gradient: projected against the memory's
gdumb      :class:`GDumbPlugin`                training: from scratch, on the memory only
icarl      :class:`ICaRLPlugin`                loss (BCE + distillation), nearest-mean prediction
cls-er     :class:`CLSERPlugin`                loss: + consistency to EMA models; stable model predicts
mir        :class:`MIRPlugin`                  which memory rows: the most interfered by a virtual step
bic        :class:`BiCPlugin`                  loss (distillation); bias correction in prediction
scr        :class:`SCRPlugin`                  loss: supervised contrastive; nearest-mean prediction
onpro      :class:`OnProPlugin`                loss: instance + prototype contrast; mixed-up memory
=========  ==================================  ==========================================

Each is a :class:`~clreplay.training.StrategyPlugin` used with any strategy
(e.g. :class:`~clreplay.training.Naive`); methods that change the loss or the
prediction rule own the strategy's ``criterion`` or ``predict`` seam. The
:mod:`~clreplay.strategies.registry` names them for the command line; the
:mod:`~clreplay.strategies.losses` are the shared terms they are written with.
"""

from clreplay.strategies.agem import AGEMPlugin, project_gradient
from clreplay.strategies.bic import BiCPlugin
from clreplay.strategies.cls_er import CLSERPlugin
from clreplay.strategies.der import DERPlugin
from clreplay.strategies.er_ace import ERACEPlugin, mask_logits
from clreplay.strategies.gdumb import GDumbPlugin, GreedyClassBalancedStoragePolicy, reinitialise
from clreplay.strategies.icarl import (
    ICaRLPlugin,
    class_means,
    distillation_targets,
    nearest_mean_scores,
)
from clreplay.strategies.losses import (
    cross_entropy,
    global_sum,
    hinge_mean,
    logit_mse,
    segment_mean,
)
from clreplay.strategies.method import Method
from clreplay.strategies.mir import MIRPlugin
from clreplay.strategies.onpro import OnProPlugin
from clreplay.strategies.registry import METHODS, get_method, list_methods
from clreplay.strategies.scr import SCRPlugin
from clreplay.strategies.xder import XDERPlugin, transplant

__all__ = [
    "AGEMPlugin",
    "BiCPlugin",
    "CLSERPlugin",
    "DERPlugin",
    "ERACEPlugin",
    "GDumbPlugin",
    "GreedyClassBalancedStoragePolicy",
    "ICaRLPlugin",
    "METHODS",
    "MIRPlugin",
    "Method",
    "OnProPlugin",
    "SCRPlugin",
    "XDERPlugin",
    "class_means",
    "cross_entropy",
    "distillation_targets",
    "get_method",
    "global_sum",
    "hinge_mean",
    "list_methods",
    "logit_mse",
    "mask_logits",
    "nearest_mean_scores",
    "project_gradient",
    "reinitialise",
    "segment_mean",
    "transplant",
]
