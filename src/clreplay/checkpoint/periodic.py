"""CheckpointEvery: a plugin that saves the whole run every N iterations of an experience."""

from __future__ import annotations

from typing import Any, Callable, Optional

from clreplay._validation import check_positive_int
from clreplay.checkpoint.atomic import PathLike, check_path
from clreplay.checkpoint.files import save_checkpoint
from clreplay.training.plugin import StrategyPlugin
from clreplay.training.strategy import BaseStrategy


class CheckpointEvery(StrategyPlugin):
    """Saves the whole run to ``path`` every ``every`` training iterations of an experience.

    Put it after the plugins whose state it must hold (the strategy calls plugins in
    order; the evaluator, always last, keeps nothing per iteration). A run killed
    mid-experience then resumes at the iteration after the last save, with the same
    batches, draws and weights as a run that never stopped (``clreplay run
    --checkpoint-every N``).
    """

    def __init__(self, path: PathLike, every: int, *, config: Any = None,
                 metadata: Optional[Callable[[BaseStrategy], dict]] = None) -> None:
        self.path = check_path(path)
        self.every = check_positive_int("every", every)
        self.config = config
        self.metadata = metadata  # metadata(strategy): plain data saved with each checkpoint

    def after_training_iteration(self, strategy, **kwargs) -> None:
        if strategy.clock.train_exp_iterations % self.every == 0:
            metadata = None if self.metadata is None else self.metadata(strategy)
            save_checkpoint(strategy, self.path, config=self.config, metadata=metadata)


