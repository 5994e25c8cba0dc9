"""Datasets and batch sources."""

from clreplay.data.batching import BatchSource, DatasetBatchSource, MappedBatchSource
from clreplay.data.dataset import ClassificationDataset
from clreplay.data.minibatch import MiniBatch

__all__ = ["BatchSource", "ClassificationDataset", "DatasetBatchSource", "MappedBatchSource", "MiniBatch"]
