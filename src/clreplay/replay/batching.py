"""ReplayBatchSource: mini-batches that mix the current experience with the memory."""

from __future__ import annotations

from typing import Callable, Iterator, List, Optional, Sequence

import torch
from torch import Tensor

from clreplay._validation import check_optional_positive_int, check_positive_int
from clreplay.data.batching import BatchSource, epoch_order
from clreplay.data.dataset import Batch, ClassificationDataset
from clreplay.replay.mixing import apply_memory_transform, check_memory_transform


def split_evenly(total: int, parts: int) -> List[int]:
    """``total`` in ``parts`` shares differing by at most one, larger shares first.

    >>> split_evenly(32, 3)
    [11, 11, 10]
    """
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


class _CyclingPositions:
    """An endless stream of positions ``0..n-1``, reshuffled each time it is exhausted."""

    def __init__(self, n: int, shuffle: bool, generator: Optional[torch.Generator]) -> None:
        self.n, self.shuffle, self.generator = n, shuffle, generator
        self._pending = torch.empty(0, dtype=torch.long)

    def take(self, count: int) -> Tensor:
        parts, have = [self._pending], len(self._pending)
        while have < count:
            fresh = epoch_order(self.n, shuffle=self.shuffle, generator=self.generator)
            parts.append(fresh)
            have += self.n
        stream = torch.cat(parts)
        self._pending = stream[count:]
        return stream[:count]


class ReplayBatchSource(BatchSource):
    """Mini-batches of the current data mixed with memory groups.

    Balanced mode (``batch_size_mem=None``): each batch of ``batch_size`` samples
    holds the same number (±1) of samples from the current data and from each
    memory group; the current data takes the first spare sample, then the groups
    in order. Otherwise each batch holds ``batch_size`` current samples plus
    ``batch_size_mem`` memory samples, split evenly over the groups.

    An epoch is one pass over the current data (the last batch may be short; in
    balanced mode its memory shares shrink with it). Each memory group is read in
    a cycle that is reshuffled whenever it is exhausted. Tensor-backed data is
    read with one gather per part and batch; labels are gathered once per epoch.
    ``memory_transform``, if set, is applied to the stacked memory part of each
    batch only (never to current samples).
    """

    def __init__(
        self,
        current: ClassificationDataset,
        memory_groups: Sequence[ClassificationDataset],
        batch_size: int,
        *,
        batch_size_mem: Optional[int] = None,
        shuffle: bool = True,
        generator: Optional[torch.Generator] = None,
        memory_transform: Optional[Callable[[Tensor], Tensor]] = None,
    ) -> None:
        groups = [g for g in memory_groups if len(g) > 0]
        if not groups:
            raise ValueError("memory_groups must hold at least one non-empty dataset, got none")
        self.current = current
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.batch_size_mem = check_optional_positive_int("batch_size_mem", batch_size_mem)
        self.shuffle, self.generator = shuffle, generator
        self.memory_transform = check_memory_transform(memory_transform)
        self.memory = ClassificationDataset.concat(groups)
        offsets = torch.tensor([0] + [len(g) for g in groups]).cumsum(0)
        self._group_offsets = offsets[:-1].tolist()
        self._streams = [_CyclingPositions(len(g), shuffle, generator) for g in groups]
        if batch_size_mem is None:
            shares = split_evenly(self.batch_size, len(groups) + 1)
            self.current_share, self.group_shares = shares[0], shares[1:]
        else:
            self.current_share = self.batch_size
            self.group_shares = split_evenly(self.batch_size_mem, len(groups))

    def __len__(self) -> int:
        return -(-len(self.current) // self.current_share)

    def _memory_rows(self, n_full: int, last_count: int) -> tuple[Tensor, Tensor]:
        """Storage rows of the memory part: a (n_full, M) matrix and the last batch's row."""
        full, last = [], []
        for stream, offset, share in zip(self._streams, self._group_offsets, self.group_shares):
            if last_count == 0:
                last_share = 0
            else:
                last_share = share if self.batch_size_mem is not None else min(share, last_count)
            positions = stream.take(n_full * share + last_share) + offset
            full.append(positions[: n_full * share].view(n_full, share))
            last.append(positions[n_full * share :])
        device = self.memory.device
        return (
            self.memory.storage_rows(torch.cat(full, dim=1).to(device)),
            self.memory.storage_rows(torch.cat(last).to(device)),
        )

    def __iter__(self) -> Iterator[Batch]:
        cur, mem, c = self.current, self.memory, self.current_share
        n = len(cur)
        n_batches = len(self)
        if n_batches == 0:
            return
        order = epoch_order(n, shuffle=self.shuffle, generator=self.generator)
        cur_rows = cur.storage_rows(order.to(cur.device))
        n_full = n // c
        last_count = n - n_full * c  # 0 when the epoch divides evenly
        mem_full, mem_last = self._memory_rows(n_full, last_count)
        # Labels for the whole epoch at once; per batch they are slices.
        cur_y, cur_t = cur.labels_from_rows(cur_rows)
        mem_y, mem_t = mem.labels_from_rows(mem_full)
        y_full = torch.cat([cur_y[: n_full * c].view(n_full, c), mem_y], dim=1).flatten()
        t_full = torch.cat([cur_t[: n_full * c].view(n_full, c), mem_t], dim=1).flatten()
        width = c + mem_full.shape[1]
        transform = self.memory_transform
        for b in range(n_full):
            x_cur = cur.x_from_rows(cur_rows[b * c : (b + 1) * c])
            x_mem = mem.x_from_rows(mem_full[b])
            if transform is not None:
                x_mem = apply_memory_transform(transform, x_mem)
            x = torch.cat([x_cur, x_mem])
            yield x, y_full[b * width : (b + 1) * width], t_full[b * width : (b + 1) * width]
        if last_count:
            rows = cur_rows[n_full * c :]
            y_last, t_last = mem.labels_from_rows(mem_last)
            x_cur, x_mem = cur.x_from_rows(rows), mem.x_from_rows(mem_last)
            if transform is not None:
                x_mem = apply_memory_transform(transform, x_mem)
            yield (
                torch.cat([x_cur, x_mem]),
                torch.cat([cur_y[n_full * c :], y_last]),
                torch.cat([cur_t[n_full * c :], t_last]),
            )
