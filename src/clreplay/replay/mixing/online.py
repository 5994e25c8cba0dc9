"""OnlineReplayBatchSource: each batch of another source followed by draws from the whole memory.

The source wraps the strategy's batch source for the experience (whatever
``make_train_batch_source`` built, or another replay source) and appends, to each
of its batches, one segment per draw name: ``min(batch_size_mem, memory size)``
distinct samples drawn uniformly from the whole memory with its generator
(nothing while the memory is empty). Online replay (the memory updated after each
step) and the methods that draw from their memory every step build on it. The
per-step cost is a handful of tensor operations.
"""

from __future__ import annotations

from typing import Callable, Iterator, Optional, Sequence

import torch
from torch import Tensor

from clreplay._validation import check_positive_int
from clreplay.data.batching import BatchSource, check_segment_name
from clreplay.data.minibatch import MiniBatch, Segment
from clreplay.replay.mixing.draws import (
    MemoryReader,
    check_memory_transform,
    memory_reader,
    sample_without_replacement,
)
from clreplay.replay.policies.base import StoragePolicy


class OnlineReplayBatchSource(BatchSource):
    """The batches of ``wraps``, each followed by ``draws`` independent memory draws.

    Each draw is ``min(batch_size_mem, memory size)`` distinct samples drawn uniformly
    from the whole memory of ``storage_policy`` with ``memory_generator``, appended as
    a memory segment named after the draw (e.g. ``("replay",)``, DER++'s
    ``("replay", "replay_ce")``), with the store rows it came from and the store's
    other columns; the draws of one batch are gathered at once. The memory is read
    again only after :meth:`memory_changed` (rows overwritten in place are read as
    they are now). ``memory_transform`` is applied to the stacked memory samples
    only. ``last`` is the batch of ``wraps`` most recently yielded, as it came
    (before any plugin changed the strategy's copy): online replay stores its
    stream rows after the step.
    """

    def __init__(
        self,
        wraps: BatchSource,
        storage_policy: StoragePolicy,
        batch_size_mem: int,
        *,
        memory_generator: torch.Generator,
        draws: Sequence[str] = ("online_replay",),
        memory_transform: Optional[Callable[[Tensor], Tensor]] = None,
    ) -> None:
        if not isinstance(wraps, BatchSource):
            raise TypeError(f"wraps must be a BatchSource, got {type(wraps).__name__}")
        self.wraps = wraps
        self.storage_policy = storage_policy
        self.batch_size_mem = check_positive_int("batch_size_mem", batch_size_mem)
        self.memory_generator = memory_generator
        self.memory_transform = check_memory_transform(memory_transform)
        self.draws = tuple(draws)
        if not self.draws or len(set(self.draws)) != len(self.draws):
            raise ValueError(f"draws must be distinct segment names, got {self.draws}")
        for name in self.draws:
            check_segment_name(name, wraps)
        self.last: Optional[MiniBatch] = None
        self._reader: Optional[MemoryReader] = None
        self._stale = True

    def __len__(self) -> int:
        return len(self.wraps)

    def segment_names(self) -> tuple:
        return self.wraps.segment_names() + self.draws

    def memory_changed(self) -> None:
        """The memory's groups may have changed: read them again before the next draw."""
        self._stale = True

    def _memory(self) -> Optional[MemoryReader]:
        if self._stale:
            self._reader = memory_reader(self.storage_policy, self.memory_transform, self._reader)
            self._stale = False
        return self._reader

    def __iter__(self) -> Iterator[MiniBatch]:
        return self._batches(iter(self.wraps))

    def iterate_from(self, start: int) -> Iterator[MiniBatch]:
        """Resume mid-epoch: the first ``start`` batches were drawn for before the checkpoint
        (its generator holds those draws): the wrapped source skips them its own way."""
        return self._batches(self.wraps.iterate_from(start))

    def _batches(self, batches) -> Iterator[MiniBatch]:
        k, g, draws = self.batch_size_mem, self.memory_generator, self.draws
        for batch in batches:
            mb = self.last = MiniBatch.of(batch)
            reader = self._memory()
            if reader is None:
                # A record of its own: a plugin setting strategy.mb_x (augmentation) must
                # not change ``last``, whose samples are stored after the step.
                yield MiniBatch(mb.x, mb.y, mb.t, segments=mb.segments)
                continue
            size = len(reader.memory)
            positions = [sample_without_replacement(size, k, g) for _ in draws]
            rows = reader.rows(torch.cat(positions) if len(positions) > 1 else positions[0])
            x, (y, t) = reader.x(rows), reader.labels(rows)
            segments, n, offset = list(mb.segments), len(mb), 0
            for name, drawn in zip(draws, positions):
                part = rows if len(draws) == 1 else rows[offset : offset + len(drawn)]
                segments.append(Segment(name, n + offset, n + offset + len(drawn), from_memory=True,
                                        rows=reader.store_rows(part), columns=reader.columns(part)))
                offset += len(drawn)
            if x.device != mb.x.device:
                x, y, t = x.to(mb.x.device), y.to(mb.y.device), t.to(mb.t.device)
            yield MiniBatch(torch.cat((mb.x, x)), torch.cat((mb.y, y)), torch.cat((mb.t, t)),
                            segments=segments)
