"""Datasets and batch sources."""

from clreplay.data.batching import BatchSource, DatasetBatchSource
from clreplay.data.dataset import ClassificationDataset

__all__ = ["BatchSource", "ClassificationDataset", "DatasetBatchSource"]
