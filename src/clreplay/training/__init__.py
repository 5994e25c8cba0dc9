"""The training loop and its plugin hooks."""

from clreplay.training.augmentation import AugmentationPlugin
from clreplay.training.context import RunContext
from clreplay.training.eval_results import EvalResults
from clreplay.training.plugin import HOOKS, StrategyPlugin
from clreplay.training.strategy import BaseStrategy, Clock, Naive

__all__ = ["HOOKS", "AugmentationPlugin", "BaseStrategy", "Clock", "EvalResults", "Naive", "RunContext",
           "StrategyPlugin"]
