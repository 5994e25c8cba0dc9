"""MemoryPlugin: what every replay plugin shares (a memory kept by a storage policy);
SeededMemoryPlugin: the same with a generator of its own (online replay, A-GEM, GDumb)."""

from __future__ import annotations

from typing import Callable, Optional

from torch import Tensor

from clreplay._seeding import Seeded
from clreplay._validation import check_optional_positive_int, check_positive_int
from clreplay.replay.mixing.draws import check_memory_transform
from clreplay.replay.policies.base import StoragePolicy, check_storage_policy
from clreplay.training.plugin import StrategyPlugin


class MemoryPlugin(StrategyPlugin):
    """Base of the replay plugins: ``mem_size`` samples kept by ``storage_policy``.

    It checks the options every replay plugin has (``mem_size``, the policy, whose
    ``mem_size`` must match, ``batch_size_mem``, ``memory_transform``), builds
    ``default_policy(mem_size)`` when no policy is given, hands the run context to
    the policy once (:meth:`setup`), exposes the spec's ``ext_mem`` and saves the
    memory in its state. A subclass adds its own state through ``_extra_state``.
    """

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
    ) -> None:
        self.mem_size = check_positive_int("mem_size", mem_size)
        self.batch_size_mem = check_optional_positive_int("batch_size_mem", batch_size_mem)
        self.memory_transform = check_memory_transform(memory_transform)
        if storage_policy is None:
            storage_policy = default_policy(self.mem_size)
        self.storage_policy = check_storage_policy(storage_policy, self.mem_size)

    @property
    def ext_mem(self):
        """The memory: the storage policy's dict from group key to stored samples."""
        return self.storage_policy.ext_mem

    def setup(self, context) -> None:
        """Hand the run context to the storage policy (and its selection strategy)."""
        self.storage_policy.setup(context)

    # -------------------------------------------------------------- persistence
    def state_dict(self) -> dict:
        return {"mem_size": self.mem_size, "storage_policy": self.storage_policy.state_dict(),
                **self._extra_state()}

    def load_state_dict(self, state: dict) -> None:
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict, got {type(state).__name__}")
        expected = {"mem_size", "storage_policy", *self._extra_state()}
        if set(state) != expected:
            raise KeyError(f"{self._state_name} state must have keys {sorted(expected)}, got {sorted(state)}")
        if state["mem_size"] != self.mem_size:
            raise ValueError(
                f"mem_size of the saved replay memory ({state['mem_size']}) differs from "
                f"this plugin's mem_size ({self.mem_size})"
            )
        self.storage_policy.load_state_dict(state["storage_policy"])
        self._load_extra_state(state)

    def _extra_state(self) -> dict:
        return {}

    def _load_extra_state(self, state: dict) -> None:
        pass


class SeededMemoryPlugin(Seeded, MemoryPlugin):
    """A :class:`MemoryPlugin` that draws from a generator of its own (``self.generator``),
    seeded from ``seed`` or, when None, from the run context's stream named after
    the class's ``_seed_name``; the generator is saved with the memory (``rng``).
    Subclasses call :meth:`_init_seed` after ``MemoryPlugin.__init__``.
    """

    def setup(self, context) -> None:
        """Take the run's seed for the plugin's draws; hand the context to the policy."""
        Seeded.setup(self, context)
        MemoryPlugin.setup(self, context)

    def _extra_state(self) -> dict:
        return {"rng": self._seed_state()}

    def _load_extra_state(self, state: dict) -> None:
        self._load_seed_state(state["rng"])
