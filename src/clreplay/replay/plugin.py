"""ReplayPlugin: experience replay inside a training strategy."""

from __future__ import annotations

from typing import Callable, Optional

from torch import Tensor

from clreplay._validation import check_optional_positive_int, check_positive_int
from clreplay.replay.mixing.balanced import AppendMemoryBatchSource, ReplayBatchSource
from clreplay.replay.mixing.draws import check_memory_transform, group_by_task
from clreplay.replay.policies.base import StoragePolicy, check_storage_policy
from clreplay.replay.policies.experience_balanced import ExperienceBalancedStoragePolicy
from clreplay.replay.storage.consistency import check_replicated
from clreplay.training.plugin import StrategyPlugin


class ReplayPlugin(StrategyPlugin):
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

    A strategy that builds its own batch source (overrides
    ``make_train_batch_source``) keeps it: each of its batches is followed by
    memory samples (:class:`~clreplay.replay.mixing.balanced.AppendMemoryBatchSource`).

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

    def __init__(
        self,
        mem_size: int = 200,
        storage_policy: Optional[StoragePolicy] = None,
        *,
        batch_size_mem: Optional[int] = None,
        memory_transform: Optional[Callable[[Tensor], Tensor]] = None,
        task_balanced: bool = False,
    ) -> None:
        self.mem_size = check_positive_int("mem_size", mem_size)
        self.batch_size_mem = check_optional_positive_int("batch_size_mem", batch_size_mem)
        self.memory_transform = check_memory_transform(memory_transform)
        if not isinstance(task_balanced, bool):
            raise TypeError(f"task_balanced must be a bool, got {task_balanced!r}")
        self.task_balanced = task_balanced
        if storage_policy is None:
            storage_policy = ExperienceBalancedStoragePolicy(
                ext_mem={}, mem_size=self.mem_size, adaptive_size=True
            )
        self.storage_policy = check_storage_policy(storage_policy, self.mem_size)

    @property
    def ext_mem(self):
        """The memory: the storage policy's dict from group key to stored samples."""
        return self.storage_policy.ext_mem

    def setup(self, context) -> None:
        """Hand the run context to the storage policy (and its selection strategy)."""
        self.storage_policy.setup(context)

    def before_training_exp(self, strategy, num_workers: int = 0, shuffle: bool = True, **kwargs):
        """Make the strategy's mini-batches mix the current data with the memory.

        (``num_workers`` is the spec's parameter; batches are gathered by tensor
        indexing in the training process, so no worker is started.)
        """
        groups = self.storage_policy.replay_groups()
        if not groups:
            return
        if self.task_balanced:
            groups = group_by_task(list(groups.values()))
        options = dict(batch_size_mem=self.batch_size_mem, shuffle=shuffle, generator=strategy.generator,
                       memory_transform=self.memory_transform, store=self.storage_policy.store)
        if strategy.uses_default_batch_source():
            source = ReplayBatchSource(strategy.experience.dataset, list(groups.values()),
                                       strategy.train_mb_size, **options)
        else:
            source = AppendMemoryBatchSource(strategy.batch_source, list(groups.values()), **options)
        strategy.batch_source = source

    def after_training_exp(self, strategy, **kwargs):
        """Store samples of the experience just trained on (in a distributed run, then
        check that every rank holds the same memory)."""
        self.storage_policy(strategy)
        check_replicated(self.storage_policy, strategy,
                         when=f"experience {strategy.experience.current_experience}")

    def state_dict(self) -> dict:
        return {"mem_size": self.mem_size, "storage_policy": self.storage_policy.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict, got {type(state).__name__}")
        if set(state) != {"mem_size", "storage_policy"}:
            raise KeyError(
                f"replay plugin state must have keys ['mem_size', 'storage_policy'], got {sorted(state)}"
            )
        if state.get("mem_size") != self.mem_size:
            raise ValueError(
                f"mem_size of the saved replay memory ({state.get('mem_size')}) differs from "
                f"this plugin's mem_size ({self.mem_size})"
            )
        self.storage_policy.load_state_dict(state["storage_policy"])
