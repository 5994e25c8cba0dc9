"""One seeding path: every random stream of a run comes from its seed, by name.

A run has one seed. Each component draws from an independent stream of it, named
after what it is for (``"shuffle"`` for the training batches, ``"class_order"``,
``"init"`` for the model's weights, ``"augment"``, and each policy, selection
strategy and method its own): :meth:`RunContext.seed_for` hashes the seed with the
name. The library never touches torch's, numpy's or Python's global generators.
"""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Iterable, Iterator, Optional, Sequence

import torch

from clreplay._validation import check_int, check_seed


def derive_seed(seed: int, name: str) -> int:
    """A seed for the stream ``name`` derived from a parent ``seed``.

    Hashing keeps the streams of different names independent while the whole run
    still hangs off one number.

    >>> derive_seed(0, "policy") == derive_seed(0, "policy")
    True
    >>> derive_seed(0, "policy") != derive_seed(0, "selection")
    True
    """
    digest = hashlib.blake2b(f"{int(seed)}:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1  # fits a signed 64-bit int


def make_generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed``."""
    generator = torch.Generator()
    generator.manual_seed(int(seed))
    return generator


@contextmanager
def global_rng_seeded(seed: int, *, devices: Sequence[int] = ()) -> Iterator[None]:
    """Run the block with torch's global generators (the CPU's and those of the CUDA
    ``devices``) seeded with ``seed``, then put the caller's states back: for code that
    draws only from them, such as the layers' ``reset_parameters()``."""
    with torch.random.fork_rng(devices=list(devices)):
        torch.manual_seed(int(seed))
        yield


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
    >>> context.seed_for("storage_policy") != context.seed_for("shuffle")
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
        """The seed of the stream ``name``: independent of every other name's."""
        return derive_seed(self.seed, name)

    def with_seed(self, seed: int) -> "RunContext":
        """The same processes, another root seed (a component with a seed of its own)."""
        return replace(self, seed=seed)


class SeedStream:
    """A component's own random stream: a CPU generator seeded with ``seed``, or, when
    ``seed`` is None, with the run context's stream ``name`` once the component is set
    up (seed 0 for a component driven by hand, never set up). The generator is
    created on first use; its state is saved with the component's.

    >>> stream = SeedStream("der")
    >>> stream.setup(RunContext(seed=5))
    >>> stream.seed == RunContext(seed=5).seed_for("der")
    True
    >>> SeedStream("der", 7).generator.initial_seed()
    7
    """

    def __init__(self, name: str, seed: Optional[int] = None) -> None:
        self.name = name
        self.seed = check_seed("seed", seed)
        self.explicit = self.seed is not None
        self.context: Optional[RunContext] = None
        self._generator: Optional[torch.Generator] = None

    @property
    def generator(self) -> torch.Generator:
        if self._generator is None:
            self._generator = make_generator(0 if self.seed is None else self.seed)
        return self._generator

    def setup(self, context: RunContext) -> None:
        """Take the run context: derive the seed if none was given and none is in use."""
        if self.seed is None and self._generator is None:
            self.seed = context.seed_for(self.name)
        self.context = context

    def child_context(self) -> Optional[RunContext]:
        """The context sub-components draw from: this stream's own seed if it was given one,
        else the run's (None before setup)."""
        if self.explicit:
            return (self.context or RunContext()).with_seed(self.seed)
        return self.context

    def state_dict(self) -> dict:
        return {"seed": self.seed,
                "generator": None if self._generator is None else self._generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.seed = state["seed"]
        if state["generator"] is None:
            self._generator = None
        else:  # in place: whoever holds the generator (a batch source) draws on from the state
            self.generator.set_state(state["generator"])


class Seeded:
    """Mixin for components with a seeded generator of their own (policies, random selection).

    ``self.rng`` is their :class:`SeedStream` (named after the class's ``_seed_name``);
    sub-components (:meth:`_seeded_children`, e.g. a policy's selection strategy) are
    set up with the nearest explicit seed: the component's own if it was given one,
    else the run context's.
    """

    _seed_name = "component"

    def _init_seed(self, seed: int | None) -> None:
        self.rng = SeedStream(self._seed_name, seed)
        self._setup_children()

    @property
    def seed(self) -> Optional[int]:
        return self.rng.seed

    @property
    def context(self) -> Optional[RunContext]:
        return self.rng.context

    @property
    def generator(self) -> torch.Generator:
        return self.rng.generator

    def _seeded_children(self) -> Iterable["Seeded"]:
        return ()

    def _setup_children(self) -> None:
        context = self.rng.child_context()
        if context is None:
            return
        for child in self._seeded_children():
            setup = getattr(child, "setup", None)
            if setup is not None:
                setup(context)

    def setup(self, context: RunContext) -> None:
        """Take the run context: derive the seed if none was given and none is in use."""
        self.rng.setup(context)
        self._setup_children()

    def _seed_state(self) -> dict:
        return self.rng.state_dict()

    def _load_seed_state(self, state: dict) -> None:
        self.rng.load_state_dict(state)
