"""What replay mixes into a mini-batch: memory reads, task groups, memory-only transforms, draws."""

from __future__ import annotations

from typing import Callable, Dict, Mapping, Optional, Sequence

import torch
from torch import Tensor

from clreplay.data.dataset import ClassificationDataset
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
        self.store = store if store is not None and store.rows_of(self.memory) is not None else None
        self.memory_transform = memory_transform
        self._has_extras = self.store is not None and bool(self.store.extras)
        self._extras_key = None if store is None else tuple(store.extras)

    def reads(self, groups: Sequence[ClassificationDataset], store: Optional[MemoryStore],
              memory_transform) -> bool:
        """Whether this reader reads exactly ``groups`` (the same views) of ``store``.

        Views are immutable: a policy that changes which rows a group holds makes new
        views, while rows overwritten in place are read in place. So a reader of the
        same views, store columns and transform reads the current memory.
        """
        return (len(groups) == len(self.groups) and all(a is b for a, b in zip(groups, self.groups))
                and memory_transform is self.memory_transform
                and (store is None or tuple(store.extras) == self._extras_key))

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

    def extras(self, rows: Tensor) -> Mapping[str, Tensor]:
        """The store's extra columns at ``rows``, each read when first looked up."""
        return _ColumnsAt(self.store, rows) if self._has_extras else {}


class _ColumnsAt(Mapping):
    """The extra columns of ``store`` at ``rows``, each read when first looked up: a
    method that needs one column of several (DER reads a row's logits, and their
    widths only once a head has grown) reads that one, every step."""

    def __init__(self, store: MemoryStore, rows: Tensor) -> None:
        self._store, self._rows, self._read = store, rows, {}

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
