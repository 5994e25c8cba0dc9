"""OnlineReplayPlugin: the memory is updated from every incoming mini-batch, replay starts at once.

It installs an :class:`~clreplay.replay.mixing.online.OnlineReplayBatchSource` as
the strategy's ``batch_source`` for each experience (the documented way to change
what the loop trains on), wrapping the strategy's own source.
"""

from __future__ import annotations

from typing import Callable, Dict, Optional

import torch
from torch import Tensor

from clreplay._seeding import Seeded
from clreplay._validation import check_optional_positive_int, check_positive_int
from clreplay.replay.mixing.draws import check_memory_transform
from clreplay.replay.mixing.online import OnlineReplayBatchSource
from clreplay.replay.policies.base import StoragePolicy, check_storage_policy
from clreplay.replay.policies.reservoir import ReservoirSamplingStoragePolicy
from clreplay.training.plugin import StrategyPlugin


class OnlineReplayPlugin(Seeded, StrategyPlugin):
    """Online experience replay: one memory update per incoming mini-batch.

    For online continual learning (a single pass, small mini-batches, possibly
    many tiny experiences). Each step trains on the incoming mini-batch of
    ``train_mb_size`` samples plus ``batch_size_mem`` samples drawn from the
    memory; after the step the incoming samples are offered to the storage
    policy, so replay starts with the second step of the first experience.
    See :class:`~clreplay.replay.mixing.online.OnlineReplayBatchSource` for the
    exact batch composition. A method that stores more than samples overrides
    :meth:`stream_extras` (e.g. DER returns the logits of the stream samples).

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

    def setup(self, context) -> None:
        """Take the run's seed for the memory draws; hand it to the storage policy."""
        super().setup(context)
        self.storage_policy.setup(context)

    @property
    def ext_mem(self):
        """The memory: the storage policy's dict from group key to stored samples."""
        return self.storage_policy.ext_mem

    def before_training_exp(self, strategy, **kwargs):
        """Make the strategy train on stream batches plus memory, storing as it goes."""
        self._source = OnlineReplayBatchSource(
            strategy,
            self.storage_policy,
            self.batch_size_mem or strategy.train_mb_size,
            memory_generator=self.generator,
            memory_transform=self.memory_transform,
            stream_extras=self.stream_extras,
            memory_draws=self.memory_draws(strategy),
        )
        strategy.batch_source = self._source

    def memory_draws(self, strategy) -> int:
        """Independent memory draws appended to each batch (1; DER++ takes 2)."""
        return 1

    def stream_extras(self, strategy, n: int) -> Optional[Dict[str, Tensor]]:
        """Extra columns for the ``n`` stream samples just trained on (the first ``n``
        rows of ``strategy.mb``), stored with them; None: computed by the columns' fill."""
        return None

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
