"""Online replay: the memory is updated from every incoming mini-batch, replay starts at once.

:class:`OnlineReplayPlugin` installs an :class:`OnlineReplayBatchSource` as the
strategy's ``batch_source`` for each experience (the documented way to change
what the loop trains on). The source reads the experience's mini-batches
exactly as the strategy's default source would, appends samples drawn from the
memory to each, and after the strategy has trained on a batch (when the loop
asks for the next one) feeds that batch's stream samples to the storage policy.
Everything happens inside the source's generator: no per-iteration hook runs,
and the per-step cost is a handful of tensor operations.
"""

from __future__ import annotations

from typing import Callable, Iterator, Optional

import torch
from torch import Tensor

from clreplay._seeding import Seeded
from clreplay._validation import check_optional_positive_int, check_positive_int
from clreplay.benchmarks.experience import Experience
from clreplay.data.batching import BatchSource, epoch_order
from clreplay.data.dataset import Batch, ClassificationDataset
from clreplay.replay.mixing import (
    apply_memory_transform,
    check_memory_transform,
    sample_without_replacement,
)
from clreplay.replay.reservoir import ReservoirSamplingStoragePolicy
from clreplay.replay.storage import StoragePolicy, check_storage_policy
from clreplay.replay.streaming import StreamingStoragePolicy
from clreplay.training.plugin import StrategyPlugin


class _BatchAsExperience:
    """The strategy as a storage policy sees it, with one mini-batch as its experience."""

    def __init__(self, strategy, experience: Experience) -> None:
        self._strategy = strategy
        self.experience = experience

    def __getattr__(self, name):
        return getattr(self._strategy, name)


class OnlineReplayBatchSource(BatchSource):
    """The experience's mini-batches, each followed by memory samples; memory updated as it goes.

    Each batch is ``batch_size`` stream samples (in the order the strategy's
    default source would give them: one pass, shuffled with ``generator``) plus
    ``min(batch_size_mem, memory size)`` distinct samples drawn uniformly from the
    whole memory with ``memory_generator`` (nothing while the memory is empty).
    During the first pass, after each step the stream samples of the batch are
    stored: through ``update_from_batch`` for a
    :class:`~clreplay.replay.streaming.StreamingStoragePolicy`, otherwise by
    calling the policy with the batch as a tiny experience. Later passes (more
    than one epoch) replay without storing, so each sample is offered once.
    ``memory_transform`` is applied to the stacked memory samples only.
    """

    def __init__(
        self,
        strategy,
        storage_policy: StoragePolicy,
        batch_size: int,
        batch_size_mem: int,
        *,
        memory_generator: torch.Generator,
        memory_transform: Optional[Callable[[Tensor], Tensor]] = None,
        shuffle: bool = True,
        generator: Optional[torch.Generator] = None,
    ) -> None:
        self.strategy = strategy
        self.experience: Experience = strategy.experience
        self.current: ClassificationDataset = self.experience.dataset
        self.storage_policy = storage_policy
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.batch_size_mem = check_positive_int("batch_size_mem", batch_size_mem)
        self.memory_generator = memory_generator
        self.memory_transform = check_memory_transform(memory_transform)
        self.shuffle, self.generator = shuffle, generator
        self.passes = 0  # completed passes over the experience

    def __len__(self) -> int:
        return -(-len(self.current) // self.batch_size)

    def _memory(self) -> Optional[ClassificationDataset]:
        groups = [g for g in self.storage_policy.replay_groups().values() if len(g) > 0]
        return ClassificationDataset.concat(groups) if groups else None

    def _store(self, x: Tensor, y: Tensor, t: Tensor, positions: Tensor) -> None:
        policy = self.storage_policy
        if isinstance(policy, StreamingStoragePolicy):
            policy.update_from_batch(self.strategy, x, y, t)
            return
        exp = self.experience
        batch = Experience(
            self.current.subset(positions), exp.current_experience,
            sorted(set(y.tolist())), exp.task_label,
        )
        policy(_BatchAsExperience(self.strategy, batch))

    def __iter__(self) -> Iterator[Batch]:
        cur, c, k = self.current, self.batch_size, self.batch_size_mem
        n = len(cur)
        order = epoch_order(n, shuffle=self.shuffle, generator=self.generator)
        rows = cur.storage_rows(order.to(cur.device))
        cur_y, cur_t = cur.labels_from_rows(rows)
        store = self.passes == 0
        transform, g = self.memory_transform, self.memory_generator
        mem = self._memory()
        for s in range(0, n, c):
            x = cur.x_from_rows(rows[s : s + c])
            y, t = cur_y[s : s + c], cur_t[s : s + c]
            if mem is None:
                yield x, y, t
            else:
                pos = sample_without_replacement(len(mem), k, g)
                mem_rows = mem.storage_rows(pos.to(mem.device) if mem.device != pos.device else pos)
                xm = mem.x_from_rows(mem_rows)
                ym, tm = mem.labels_from_rows(mem_rows)
                if transform is not None:
                    xm = apply_memory_transform(transform, xm)
                yield torch.cat((x, xm)), torch.cat((y, ym)), torch.cat((t, tm))
            # Resumed when the loop wants the next batch: the step on this one is done.
            if store:
                self._store(x, y, t, order[s : s + c])
                mem = self._memory()
        self.passes += 1


class OnlineReplayPlugin(Seeded, StrategyPlugin):
    """Online experience replay: one memory update per incoming mini-batch.

    For online continual learning (a single pass, small mini-batches, possibly
    many tiny experiences). Each step trains on the incoming mini-batch of
    ``train_mb_size`` samples plus ``batch_size_mem`` samples drawn from the
    memory; after the step the incoming samples are offered to the storage
    policy, so replay starts with the second step of the first experience.
    See :class:`OnlineReplayBatchSource` for the exact batch composition.

    Parameters
    ----------
    mem_size: the total number of samples the memory stores.
    storage_policy: how samples are stored; default
        ``ReservoirSamplingStoragePolicy(ext_mem={}, mem_size=mem_size)``. Any policy
        works; a :class:`~clreplay.replay.streaming.StreamingStoragePolicy`
        (reservoir, parametric) is updated from the batch tensors directly, others
        are called with each mini-batch as an experience (much slower).
    batch_size_mem: memory samples per step; default ``train_mb_size``.
    seed: seeds the draws of memory samples; None derives it from the strategy's seed.
    memory_transform: a callable applied to the stacked memory samples of each
        batch only (e.g. augmentation of replayed samples).

    Example
    -------
    >>> from clreplay.benchmarks import split_digits
    >>> from clreplay.training import Naive
    >>> bench = split_digits()
    >>> model = torch.nn.Linear(64, 10)
    >>> replay = OnlineReplayPlugin(mem_size=100)
    >>> strategy = Naive(model, torch.optim.SGD(model.parameters(), lr=0.1),
    ...                  train_mb_size=10, plugins=[replay], seed=0)
    >>> strategy.train(bench.train_stream[0])
    >>> replay.storage_policy.n_seen, len(replay.ext_mem[0])
    (254, 100)
    """

    _seed_name = "online_replay"

    def __init__(
        self,
        mem_size: int = 200,
        storage_policy: Optional[StoragePolicy] = None,
        *,
        batch_size_mem: Optional[int] = None,
        seed: int | None = None,
        memory_transform: Optional[Callable[[Tensor], Tensor]] = None,
    ) -> None:
        self.mem_size = check_positive_int("mem_size", mem_size)
        self.batch_size_mem = check_optional_positive_int("batch_size_mem", batch_size_mem)
        self.memory_transform = check_memory_transform(memory_transform)
        if storage_policy is None:
            storage_policy = ReservoirSamplingStoragePolicy({}, self.mem_size)
        self.storage_policy = check_storage_policy(storage_policy, self.mem_size)
        self._init_seed(seed)
        self._source: Optional[OnlineReplayBatchSource] = None

    @property
    def ext_mem(self):
        """The memory: the storage policy's dict from group key to stored samples."""
        return self.storage_policy.ext_mem

    def before_training_exp(self, strategy, shuffle: bool = True, **kwargs):
        """Make the strategy train on stream batches plus memory, storing as it goes."""
        self.storage_policy.resolve_seed(strategy.seed)
        self.resolve_seed(strategy.seed)
        self._source = OnlineReplayBatchSource(
            strategy,
            self.storage_policy,
            strategy.train_mb_size,
            self.batch_size_mem or strategy.train_mb_size,
            memory_generator=self.generator,
            memory_transform=self.memory_transform,
            shuffle=shuffle,
            generator=strategy.generator,
        )
        strategy.batch_source = self._source

    def after_training_exp(self, strategy, **kwargs):
        """Store the experience at once if it was never streamed (``train_epochs=0``)."""
        if self._source is not None and self._source.passes == 0:
            self.storage_policy(strategy)
        self._source = None

    def state_dict(self) -> dict:
        return {
            "mem_size": self.mem_size,
            "storage_policy": self.storage_policy.state_dict(),
            "rng": self._seed_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict, got {type(state).__name__}")
        expected = {"mem_size", "storage_policy", "rng"}
        if set(state) != expected:
            raise KeyError(f"online replay state must have keys {sorted(expected)}, got {sorted(state)}")
        if state["mem_size"] != self.mem_size:
            raise ValueError(
                f"mem_size of the saved replay memory ({state['mem_size']}) differs from "
                f"this plugin's mem_size ({self.mem_size})"
            )
        self.storage_policy.load_state_dict(state["storage_policy"])
        self._load_seed_state(state["rng"])
