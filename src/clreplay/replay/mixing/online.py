"""OnlineReplayBatchSource: stream batches plus memory draws, the memory updated after each step.

The source wraps the strategy's own batch source for the experience (whatever
``make_train_batch_source`` builds) and appends samples drawn from the memory to
each batch; at the end of each step the plugin has it feed that batch's stream
samples to the storage policy, so a checkpoint taken at the end of an iteration
holds them. The per-step cost is a handful of tensor operations.
"""

from __future__ import annotations

from typing import Callable, Dict, Iterator, Mapping, Optional

import torch
from torch import Tensor

from clreplay import distributed as idist
from clreplay._validation import check_positive_int
from clreplay.data.batching import BatchSource
from clreplay.data.dataset import ClassificationDataset
from clreplay.data.minibatch import MiniBatch
from clreplay.replay.mixing.draws import (
    MemoryReader,
    check_memory_transform,
    memory_reader,
    sample_without_replacement,
)
from clreplay.replay.policies.base import StoragePolicy
from clreplay.replay.policies.streaming import StreamingStoragePolicy
from clreplay.replay.storage.consistency import check_replicated

#: ``stream_extras(strategy, n) -> {column: values}``: extra columns for the ``n``
#: stream samples of the batch just trained on (e.g. their logits), or None.
StreamExtras = Callable[[object, int], Optional[Dict[str, Tensor]]]


class _BatchAsExperience:
    """The strategy as a storage policy sees it, with one mini-batch as its experience."""

    def __init__(self, strategy, experience) -> None:
        self._strategy = strategy
        self.experience = experience

    def __getattr__(self, name):
        return getattr(self._strategy, name)


class _Batch:
    """One mini-batch as an experience: what a policy reads of ``strategy.experience``."""

    def __init__(self, dataset: ClassificationDataset, experience) -> None:
        self.dataset = dataset
        self.current_experience = experience.current_experience
        self.classes_in_this_experience = sorted(set(dataset.targets.tolist()))
        self.task_label = getattr(experience, "task_label", 0)


class _Deferred(Mapping):
    """A mapping computed by ``compute()`` on first use (None reads as empty)."""

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


class OnlineReplayBatchSource(BatchSource):
    """The strategy's batches for the experience, each followed by memory samples; the
    memory updated as it goes.

    Each batch is a batch of the strategy's own source for the experience (one
    pass over the stream, as it would train without replay) plus
    ``min(batch_size_mem, memory size)`` distinct samples drawn uniformly from the
    whole memory with ``memory_generator`` (nothing while the memory is empty).
    During the first pass, at the end of each step (:meth:`store_last`, called by
    the plugin's ``after_training_iteration``) the stream samples of the batch are
    stored: through ``update_from_batch`` for a
    :class:`~clreplay.replay.policies.StreamingStoragePolicy` (with the extra
    columns ``stream_extras`` returns for them), otherwise by calling the policy
    with the batch as a tiny experience. Later passes (more than one epoch)
    replay without storing, so each sample is offered once. ``memory_transform``
    is applied to the stacked memory samples only. With ``memory_draws=d``, each
    batch is followed by ``d`` independent draws of that many samples, in order
    (e.g. DER++'s two memory batches, forwarded together).
    """

    def __init__(
        self,
        strategy,
        storage_policy: StoragePolicy,
        batch_size_mem: int,
        *,
        memory_generator: torch.Generator,
        memory_transform: Optional[Callable[[Tensor], Tensor]] = None,
        stream_extras: Optional[StreamExtras] = None,
        memory_draws: int = 1,
    ) -> None:
        self.strategy = strategy
        self.experience = strategy.experience
        self.wraps: BatchSource = strategy.batch_source
        self.storage_policy = storage_policy
        self.batch_size_mem = check_positive_int("batch_size_mem", batch_size_mem)
        self.memory_generator = memory_generator
        self.memory_transform = check_memory_transform(memory_transform)
        self.stream_extras = stream_extras
        self.memory_draws = check_positive_int("memory_draws", memory_draws)
        self.streamed = False  # whether a pass over the experience has started
        self._last: Optional[MiniBatch] = None  # the stream part of the batch in training
        self._reader: Optional[MemoryReader] = None
        self._stale = True
        self._masks: Dict[tuple, Tensor] = {}
        self._streaming = isinstance(storage_policy, StreamingStoragePolicy)  # (an ABC check: slow)

    def __len__(self) -> int:
        return len(self.wraps)

    def _memory(self) -> Optional[MemoryReader]:
        if self._stale:  # the memory changed since the last read: join its groups again
            self._reader = memory_reader(self.storage_policy, self.memory_transform, self._reader)
            self._stale = False
        return self._reader

    def _mask(self, n: int, m: int, device) -> Tensor:
        """The ``from_memory`` mask of ``n`` current then ``m`` replayed rows (made once a shape:
        no step writes into it)."""
        key = (n, m, device)
        mask = self._masks.get(key)
        if mask is None:
            mask = self._masks[key] = torch.cat((torch.zeros(n, dtype=torch.bool, device=device),
                                                 torch.ones(m, dtype=torch.bool, device=device)))
        return mask

    def store_last(self) -> None:
        """Offer the stream samples of the batch just trained on to the policy (first
        pass only; the plugin calls it at the end of each iteration)."""
        mb, self._last = self._last, None
        if mb is None:
            return
        policy, strategy = self.storage_policy, self.strategy
        # Computed when the policy keeps one of the samples: a full reservoir keeps
        # mem_size / seen of them, so most steps of a long stream store nothing.
        extras = None if self.stream_extras is None else _Deferred(lambda: self._extras(len(mb)))
        if self._streaming:
            changed = policy.update_from_batch(strategy, mb.x, mb.y, mb.t, extras=extras) is not False
        else:
            batch = _Batch(ClassificationDataset(mb.x, mb.y, mb.t), self.experience)
            policy(_BatchAsExperience(strategy, batch))
            changed = True
        # Most steps of a long stream store nothing: the memory is then read as before.
        self._stale = self._stale or changed
        check_replicated(policy, strategy, full=False, when=(
            f"step {strategy.clock.train_exp_iterations} of experience "
            f"{self.experience.current_experience}"))

    def _extras(self, n: int) -> Optional[Dict[str, Tensor]]:
        """``stream_extras`` for the ``n`` stream samples of the batch just trained on.

        In a distributed run the strategy's batch is this rank's slice, whose current
        rows (first in it) are its share of the stream samples: each rank computes the
        extras of its share and they are gathered in rank order, the stream's order.
        """
        strategy = self.strategy
        if not idist.is_distributed(strategy):
            return self.stream_extras(strategy, n)
        local = self.stream_extras(strategy, int((~strategy.mb.from_memory).sum()))
        if local is None:
            return None
        return {name: idist.all_gather(values) for name, values in sorted(local.items())}

    def __iter__(self) -> Iterator[MiniBatch]:
        return self._batches(iter(self.wraps))

    def iterate_from(self, start: int) -> Iterator[MiniBatch]:
        """Resume mid-epoch: the first ``start`` stream batches were drawn for and stored
        before the checkpoint (its memory and generator hold them): skip them."""
        return self._batches(self.wraps.iterate_from(start))

    def _batches(self, stream) -> Iterator[MiniBatch]:
        first_pass = self.strategy.clock.train_exp_epochs == 0
        self.streamed = True
        k, g = self.batch_size_mem, self.memory_generator
        for batch in stream:
            mb = MiniBatch.of(batch)
            self._last = mb if first_pass else None
            reader = self._memory()
            if reader is None:
                # A record of its own: a plugin setting strategy.mb_x (augmentation) must
                # not change the samples stored at the end of the step.
                yield MiniBatch(mb.x, mb.y, mb.t, from_memory=mb._from_memory,
                                memory_rows=mb.memory_rows, extras=mb.extras)
                continue
            size = len(reader.memory)
            positions = sample_without_replacement(size, k, g)
            if self.memory_draws > 1:  # independent draws, gathered at once
                positions = torch.cat([positions] + [sample_without_replacement(size, k, g)
                                                     for _ in range(self.memory_draws - 1)])
            rows = reader.rows(positions)
            ym, tm = reader.labels(rows)
            mask = self._mask(len(mb), len(rows), mb.y.device)
            yield MiniBatch(torch.cat((mb.x, reader.x(rows))), torch.cat((mb.y, ym)),
                            torch.cat((mb.t, tm)), from_memory=mask,
                            memory_rows=reader.store_rows(rows), extras=reader.extras(rows))
