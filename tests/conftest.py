"""Shared helpers: small datasets and a plain object that drives policies by hand."""

from types import SimpleNamespace

import pytest
import torch

from clreplay.benchmarks import Experience
from clreplay.data import ClassificationDataset

# One intra-op thread: the small models here run no faster on more, a busy machine
# makes spinning threads crawl, and results then do not depend on the thread count.
torch.set_num_threads(1)


def make_dataset(labels, *, start=0, features=2, task=0):
    """Samples whose first feature is a unique id ``start + i`` (to check provenance)."""
    labels = torch.as_tensor(labels, dtype=torch.long)
    ids = torch.arange(start, start + len(labels), dtype=torch.float32)
    x = torch.stack([ids] + [ids * 0 + k for k in range(1, features)], dim=1)
    return ClassificationDataset(x, labels, task)


def samples_of(dataset):
    """Every sample of ``dataset``, stacked in its order (through the public reading API)."""
    return dataset.get_batch(torch.arange(len(dataset)))[0]


def by_hand(dataset, index, *, device="cpu", eval_mb_size=64):
    """A stand-in for a strategy: only what a storage policy reads."""
    classes = sorted(set(dataset.targets.tolist()))
    return SimpleNamespace(
        experience=Experience(dataset, index, classes), device=device, eval_mb_size=eval_mb_size
    )


@pytest.fixture
def dataset_factory():
    return make_dataset
