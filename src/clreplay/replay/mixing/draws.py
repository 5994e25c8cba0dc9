"""What replay mixes into a mini-batch: memory reads, task groups, memory-only transforms, draws."""

from __future__ import annotations

from typing import Callable, Dict, Mapping, Optional, Sequence

import torch
from torch import Tensor

from clreplay.data.dataset import ClassificationDataset
from clreplay.data.minibatch import MiniBatch, Segment
from clreplay.replay.storage.store import MemoryStore

#: Memories up to this size are sampled with one permutation; larger ones by
#: drawing indices and redrawing the rare repeats (a permutation would cost O(n)).
_PERMUTE_UP_TO = 4096


def group_by_task(groups: Sequence[ClassificationDataset]) -> Dict[int, ClassificationDataset]:
    """The samples of ``groups`` regrouped by task label (ascending), in their order within.

    >>> a = ClassificationDataset(torch.zeros(3, 1), torch.tensor([0, 1, 2]), torch.tensor([1, 0, 1]))
    >>> {t: g.targets.tolist() for t, g in group_by_task([a]).items()}
    {0: [1], 1: [0, 2]}
    """
    groups = [g for g in groups if len(g) > 0]
    if not groups:
        return {}
    everything = ClassificationDataset.concat(groups)
    tasks = everything.task_labels.cpu()
    return {
        int(t): everything.subset(torch.nonzero(tasks == t).flatten().to(everything.device))
        for t in torch.unique(tasks).tolist()
    }


def check_memory_transform(value) -> Optional[Callable[[Tensor], Tensor]]:
    if value is not None and not callable(value):
        raise TypeError(f"memory_transform must be callable or None, got {type(value).__name__}")
    return value


def apply_memory_transform(transform: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """``transform(x)`` for the stacked memory part ``x`` of a batch, checked to stay a batch."""
    out = transform(x)
    if not isinstance(out, Tensor):
        raise TypeError(f"memory_transform must return a Tensor, got {type(out).__name__}")
    if out.shape[0] != x.shape[0]:
        raise ValueError(
            f"memory_transform must keep one row per sample ({x.shape[0]}), got shape {tuple(out.shape)}"
        )
    return out


def sample_without_replacement(n: int, k: int, generator: torch.Generator) -> Tensor:
    """``min(k, n)`` distinct positions in ``[0, n)``, uniformly at random, in random order.

    >>> g = torch.Generator().manual_seed(0)
    >>> sorted(sample_without_replacement(5, 9, g).tolist())
    [0, 1, 2, 3, 4]
    >>> len(set(sample_without_replacement(10**6, 50, g).tolist()))
    50
    """
    if k >= n or n <= _PERMUTE_UP_TO:
        return torch.randperm(n, generator=generator)[:k]
    drawn = torch.randint(n, (k,), generator=generator)
    values = drawn.tolist()
    if len(set(values)) == k:
        return drawn
    seen, out = set(), []
    for v in values:  # a repeat is redrawn until new: uniform over the unseen positions
        while v in seen:
            v = int(torch.randint(n, (1,), generator=generator))
        seen.add(v)
        out.append(v)
    return torch.tensor(out)


def memory_reader(policy, memory_transform=None, previous: Optional["MemoryReader"] = None
                  ) -> Optional["MemoryReader"]:
    """A :class:`MemoryReader` over the non-empty replay groups of ``policy`` (None while
    the memory is empty); ``previous`` itself when it still reads them (no new join)."""
    groups = [g for g in policy.replay_groups().values() if len(g) > 0]
    if not groups:
        return None
    if previous is not None and previous.reads(groups, policy.store, memory_transform):
        return previous
    return MemoryReader(groups, policy.store, memory_transform)


class MemoryReader:
    """Reads replayed samples from memory groups: in place in their store when they are
    views of one (memory-mapped rows through the file, plus extra columns), else
    through the joined dataset. ``memory_transform`` is applied to each stacked read.
    """

    def __init__(self, groups: Sequence[ClassificationDataset], store: Optional[MemoryStore],
                 memory_transform: Optional[Callable[[Tensor], Tensor]] = None) -> None:
        self.groups = list(groups)
        self.memory = ClassificationDataset.concat(self.groups)
        self.store = store if store is not None and store.is_view(self.memory) else None
        self.memory_transform = memory_transform
        self._has_columns = self.store is not None and bool(self.store.extras)
        self._columns_key = None if store is None else tuple(store.extras)

    def reads(self, groups: Sequence[ClassificationDataset], store: Optional[MemoryStore],
              memory_transform) -> bool:
        """Whether this reader reads exactly ``groups`` (the same views) of ``store``.

        Views are immutable: a policy that changes which rows a group holds makes new
        views, while rows overwritten in place are read in place. So a reader of the
        same views, store columns and transform reads the current memory.
        """
        return (len(groups) == len(self.groups) and all(a is b for a, b in zip(groups, self.groups))
                and memory_transform is self.memory_transform
                and (store is None or tuple(store.extras) == self._columns_key))

    def rows(self, positions: Tensor) -> Tensor:
        """Storage rows (store rows when store-backed) of memory ``positions``."""
        memory = self.memory
        return memory.storage_rows(positions.to(memory.device))

    def labels(self, rows: Tensor):
        return self.memory.labels_from_rows(rows)

    def x(self, rows: Tensor) -> Tensor:
        x = self.store.read_x(rows) if self.store is not None else self.memory.x_from_rows(rows)
        if self.memory_transform is not None:
            x = apply_memory_transform(self.memory_transform, x)
        return x

    def store_rows(self, rows: Tensor) -> Optional[Tensor]:
        return rows if self.store is not None else None

    def columns(self, rows: Tensor) -> Mapping[str, Tensor]:
        """The store's other columns (beyond x, y, t, origin) at ``rows``, each read when
        first looked up."""
        return ColumnsAt(self.store, rows) if self._has_columns else {}


class ColumnsAt(Mapping):
    """The columns of ``store`` beyond the core ones at ``rows``, each read when first
    looked up: a method that needs one column of several reads that one, every step."""

    def __init__(self, store: MemoryStore, rows: Tensor) -> None:
        self._store, self._rows, self._read = store, rows, {}

    def complete(self, name: str) -> bool:
        """Whether every stored row holds a value of column ``name`` (none reads its fill),
        as the store knows on the host."""
        return self._store.storage.complete.get(name, False)

    def __getitem__(self, name: str) -> Tensor:
        value = self._read.get(name)
        if value is None:
            if name not in self._store.extras:
                raise KeyError(name)
            value = self._read[name] = self._store.read(name, self._rows)
        return value

    def __contains__(self, name) -> bool:
        return name in self._store.extras

    def __iter__(self):
        return iter(self._store.extras)

    def __len__(self) -> int:
        return len(self._store.extras)


class LazyMapping(Mapping):
    """A mapping computed by ``compute()`` when first looked up (None reads as empty): what
    a method stores with a sample is computed only if the policy keeps one.

    >>> calls = []
    >>> lazy = LazyMapping(lambda: calls.append(1) or {"a": 1})
    >>> len(calls)
    0
    >>> lazy["a"], "b" in lazy, len(calls)
    (1, False, 1)
    """

    def __init__(self, compute: Callable[[], Optional[Mapping]]) -> None:
        self._compute, self._values = compute, None

    def _get(self) -> Mapping:
        if self._values is None:
            self._values = self._compute() or {}
        return self._values

    def __getitem__(self, key):
        return self._get()[key]

    def __iter__(self):
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())


class MemorySampler:
    """Draws samples uniformly from the whole memory of ``policy``, read in place in its
    store, as a mini-batch of one memory segment (A-GEM's reference batch). The reader
    of the memory is kept while the policy's groups stay the same views (rows
    overwritten in place are read as they are now), so a draw per step costs a few
    tensor operations.

    >>> from types import SimpleNamespace
    >>> from clreplay import ClassificationDataset, ReservoirSamplingStoragePolicy
    >>> from clreplay.benchmarks import Experience
    >>> policy = ReservoirSamplingStoragePolicy({}, mem_size=4, seed=0)
    >>> sampler = MemorySampler(policy)
    >>> sampler.draw(3, torch.Generator()) is None   # nothing stored yet
    True
    >>> data = ClassificationDataset(torch.arange(6.).unsqueeze(1), torch.arange(6))
    >>> policy(SimpleNamespace(experience=Experience(data, 0, list(range(6)))))
    >>> batch = sampler.draw(3, torch.Generator().manual_seed(0))
    >>> len(batch), bool(batch.from_memory.all()), len(batch.segment("memory").rows)
    (3, True, 3)
    """

    def __init__(self, policy, *, name: str = "memory") -> None:
        self.policy, self.name = policy, name
        self._reader: Optional[MemoryReader] = None

    def draw(self, count: int, generator: torch.Generator) -> Optional[MiniBatch]:
        """``min(count, memory size)`` distinct samples drawn with ``generator``, as a
        :class:`~clreplay.data.MiniBatch`; None while the memory is empty."""
        reader = self._reader = memory_reader(self.policy, previous=self._reader)
        if reader is None:
            return None
        rows = reader.rows(sample_without_replacement(len(reader.memory), count, generator))
        y, t = reader.labels(rows)
        segment = Segment(self.name, 0, len(rows), from_memory=True, rows=reader.store_rows(rows),
                          columns=reader.columns(rows))
        return MiniBatch(reader.x(rows), y, t, segments=(segment,))
