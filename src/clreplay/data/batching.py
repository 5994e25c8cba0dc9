"""Batch sources: what the training loop iterates over in one epoch.

A batch source yields :class:`~clreplay.data.MiniBatch` records (or ``(x, y, t)``
tensors, read as one ``"stream"`` segment). The strategy builds a
:class:`DatasetBatchSource` over the current experience; a plugin may replace it
for the experience through ``strategy.batch_source`` (that is how replay mixes
memory into mini-batches), or extend it: a source whose ``wraps`` is the current
one appends segments of its own to each of its batches.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Iterator

import torch

from clreplay._validation import check_positive_int
from clreplay.data.dataset import Batch, ClassificationDataset
from clreplay.data.minibatch import STREAM


class BatchSource(ABC):
    """One epoch of mini-batches per iteration; ``len()`` is the number of batches."""

    @abstractmethod
    def __iter__(self) -> Iterator[Batch]: ...

    @abstractmethod
    def __len__(self) -> int: ...

    def segment_names(self) -> tuple:
        """The names of the segments its batches hold, in order (one ``"stream"`` by default)."""
        return (STREAM,)

    def state_dict(self) -> dict:
        """What the source carries from one epoch to the next (none by default); the
        strategy saves it at the start of each epoch, for a checkpoint inside it."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned."""

    def iterate_from(self, start: int) -> Iterator:
        """The epoch's batches from the ``start``-th on, as if the first ``start`` had been
        yielded and trained on (how a run resumes mid-epoch). By default they are read
        and dropped: right for sources whose batches draw nothing per batch; a source
        with per-batch side effects overrides it."""
        batches = iter(self)
        for _ in range(start):
            next(batches, None)
        return batches


class MappedBatchSource(BatchSource):
    """Every batch of the source it wraps (``wraps``), passed through :meth:`map`.

    Its length and state are the wrapped source's, and :meth:`iterate_from` lets the
    wrapped source skip the first batches its own way (a source that draws per batch
    does not draw for them again) before mapping the rest. Subclasses define ``map``
    (e.g. a rank's slice of a global batch, an augmented batch).
    """

    def __init__(self, wraps: BatchSource) -> None:
        if not isinstance(wraps, BatchSource):
            raise TypeError(f"wraps must be a BatchSource, got {type(wraps).__name__}")
        self.wraps = wraps

    @abstractmethod
    def map(self, batch) -> Batch:
        """The batch yielded for ``batch``, a batch of the wrapped source."""

    def __len__(self) -> int:
        return len(self.wraps)

    def segment_names(self) -> tuple:
        return self.wraps.segment_names()

    def __iter__(self) -> Iterator[Batch]:
        return map(self.map, iter(self.wraps))

    def iterate_from(self, start: int) -> Iterator[Batch]:
        return map(self.map, self.wraps.iterate_from(start))

    def state_dict(self) -> dict:
        return self.wraps.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.wraps.load_state_dict(state)


def check_segment_name(name: str, wraps: BatchSource) -> str:
    """``name`` for the segment a source appends to the batches of ``wraps``: a name
    those batches do not hold already (else two draws could not be told apart)."""
    held = wraps.segment_names()
    if name in held:
        raise ValueError(
            f"a source appending a segment named {name!r} cannot extend a {type(wraps).__name__} "
            f"whose batches already hold one (segments {list(held)}): give the two draws different names"
        )
    return name


def epoch_order(n: int, *, shuffle: bool, generator: torch.Generator | None) -> torch.Tensor:
    """Positions ``0..n-1``, permuted with ``generator`` when ``shuffle``."""
    if shuffle:
        return torch.randperm(n, generator=generator)
    return torch.arange(n)


class DatasetBatchSource(BatchSource):
    """Mini-batches of ``batch_size`` samples over one dataset, reshuffled every epoch.

    Tensor-backed datasets are read by indexing the storage once per batch
    (``storage[rows]``); others sample by sample.

    >>> ds = ClassificationDataset(torch.arange(5.).unsqueeze(1), torch.arange(5))
    >>> [y.tolist() for _, y, _ in DatasetBatchSource(ds, 2, shuffle=False)]
    [[0, 1], [2, 3], [4]]
    """

    def __init__(
        self,
        dataset: ClassificationDataset,
        batch_size: int,
        *,
        shuffle: bool = True,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
    ) -> None:
        if not isinstance(dataset, ClassificationDataset):
            raise TypeError(f"dataset must be a ClassificationDataset, got {type(dataset).__name__}")
        self.dataset = dataset
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.shuffle = shuffle
        self.generator = generator
        self.drop_last = drop_last

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        ds = self.dataset
        if self.shuffle:
            order = epoch_order(len(ds), shuffle=True, generator=self.generator)
            rows = ds.storage_rows(order.to(ds.device))
        else:  # in order (evaluation): the dataset's own rows, without gathering them
            rows = ds.indices
        # Labels for the whole epoch at once; per batch they are slices (one gather a batch).
        y, t = ds.labels_from_rows(rows)
        size = self.batch_size
        for start in range(0, len(self) * size, size):
            yield ds.x_from_rows(rows[start : start + size]), y[start : start + size], t[start : start + size]
