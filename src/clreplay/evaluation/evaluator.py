"""EvaluationPlugin: evaluates the test stream after every training experience."""

from __future__ import annotations

from typing import List, Optional, Sequence

from clreplay.benchmarks.experience import Experience
from clreplay.training.plugin import StrategyPlugin


class EvaluationPlugin(StrategyPlugin):
    """Fills the accuracy matrix ``R[i][j]``: accuracy on ``test_stream[j]`` after
    training on experience ``i``.

    Pass it as ``evaluator=`` to a strategy: it runs last among the plugins, so the
    replay memory is already updated when it evaluates.
    """

    def __init__(self, test_stream: Optional[Sequence[Experience]] = None) -> None:
        self.test_stream = list(test_stream) if test_stream is not None else None
        self.accuracy_matrix: List[List[float]] = []

    def after_training_exp(self, strategy, **kwargs) -> None:
        if not self.test_stream:
            return
        accuracies = strategy.eval(self.test_stream)
        self.accuracy_matrix.append([accuracies[e.current_experience] for e in self.test_stream])

    def state_dict(self) -> dict:
        return {"accuracy_matrix": [list(row) for row in self.accuracy_matrix]}

    def load_state_dict(self, state: dict) -> None:
        self.accuracy_matrix = [list(row) for row in state["accuracy_matrix"]]
