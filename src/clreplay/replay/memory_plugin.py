"""MemoryPlugin: what every replay plugin and rehearsal method shares: a memory kept by a
storage policy, and a random stream of its own."""

from __future__ import annotations

from typing import Callable, Mapping, Optional

import torch
from torch import Tensor

from clreplay import distributed as idist
from clreplay._seeding import SeedStream
from clreplay._validation import check_optional_positive_int, check_positive_int
from clreplay.data.minibatch import segment_counts
from clreplay.replay.mixing.draws import check_memory_transform
from clreplay.replay.policies.base import StoragePolicy, check_storage_policy
from clreplay.replay.storage.consistency import check_replicated
from clreplay.training.plugin import StrategyPlugin


class MemoryPlugin(StrategyPlugin):
    """Base of the replay plugins: ``mem_size`` samples kept by ``storage_policy``.

    It checks the options every replay plugin has (``mem_size``, the policy, whose
    ``mem_size`` must match, ``batch_size_mem``, ``memory_transform``), builds
    ``default_policy(mem_size)`` when no policy is given, hands the run context to
    the policy once (:meth:`setup`), exposes the spec's ``ext_mem`` and saves the
    memory in its state. ``generator`` draws from the run's stream named
    ``seed_name`` (or from ``seed``), and is saved with the memory. A subclass adds
    its own state through ``_extra_state`` / ``_load_extra_state``.
    """

    #: The run context's stream the plugin's own draws come from.
    seed_name = "replay"
    #: How the plugin's state is named in errors.
    _state_name = "replay plugin"

    def __init__(
        self,
        mem_size: int,
        storage_policy: Optional[StoragePolicy],
        *,
        default_policy: Callable[[int], StoragePolicy],
        batch_size_mem: Optional[int] = None,
        memory_transform: Optional[Callable[[Tensor], Tensor]] = None,
        seed: Optional[int] = None,
    ) -> None:
        self.mem_size = check_positive_int("mem_size", mem_size)
        self.batch_size_mem = check_optional_positive_int("batch_size_mem", batch_size_mem)
        self.memory_transform = check_memory_transform(memory_transform)
        if storage_policy is None:
            storage_policy = default_policy(self.mem_size)
        self.storage_policy = check_storage_policy(storage_policy, self.mem_size)
        self.rng = SeedStream(self.seed_name, seed)

    @property
    def ext_mem(self):
        """The memory: the storage policy's dict from group key to stored samples."""
        return self.storage_policy.ext_mem

    @property
    def generator(self):
        """The plugin's own generator (its memory draws)."""
        return self.rng.generator

    def setup(self, context) -> None:
        """Take the run's stream for the plugin's draws; hand the context to the policy."""
        self.rng.setup(context)
        self.storage_policy.setup(context)

    def update_rows(self, strategy, segment, values: Mapping[str, Tensor], keep: Tensor) -> None:
        """Change stored columns of the rows of ``segment`` (a memory draw of ``strategy.mb``,
        whose rows are distinct) where ``keep`` holds; ``values`` has one row per row of
        the segment. The other rows are written back as they are, so nothing is read on
        the host. Over several processes each rank holds a slice of the segment: the
        slices are gathered (in rank order, the segment's order) so that every rank
        applies the same update to its replica."""
        rows = segment.rows
        if idist.is_distributed(strategy):
            counts = segment_counts(strategy.mb, segment.name)  # known on every rank: nothing read on the host
            rows, keep = idist.all_gather(rows, counts), idist.all_gather(keep, counts)
            values = {name: idist.all_gather(v.contiguous(), counts) for name, v in sorted(values.items())}
        if not len(rows):
            return
        store = self.storage_policy.store
        merged = {}
        for name, new in values.items():
            old = store.read(name, rows).to(new.device, new.dtype)
            mask = keep.to(new.device).view(-1, *([1] * (new.dim() - 1)))
            merged[name] = torch.where(mask, new, old)
        store.update(rows, merged)
        if idist.is_distributed(strategy):
            self.check_replicated(strategy, f"the update of replayed rows at step "
                                  f"{strategy.clock.train_exp_iterations + 1} of experience "
                                  f"{strategy.experience.current_experience}", full=False)

    def check_replicated(self, strategy, when: str, *, full: bool = True) -> None:
        """In a distributed run, stop every rank with a
        :class:`~clreplay.replay.storage.consistency.MemoryMismatchError` unless every rank
        holds the same memory (``when`` names the update checked; ``full=False``: the light
        check of a step's writes). Nothing to check in one process."""
        check_replicated(self.storage_policy, strategy, when=when, full=full)

    # -------------------------------------------------------------- persistence
    def state_dict(self) -> dict:
        return {"mem_size": self.mem_size, "storage_policy": self.storage_policy.state_dict(),
                "rng": self.rng.state_dict(), **self._extra_state()}

    def load_state_dict(self, state: dict) -> None:
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict, got {type(state).__name__}")
        expected = {"mem_size", "storage_policy", "rng", *self._extra_state()}
        if set(state) != expected:
            raise KeyError(f"{self._state_name} state must have keys {sorted(expected)}, got {sorted(state)}")
        if state["mem_size"] != self.mem_size:
            raise ValueError(
                f"mem_size of the saved replay memory ({state['mem_size']}) differs from "
                f"this plugin's mem_size ({self.mem_size})"
            )
        self._before_load(state)
        self.storage_policy.load_state_dict(state["storage_policy"])
        self.rng.load_state_dict(state["rng"])
        self._load_extra_state(state)

    def _before_load(self, state: dict) -> None:
        """Prepare for a saved memory (e.g. register the columns it holds)."""

    def _extra_state(self) -> dict:
        return {}

    def _load_extra_state(self, state: dict) -> None:
        pass
