"""OnlineReplayPlugin: the memory is updated from every incoming mini-batch, replay starts at once.

It extends the strategy's ``batch_source`` for each experience with an
:class:`~clreplay.replay.mixing.online.OnlineReplayBatchSource` (the documented way
to change what the loop trains on), and after each step offers the stream rows it
just trained on to the storage policy. The rehearsal methods that update their
memory every step (DER, DER++, ER-ACE) are this plugin with a loss of their own.
"""

from __future__ import annotations

from typing import Callable, Dict, Mapping, Optional

from torch import Tensor

from clreplay import distributed as idist
from clreplay.data.dataset import ClassificationDataset
from clreplay.data.minibatch import segment_counts
from clreplay.replay.memory_plugin import MemoryPlugin
from clreplay.replay.mixing.draws import LazyMapping
from clreplay.replay.mixing.online import OnlineReplayBatchSource
from clreplay.replay.policies.base import StoragePolicy
from clreplay.replay.policies.reservoir import ReservoirSamplingStoragePolicy
from clreplay.replay.policies.streaming import StreamingStoragePolicy
from clreplay.replay.storage.consistency import ReplicaWatch, check_replicated


class OnlineReplayPlugin(MemoryPlugin):
    """Online experience replay: one memory update per incoming mini-batch.

    For online continual learning (small mini-batches, possibly many tiny
    experiences). Each step trains on the incoming mini-batch of
    ``train_mb_size`` samples plus ``batch_size_mem`` distinct samples drawn
    uniformly from the whole memory (the ``"online_replay"`` segment of
    ``strategy.mb``); after the step the incoming samples (the ``"stream"``
    segment) are offered to the storage policy, so replay starts with the second
    step of the first experience. By default each sample is offered once, in the
    first epoch (the online-learning protocol); ``store_every_epoch=True`` offers
    the stream at every epoch, as mammoth's methods do.

    A method built on it names its draws (:attr:`draws`: one segment each per
    batch, e.g. DER++'s ``("replay", "replay_ce")``) and what it stores with each
    sample beyond the sample itself (:meth:`stored_columns`, e.g. DER's logits).

    In a distributed run each step's global batch (stream and memory draws) is the
    same on every rank, which trains on its slice; the memory is updated from the
    whole global batch on every rank, with the stored columns of the stream rows
    gathered from the ranks that computed them, and checked to be the same on every
    rank after each update.

    Parameters
    ----------
    mem_size: the total number of samples the memory stores.
    storage_policy: how samples are stored; default
        ``ReservoirSamplingStoragePolicy(ext_mem={}, mem_size=mem_size)``. Any policy
        works; a :class:`~clreplay.replay.policies.StreamingStoragePolicy`
        (reservoir, parametric) is updated from the batch tensors directly, others
        are called with each mini-batch as an experience (much slower).
    batch_size_mem: memory samples per draw and step; default ``train_mb_size``.
    seed: seeds the draws of memory samples; None derives it from the strategy's seed.
    memory_transform: a callable applied to the stacked memory samples of each
        batch only (e.g. augmentation of replayed samples).
    store_every_epoch: offer the stream to the memory at every epoch, not only the first.

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
    (251, 100)
    """

    seed_name = "online_replay"
    _state_name = "online replay"
    #: The memory draws appended to each batch, one segment each.
    draws = ("online_replay",)

    def __init__(
        self,
        mem_size: int = 200,
        storage_policy: Optional[StoragePolicy] = None,
        *,
        batch_size_mem: Optional[int] = None,
        seed: int | None = None,
        memory_transform: Optional[Callable[[Tensor], Tensor]] = None,
        store_every_epoch: bool = False,
    ) -> None:
        super().__init__(
            mem_size, storage_policy, batch_size_mem=batch_size_mem, memory_transform=memory_transform,
            default_policy=lambda size: ReservoirSamplingStoragePolicy({}, size), seed=seed,
        )
        if not isinstance(store_every_epoch, bool):
            raise TypeError(f"store_every_epoch must be a bool, got {store_every_epoch!r}")
        self.store_every_epoch = store_every_epoch
        self._source: Optional[OnlineReplayBatchSource] = None
        self._watch = ReplicaWatch()
        self._streamed = False
        self._streaming = isinstance(self.storage_policy, StreamingStoragePolicy)  # (an ABC check: slow)

    def before_training_exp(self, strategy, **kwargs):
        """Extend the strategy's batches with memory draws, storing as it goes."""
        self._source = OnlineReplayBatchSource(
            strategy.batch_source, self.storage_policy, self.draw_size(strategy),
            memory_generator=self.generator, draws=self.draws, memory_transform=self.memory_transform,
        )
        strategy.batch_source = self._source
        self._streamed = False

    def draw_size(self, strategy) -> int:
        """Memory samples in each draw: ``batch_size_mem``, by default ``train_mb_size``
        (a method that draws candidates to choose from, as MIR, draws more)."""
        return self.batch_size_mem or strategy.train_mb_size

    def stored_columns(self, strategy) -> Optional[Mapping[str, Tensor]]:
        """What the stream rows of ``strategy.mb`` (the step just taken, before its update)
        store beyond the samples: ``{column: values}``, one row per stream row, for the
        columns the method registered on the store. None: nothing (the default)."""
        return None

    def after_training_iteration(self, strategy, **kwargs):
        """Offer the stream rows just trained on (before a checkpoint can be taken)."""
        source = self._source
        batch, source.last = source.last, None
        self._streamed = True
        if batch is None or not (self.store_every_epoch or strategy.clock.train_exp_epochs == 0):
            return
        stream = batch.stream
        x, y, t = batch.x[stream.slice], batch.y[stream.slice], batch.t[stream.slice]
        # Computed only when the policy keeps one of the samples: a full reservoir keeps
        # mem_size / seen of them, so most steps of a long stream store nothing.
        columns = LazyMapping(lambda: self._columns(strategy))
        policy = self.storage_policy
        if self._streaming:
            changed = policy.update_from_batch(strategy, x, y, t, columns=columns) is not False
        else:
            policy(_BatchAsExperience(strategy, _Batch(ClassificationDataset(x, y, t), strategy.experience)),
                   columns=columns)
            changed = True
        if changed:
            source.memory_changed()
        self._watch.step(policy, strategy, strategy.clock.train_exp_iterations)

    def after_training_epoch(self, strategy, **kwargs):
        """The steps' light checks of the replicated memory, read once an epoch."""
        self._watch.report(self.storage_policy, strategy,
                           where=f"of experience {strategy.experience.current_experience + 1}")

    def _columns(self, strategy) -> Optional[Dict[str, Tensor]]:
        """:meth:`stored_columns` for the whole global batch: over several processes each
        rank computed its share of the stream rows (the first of its slice, in rank
        order: the stream's order), gathered here."""
        local = self.stored_columns(strategy)
        if local is None or not idist.is_distributed(strategy):
            return local
        counts = segment_counts(strategy.mb, "stream")  # known on every rank: nothing read on the host
        return {name: idist.all_gather(values.contiguous(), counts) for name, values in sorted(local.items())}

    def after_training_exp(self, strategy, **kwargs):
        """Store the experience at once if it was never streamed (``train_epochs=0``)."""
        if not self._streamed:
            self.storage_policy(strategy)
        self._source = None
        # Every step was checked lightly; every byte once per experience.
        check_replicated(self.storage_policy, strategy,
                         when=f"experience {strategy.experience.current_experience + 1}")


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

