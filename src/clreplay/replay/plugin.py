"""ReplayPlugin: experience replay inside a training strategy."""

from __future__ import annotations

from typing import Callable, Optional

from torch import Tensor

from clreplay.data.batching import DatasetBatchSource
from clreplay.replay.memory_plugin import MemoryPlugin
from clreplay.replay.mixing.balanced import AppendMemoryBatchSource, ReplayBatchSource
from clreplay.replay.mixing.draws import group_by_task
from clreplay.replay.policies.base import StoragePolicy
from clreplay.replay.policies.experience_balanced import ExperienceBalancedStoragePolicy
from clreplay.replay.storage.consistency import check_replicated


class ReplayPlugin(MemoryPlugin):
    """Experience replay plugin.

    Handles an external memory filled with samples of past experiences through
    ``before_training_exp`` and ``after_training_exp``. ``before_training_exp``
    makes the strategy's mini-batches mix the training data of the current
    experience with the memory, balanced so that each mini-batch holds the same
    number of samples (±1) from every experience: the current one and each one in
    memory. ``after_training_exp`` adds new samples to the memory through the
    storage policy.

    Parameters
    ----------
    mem_size: the total number of samples the memory stores.
    storage_policy: how samples are stored; default
        ``ExperienceBalancedStoragePolicy(ext_mem={}, mem_size=mem_size, adaptive_size=True)``.
        Its ``mem_size`` must equal ``mem_size``; the plugin shares its ``ext_mem``.
    batch_size_mem: if set, each mini-batch is ``train_mb_size`` current samples
        plus ``batch_size_mem`` memory samples (split evenly over the memory's
        experiences, and never more than the memory holds: no sample is repeated in
        a batch) instead of ``train_mb_size`` samples balanced over experiences.
    memory_transform: a callable applied to the stacked memory samples of each
        mini-batch only (e.g. augmentation of replayed samples); current samples
        are never passed to it.
    task_balanced: balance the memory part of each mini-batch over task labels
        (the memory regrouped by task label) instead of over experiences.

    Policies and selection strategies created without a seed draw from the run's
    seed (handed over once, through :meth:`setup`), so one seed fixes the whole run.
    In a distributed run every rank holds the whole memory, updated alike from the
    whole experience, and checked to be the same on every rank after each update
    (:func:`~clreplay.replay.storage.consistency.check_replicated`).

    The replayed rows of each mini-batch form its ``"replay"`` segment
    (``strategy.mb.segment("replay")``: their store rows and the store's other
    columns). A strategy that builds its own batch source (overrides
    ``make_train_batch_source``), or whose batches another plugin already extends in
    this experience, keeps them: each of its batches is followed by memory samples
    (:class:`~clreplay.replay.mixing.balanced.AppendMemoryBatchSource`).

    Example
    -------
    >>> import torch
    >>> from clreplay.benchmarks import split_digits
    >>> from clreplay.training import Naive
    >>> bench = split_digits()
    >>> model = torch.nn.Linear(64, 10)
    >>> replay = ReplayPlugin(mem_size=100)
    >>> strategy = Naive(model, torch.optim.SGD(model.parameters(), lr=0.1),
    ...                  train_mb_size=32, plugins=[replay], seed=0)
    >>> for experience in bench.train_stream[:2]:
    ...     strategy.train(experience)
    >>> sorted(replay.ext_mem), [len(group) for group in replay.ext_mem.values()]
    ([0, 1], [50, 50])
    """

    #: The segment the replayed rows form in each mini-batch.
    segment = "replay"

    def __init__(
        self,
        mem_size: int = 200,
        storage_policy: Optional[StoragePolicy] = None,
        *,
        batch_size_mem: Optional[int] = None,
        memory_transform: Optional[Callable[[Tensor], Tensor]] = None,
        task_balanced: bool = False,
    ) -> None:
        super().__init__(
            mem_size, storage_policy, batch_size_mem=batch_size_mem, memory_transform=memory_transform,
            default_policy=lambda size: ExperienceBalancedStoragePolicy(ext_mem={}, mem_size=size,
                                                                        adaptive_size=True),
        )
        if not isinstance(task_balanced, bool):
            raise TypeError(f"task_balanced must be a bool, got {task_balanced!r}")
        self.task_balanced = task_balanced

    def before_training_exp(self, strategy, num_workers: int = 0, shuffle: bool = True, **kwargs):
        """Make the strategy's mini-batches mix the current data with the memory.

        (``num_workers`` is the spec's parameter; batches are gathered by tensor
        indexing in the training process, so no worker is started.)
        """
        groups = self.storage_policy.replay_groups()
        data = self.training_data(strategy)
        own_data = data is not strategy.experience.dataset
        if not groups:
            if own_data:  # no memory yet, but not the whole experience either
                strategy.batch_source = DatasetBatchSource(data, strategy.train_mb_size, shuffle=shuffle,
                                                           generator=strategy.generator)
            return
        if self.task_balanced:
            groups = group_by_task(list(groups.values()))
        options = dict(batch_size_mem=self.batch_size_mem, shuffle=shuffle, generator=strategy.generator,
                       memory_transform=self.memory_transform, store=self.storage_policy.store,
                       name=self.segment)
        # A plain object driving the plugin by hand has no batch source of its own. A
        # strategy whose batches are its own, or already extended by another plugin in
        # this experience, keeps them: memory samples are appended to each.
        default = getattr(strategy, "uses_default_batch_source", None)
        extended = getattr(strategy, "batch_source_replaced", False)
        if (default is None or default()) and not extended:
            source = ReplayBatchSource(data, list(groups.values()),
                                       strategy.train_mb_size, **options)
        else:
            if own_data:
                raise ValueError(
                    f"{type(self).__name__} trains on part of the experience, which needs the strategy's "
                    "default batch source; got a strategy whose batches are its own or already extended")
            source = AppendMemoryBatchSource(strategy.batch_source, list(groups.values()), **options)
        strategy.batch_source = source

    def training_data(self, strategy):
        """The samples of the experience the batches are made of: all of them (a method that
        holds some out, as BiC's validation samples, returns a subset)."""
        return strategy.experience.dataset

    def after_training_exp(self, strategy, **kwargs):
        """Store samples of the experience just trained on (in a distributed run, then
        check that every rank holds the same memory)."""
        self.storage_policy(strategy)
        check_replicated(self.storage_policy, strategy,
                         when=f"experience {strategy.experience.current_experience + 1}")
