"""RunContext: what every component of a run learns once, at setup."""

from __future__ import annotations

from dataclasses import dataclass, replace

from clreplay._seeding import derive_seed
from clreplay._validation import check_int


@dataclass(frozen=True)
class RunContext:
    """The run's seed, this process's rank and the number of processes.

    A strategy builds one from its ``seed`` and hands it to every plugin once,
    through ``plugin.setup(context)``; plugins pass it on to their storage
    policies and selection strategies. Each component draws its own independent
    stream from it with :meth:`seed_for`, so one seed fixes the whole run and
    two components never share random numbers. ``rank`` and ``world_size`` are
    0 and 1 in a single process.

    >>> context = RunContext(seed=3)
    >>> context.seed_for("storage_policy") == RunContext(seed=3).seed_for("storage_policy")
    True
    >>> context.seed_for("storage_policy") != context.seed_for("selection_strategy")
    True
    """

    seed: int = 0
    rank: int = 0
    world_size: int = 1

    def __post_init__(self) -> None:
        check_int("seed", self.seed, minimum=0)
        check_int("world_size", self.world_size, minimum=1)
        rank = check_int("rank", self.rank, minimum=0)
        if rank >= self.world_size:
            raise ValueError(f"rank must be < world_size ({self.world_size}), got {rank}")

    def seed_for(self, name: str) -> int:
        """The seed of the component ``name``: independent of every other name's."""
        return derive_seed(self.seed, name)

    def with_seed(self, seed: int) -> "RunContext":
        """The same processes, another root seed (a component with a seed of its own)."""
        return replace(self, seed=seed)
