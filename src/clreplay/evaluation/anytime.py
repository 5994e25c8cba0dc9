"""Anytime accuracy: the accuracy on what has been seen so far, measured during training.

The online continual-learning literature evaluates a learner at any time, not only at
the end of each experience (Koh et al., "Online Continual Learning on Class Incremental
Blurry Task Configuration with Anytime Inference", ICLR 2022: the area under the
accuracy curve, A_AUC). :class:`AnytimeEvaluation` evaluates the test sets of the
experiences seen so far (the current one included) every ``every`` training
iterations and records each point; ``anytime_accuracy`` is the mean of the points
(A_AUC for points evenly spaced in samples, normalised by their count).
"""

from __future__ import annotations

import time
from typing import List, Optional, Sequence

from clreplay._validation import check_positive_int
from clreplay.data.experience import Experience
from clreplay.training.plugin import StrategyPlugin


class AnytimeEvaluation(StrategyPlugin):
    """Every ``every`` training iterations (counted over the whole run), the mean accuracy
    on the test experiences ``0..i`` of ``test_stream`` while experience ``i`` trains.

    Its points are part of its state, so a resumed run reports the same curve.

    >>> import torch
    >>> from clreplay.benchmarks import split_digits
    >>> from clreplay.training import Naive
    >>> bench, model = split_digits(n_experiences=2), torch.nn.Linear(64, 10)
    >>> anytime = AnytimeEvaluation(bench.test_stream, every=10)
    >>> strategy = Naive(model, torch.optim.SGD(model.parameters(), lr=0.1), train_mb_size=32,
    ...                  plugins=[anytime], seed=0)
    >>> strategy.train(bench.train_stream)
    >>> [(p["iteration"], p["experience"]) for p in anytime.points]
    [(10, 0), (20, 0), (30, 1), (40, 1)]
    >>> anytime.report()["anytime_accuracy"] == sum(p["accuracy"] for p in anytime.points) / 4
    True
    """

    def __init__(self, test_stream: Sequence[Experience], every: int) -> None:
        self.test_stream = list(test_stream)
        for i, experience in enumerate(self.test_stream):
            if not isinstance(experience, Experience):
                raise TypeError(f"test_stream[{i}] must be an Experience, got {type(experience).__name__}")
        self.every = check_positive_int("every", every)
        self.points: List[dict] = []
        self.seconds = 0.0  # spent evaluating (inside the training loop's time)

    def after_training_iteration(self, strategy, **kwargs) -> None:
        clock = strategy.clock
        if clock.train_iterations % self.every:
            return
        current = strategy.experience.current_experience
        seen = [e for e in self.test_stream if e.current_experience <= current]
        started = time.perf_counter()
        accuracies = [a for a in strategy.eval(seen).values() if a == a]  # NaN: an empty test set
        self.seconds += time.perf_counter() - started
        self.points.append({"iteration": clock.train_iterations, "experience": current,
                            "samples": clock.train_samples,
                            "accuracy": sum(accuracies) / len(accuracies) if accuracies else None})

    def report(self) -> dict:
        """``anytime_accuracy`` (None before the first point) and the ``anytime_curve``."""
        values = [p["accuracy"] for p in self.points if p["accuracy"] is not None]
        mean: Optional[float] = sum(values) / len(values) if values else None
        return {"anytime_accuracy": mean, "anytime_every": self.every,
                "anytime_curve": [dict(p) for p in self.points], "anytime_eval_s": self.seconds}

    def state_dict(self) -> dict:
        return {"points": [dict(p) for p in self.points], "seconds": self.seconds}

    def load_state_dict(self, state: dict) -> None:
        if set(state) != {"points", "seconds"}:
            raise KeyError(f"anytime evaluation state must have keys ['points', 'seconds'], got {sorted(state)}")
        self.points = [dict(p) for p in state["points"]]
        self.seconds = float(state["seconds"])
