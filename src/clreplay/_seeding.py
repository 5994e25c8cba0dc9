"""Explicit seeds and private generators: the library never touches global RNGs."""

from __future__ import annotations

import hashlib
from typing import Iterable

import torch

from clreplay._validation import check_seed


def derive_seed(seed: int, name: str) -> int:
    """A seed for the component ``name`` derived from a parent ``seed``.

    Hashing keeps the streams of different components independent while the
    whole run still hangs off one number.

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


class Seeded:
    """Mixin for components that own a seeded ``torch.Generator``.

    ``seed=None`` defers the choice to :meth:`setup`, which a strategy calls once
    with its run context (through the plugin that owns the component): the seed
    is then the context's stream for ``_seed_name``. A component driven by hand,
    never set up, falls back to seed 0. The generator is created on first use.

    Sub-components (:meth:`_seeded_children`, e.g. a policy's selection strategy)
    draw from the nearest explicit seed: the component's own if it was given one,
    else the run context's.
    """

    _seed_name = "component"

    def _init_seed(self, seed: int | None) -> None:
        self.seed = check_seed("seed", seed)
        self._explicit_seed = self.seed is not None
        self._generator: torch.Generator | None = None
        self.context = None
        self._setup_children()

    def _seeded_children(self) -> Iterable["Seeded"]:
        return ()

    def _child_context(self):
        """The context sub-components draw from: the own seed if given, else the run's."""
        if self._explicit_seed:
            from clreplay.training.context import RunContext

            return (self.context or RunContext()).with_seed(self.seed)
        return self.context

    def _setup_children(self) -> None:
        context = self._child_context()
        if context is None:
            return
        for child in self._seeded_children():
            setup = getattr(child, "setup", None)
            if setup is not None:
                setup(context)

    @property
    def generator(self) -> torch.Generator:
        if self._generator is None:
            self._generator = make_generator(0 if self.seed is None else self.seed)
        return self._generator

    def setup(self, context) -> None:
        """Take the run context: derive the seed if none was given and none is in use."""
        if self.seed is None and self._generator is None:
            self.seed = context.seed_for(self._seed_name)
        self.context = context
        self._setup_children()

    def _seed_state(self) -> dict:
        return {
            "seed": self.seed,
            "generator": None if self._generator is None else self._generator.get_state(),
        }

    def _load_seed_state(self, state: dict) -> None:
        self.seed = state["seed"]
        if state["generator"] is None:
            self._generator = None
        else:  # in place: whoever holds the generator (a batch source) draws on from the state
            self.generator.set_state(state["generator"])
