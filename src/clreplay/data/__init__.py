"""Datasets, experiences and batch sources: what every other layer reads data through."""

from clreplay.data.batching import BatchSource, DatasetBatchSource, MappedBatchSource
from clreplay.data.dataset import ClassificationDataset
from clreplay.data.experience import Benchmark, Experience
from clreplay.data.minibatch import MiniBatch
from clreplay.data.normalization import InputNormalization

__all__ = ["Benchmark", "BatchSource", "ClassificationDataset", "DatasetBatchSource", "Experience",
           "InputNormalization", "MappedBatchSource", "MiniBatch"]
