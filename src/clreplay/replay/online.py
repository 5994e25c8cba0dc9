"""OnlineReplayPlugin: the memory is updated from every incoming mini-batch, replay starts at once.

It installs an :class:`~clreplay.replay.mixing.online.OnlineReplayBatchSource` as
the strategy's ``batch_source`` for each experience (the documented way to change
what the loop trains on), wrapping the strategy's own source.
"""

from __future__ import annotations

from typing import Callable, Dict, Optional

from torch import Tensor

from clreplay.replay.memory_plugin import MemoryPlugin, SeededMemoryPlugin
from clreplay.replay.mixing.online import OnlineReplayBatchSource
from clreplay.replay.policies.base import StoragePolicy
from clreplay.replay.policies.reservoir import ReservoirSamplingStoragePolicy
from clreplay.replay.storage.consistency import check_replicated


class OnlineReplayPlugin(SeededMemoryPlugin):
    """Online experience replay: one memory update per incoming mini-batch.

    For online continual learning (a single pass, small mini-batches, possibly
    many tiny experiences). Each step trains on the incoming mini-batch of
    ``train_mb_size`` samples plus ``batch_size_mem`` samples drawn from the
    memory; after the step the incoming samples are offered to the storage
    policy, so replay starts with the second step of the first experience.
    See :class:`~clreplay.replay.mixing.online.OnlineReplayBatchSource` for the
    exact batch composition. A method that stores more than samples overrides
    :meth:`stream_extras` (e.g. DER returns the logits of the stream samples).

    In a distributed run each step's global batch (stream and memory draws) is the
    same on every rank, which trains on its slice; the memory is updated from the
    whole global batch on every rank, with the extra columns of the stream samples
    gathered from the ranks that computed them, and checked to be the same on every
    rank after each update.

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
    >>> import torch
    >>> from clreplay.benchmarks import split_digits
    >>> from clreplay.training import Naive
    >>> replay, model = OnlineReplayPlugin(mem_size=100), torch.nn.Linear(64, 10)
    >>> optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    >>> strategy = Naive(model, optimizer, train_mb_size=10, plugins=[replay], seed=0)
    >>> strategy.train(split_digits().train_stream[0])
    >>> replay.storage_policy.n_seen, len(replay.ext_mem[0])
    (254, 100)
    """

    _seed_name = "online_replay"
    _state_name = "online replay"

    def __init__(
        self,
        mem_size: int = 200,
        storage_policy: Optional[StoragePolicy] = None,
        *,
        batch_size_mem: Optional[int] = None,
        seed: int | None = None,
        memory_transform: Optional[Callable[[Tensor], Tensor]] = None,
    ) -> None:
        MemoryPlugin.__init__(
            self, mem_size, storage_policy, batch_size_mem=batch_size_mem,
            memory_transform=memory_transform,
            default_policy=lambda size: ReservoirSamplingStoragePolicy({}, size),
        )
        self._init_seed(seed)
        self._source: Optional[OnlineReplayBatchSource] = None

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
        """Independent memory draws appended to each batch of the experience (1; DER++ takes 2)."""
        return 1

    def stream_extras(self, strategy, n: int) -> Optional[Dict[str, Tensor]]:
        """Extra columns for the ``n`` stream samples just trained on (the first ``n``
        rows of ``strategy.mb``), stored with them; None: computed by the columns' fill."""
        return None

    def after_training_iteration(self, strategy, **kwargs):
        """Store the stream samples just trained on (before a checkpoint can be taken)."""
        self._source.store_last()

    def after_training_exp(self, strategy, **kwargs):
        """Store the experience at once if it was never streamed (``train_epochs=0``)."""
        if self._source is not None and not self._source.streamed:
            self.storage_policy(strategy)
        self._source = None
        # Every step was checked lightly; every byte once per experience.
        check_replicated(self.storage_policy, strategy,
                         when=f"experience {strategy.experience.current_experience}")
