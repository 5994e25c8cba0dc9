"""Explicit seeds and private generators: the library never touches global RNGs."""

from __future__ import annotations

import hashlib

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

    ``seed=None`` defers the choice: a :class:`~clreplay.ReplayPlugin` fills it
    in from the strategy's seed with :meth:`resolve_seed`; a component driven by
    hand falls back to 0. The generator is created on first use, so the seed
    can be resolved any time before that.
    """

    _seed_name = "component"

    def _init_seed(self, seed: int | None) -> None:
        self.seed = check_seed("seed", seed)
        self._generator: torch.Generator | None = None

    @property
    def generator(self) -> torch.Generator:
        if self._generator is None:
            self._generator = make_generator(0 if self.seed is None else self.seed)
        return self._generator

    def resolve_seed(self, parent_seed: int | None) -> None:
        """Derive the seed from ``parent_seed`` if none was given and none is in use."""
        if self.seed is None and self._generator is None and parent_seed is not None:
            self.seed = derive_seed(parent_seed, self._seed_name)

    def _seed_state(self) -> dict:
        return {
            "seed": self.seed,
            "generator": None if self._generator is None else self._generator.get_state(),
        }

    def _load_seed_state(self, state: dict) -> None:
        self.seed = state["seed"]
        self._generator = None
        if state["generator"] is not None:
            self.generator.set_state(state["generator"])
