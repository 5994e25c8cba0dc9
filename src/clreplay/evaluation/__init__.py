"""Evaluation: the accuracy matrix and the metrics derived from it."""

from clreplay.evaluation.evaluator import EvaluationPlugin

__all__ = ["EvaluationPlugin"]
