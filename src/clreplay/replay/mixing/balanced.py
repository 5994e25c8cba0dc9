"""Replay batch sources: mini-batches that mix the current experience with the memory."""

from __future__ import annotations

from typing import Callable, Iterator, List, Optional, Sequence

import torch
from torch import Tensor

from clreplay._validation import check_optional_positive_int, check_positive_int
from clreplay.data.batching import BatchSource, check_segment_name, epoch_order
from clreplay.data.dataset import ClassificationDataset
from clreplay.data.minibatch import STREAM, MiniBatch, Segment
from clreplay.replay.mixing.draws import MemoryReader, check_memory_transform
from clreplay.replay.policies.allocation import split_capacity
from clreplay.replay.storage.store import MemoryStore


def split_evenly(total: int, parts: int) -> List[int]:
    """``total`` in ``parts`` shares differing by at most one, larger shares first.

    >>> split_evenly(32, 3)
    [11, 11, 10]
    """
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def memory_shares(batch_size_mem: int, group_sizes: Sequence[int]) -> List[int]:
    """Memory samples per group in each batch: ``batch_size_mem`` split evenly (larger
    shares first), but never more than the memory holds: a group gives at most its
    size and the rest goes to the groups that have more, so no sample repeats
    within a batch and a huge ``batch_size_mem`` costs no more than the memory.

    >>> memory_shares(5, [60, 60]), memory_shares(10, [2, 60]), memory_shares(10**9, [3, 4])
    ([3, 2], [2, 8], [3, 4])
    """
    shares = split_evenly(batch_size_mem, len(group_sizes))
    if all(s <= n for s, n in zip(shares, group_sizes)):
        return shares
    return split_capacity(group_sizes, min(batch_size_mem, sum(group_sizes)), remainder="spread")


class _CyclingPositions:
    """An endless stream of positions ``0..n-1``, reshuffled each time it is exhausted."""

    def __init__(self, n: int, shuffle: bool, generator: Optional[torch.Generator]) -> None:
        self.n, self.shuffle, self.generator = n, shuffle, generator
        self.pending = torch.empty(0, dtype=torch.long)

    def take(self, count: int) -> Tensor:
        parts, have = [self.pending], len(self.pending)
        while have < count:
            fresh = epoch_order(self.n, shuffle=self.shuffle, generator=self.generator)
            parts.append(fresh)
            have += self.n
        stream = torch.cat(parts)
        self.pending = stream[count:]
        return stream[:count]


class _GroupCycles:
    """Each memory group read in its own reshuffled cycle; positions in the joined memory."""

    def __init__(self, groups: Sequence[ClassificationDataset], shuffle, generator) -> None:
        offsets = torch.tensor([0] + [len(g) for g in groups]).cumsum(0)
        self.offsets = offsets[:-1].tolist()
        self.streams = [_CyclingPositions(len(g), shuffle, generator) for g in groups]

    def take(self, counts: Sequence[int]) -> List[Tensor]:
        return [stream.take(count) + offset
                for stream, offset, count in zip(self.streams, self.offsets, counts)]


class _MemoryMixing(BatchSource):
    """What both offline sources share: the memory groups, read in reshuffled cycles."""

    def __init__(
        self,
        memory_groups: Sequence[ClassificationDataset],
        *,
        batch_size_mem: Optional[int] = None,
        shuffle: bool = True,
        generator: Optional[torch.Generator] = None,
        memory_transform: Optional[Callable[[Tensor], Tensor]] = None,
        store: Optional[MemoryStore] = None,
        name: str = "replay",
    ) -> None:
        groups = [g for g in memory_groups if len(g) > 0]
        if not groups:
            raise ValueError("memory_groups must hold at least one non-empty dataset, got none")
        self.batch_size_mem = check_optional_positive_int("batch_size_mem", batch_size_mem)
        self.shuffle, self.generator = shuffle, generator
        self.memory_transform = check_memory_transform(memory_transform)
        self.reader = MemoryReader(groups, store, self.memory_transform)
        self.group_sizes = [len(g) for g in groups]
        self._cycles = _GroupCycles(groups, shuffle, generator)
        self.name = name  # the segment the memory's rows form in each batch

    def _segments(self, n_current: int, rows: Tensor, *, current=None) -> tuple:
        """The segments of a batch: the current rows (``current``: those of the wrapped
        batch, else one stream segment) then the memory's ``rows``."""
        reader = self.reader
        head = (Segment(STREAM, 0, n_current),) if current is None else current
        return head + (Segment(self.name, n_current, n_current + len(rows), from_memory=True,
                                rows=reader.store_rows(rows), columns=reader.columns(rows)),)

    @property
    def memory(self) -> ClassificationDataset:
        """The memory groups joined (a view: no sample copied when they share a store)."""
        return self.reader.memory

    def state_dict(self) -> dict:
        """The positions each group's cycle still holds: the next epoch starts with them."""
        return {"pending": [stream.pending.clone() for stream in self._cycles.streams]}

    def load_state_dict(self, state: dict) -> None:
        for stream, pending in zip(self._cycles.streams, state["pending"]):
            stream.pending = pending.clone()


class ReplayBatchSource(_MemoryMixing):
    """Mini-batches of the current data mixed with memory groups.

    Balanced mode (``batch_size_mem=None``): each batch of ``batch_size`` samples
    holds the same number (±1) of samples from the current data and from each
    memory group; the current data takes the first spare sample, then the groups
    in order. Otherwise each batch holds ``batch_size`` current samples plus
    ``batch_size_mem`` memory samples split evenly over the groups, capped at what
    the memory holds (:func:`memory_shares`).

    An epoch is one pass over the current data (the last batch may be short; in
    balanced mode its memory shares shrink with it). Each memory group is read in
    a cycle that is reshuffled whenever it is exhausted. Batches are
    :class:`~clreplay.data.MiniBatch` records: current samples first, then the
    memory's, with ``from_memory``, the ``store`` rows they came from and the
    store's extra columns for them. Tensor-backed data is read with one gather per
    part and batch, the memory in place in its store; labels are gathered once per
    epoch. ``memory_transform``, if set, is applied to the stacked memory part of
    each batch only.
    """

    def __init__(
        self,
        current: ClassificationDataset,
        memory_groups: Sequence[ClassificationDataset],
        batch_size: int,
        **options,
    ) -> None:
        # options: batch_size_mem, shuffle, generator, memory_transform, store, name (the class doc)
        super().__init__(memory_groups, **options)
        self.current = current
        self.batch_size = check_positive_int("batch_size", batch_size)
        if self.batch_size_mem is None:
            shares = split_evenly(self.batch_size, len(self.group_sizes) + 1)
            self.current_share, self.group_shares = shares[0], shares[1:]
        else:
            self.current_share = self.batch_size
            self.group_shares = memory_shares(self.batch_size_mem, self.group_sizes)

    def __len__(self) -> int:
        return -(-len(self.current) // self.current_share)

    def segment_names(self) -> tuple:
        return (STREAM, self.name)

    def _memory_positions(self, n_full: int, last_count: int) -> tuple[Tensor, Tensor]:
        """Memory positions of the batches: a (n_full, M) matrix and the last batch's."""
        if last_count == 0:
            last_shares = [0] * len(self.group_shares)
        elif self.batch_size_mem is not None:
            last_shares = self.group_shares
        else:
            last_shares = [min(share, last_count) for share in self.group_shares]
        taken = self._cycles.take([n_full * s + end for s, end in zip(self.group_shares, last_shares)])
        full = [p[: n_full * s].view(n_full, s) for p, s in zip(taken, self.group_shares)]
        last = [p[n_full * s :] for p, s in zip(taken, self.group_shares)]
        return torch.cat(full, dim=1), torch.cat(last)

    def __iter__(self) -> Iterator[MiniBatch]:
        cur, c = self.current, self.current_share
        n = len(cur)
        n_batches = len(self)
        if n_batches == 0:
            return
        order = epoch_order(n, shuffle=self.shuffle, generator=self.generator)
        cur_rows = cur.storage_rows(order.to(cur.device))
        n_full = n // c
        last_count = n - n_full * c  # 0 when the epoch divides evenly
        mem_full, mem_last = self._memory_positions(n_full, last_count)
        reader = self.reader
        mem_full = reader.rows(mem_full)
        # Labels for the whole epoch at once; per batch they are slices.
        cur_y, cur_t = cur.labels_from_rows(cur_rows)
        mem_y, mem_t = reader.labels(mem_full)
        y_full = torch.cat([cur_y[: n_full * c].view(n_full, c), mem_y], dim=1).flatten()
        t_full = torch.cat([cur_t[: n_full * c].view(n_full, c), mem_t], dim=1).flatten()
        width = c + mem_full.shape[1]
        for b in range(n_full):
            rows = mem_full[b]
            x = torch.cat([cur.x_from_rows(cur_rows[b * c : (b + 1) * c]), reader.x(rows)])
            yield MiniBatch(x, y_full[b * width : (b + 1) * width], t_full[b * width : (b + 1) * width],
                            segments=self._segments(c, rows))
        if last_count:
            rows = reader.rows(mem_last)
            y_last, t_last = reader.labels(rows)
            x = torch.cat([cur.x_from_rows(cur_rows[n_full * c :]), reader.x(rows)])
            yield MiniBatch(
                x, torch.cat([cur_y[n_full * c :], y_last]), torch.cat([cur_t[n_full * c :], t_last]),
                segments=self._segments(last_count, rows),
            )


class AppendMemoryBatchSource(_MemoryMixing):
    """Each batch of another batch source followed by memory samples.

    How replay respects a strategy that builds its own batch source
    (``make_train_batch_source`` overridden): the strategy's batches are kept as
    they come, and ``batch_size_mem`` memory samples (default: as many as the
    batch's current samples) are appended, split evenly over the memory groups and
    capped at what the memory holds. ``wraps`` is the source it extends.
    """

    def __init__(
        self,
        wraps: BatchSource,
        memory_groups: Sequence[ClassificationDataset],
        **options,
    ) -> None:
        # options: batch_size_mem, shuffle, generator, memory_transform, store, name (as ReplayBatchSource)
        super().__init__(memory_groups, **options)
        self.wraps = wraps
        check_segment_name(self.name, wraps)

    def segment_names(self) -> tuple:
        return self.wraps.segment_names() + (self.name,)

    def __len__(self) -> int:
        return len(self.wraps)

    def __iter__(self) -> Iterator[MiniBatch]:
        reader = self.reader
        for batch in self.wraps:
            mb = MiniBatch.of(batch)
            count = self.batch_size_mem or len(mb)
            rows = reader.rows(torch.cat(self._cycles.take(memory_shares(count, self.group_sizes))))
            y, t = reader.labels(rows)
            yield mb.append(reader.x(rows), y, t, name=self.name, rows=reader.store_rows(rows),
                            columns=reader.columns(rows))
