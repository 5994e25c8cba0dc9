"""ReservoirSamplingStoragePolicy: a uniform sample of everything seen so far."""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch
from torch import Tensor

from clreplay.data.dataset import ClassificationDataset
from clreplay.replay.policies.base import experience_of
from clreplay.replay.policies.reservoir_draws import ReplacementDraws
from clreplay.replay.policies.streaming import StreamingStoragePolicy
from clreplay.replay.storage.store import GroupPlan


class ReservoirSamplingStoragePolicy(StreamingStoragePolicy):
    """Classic reservoir sampling over every sample ever seen, in one group.

    Samples are taken in the order they arrive (an experience in its dataset
    order, or mini-batch by mini-batch through :meth:`update_from_batch`). The
    ``i``-th sample (counting from 0) fills row ``i`` while the memory is not
    full; after that it replaces row ``j = floor(u * (i + 1))`` if ``j < mem_size``,
    ``u`` uniform in [0, 1) from the policy's generator (53 random bits, so the
    choice is uniform up to 2**-53). Hence each of the ``n`` samples seen so far
    is in memory with probability ``mem_size / n`` (Vitter's algorithm R), and
    feeding a stream in one piece or in mini-batches gives the same memory.

    The memory is one group, ``ext_mem[0]``: a view of the store's rows
    ``0..filled-1``, overwritten in place (in RAM, where rows are allocated as the
    memory fills, or in memory-mapped files in ``memmap_dir``).

    Parameters
    ----------
    ext_mem: the replay memory dict (samples already in it are adopted as the
        first ones seen).
    mem_size: the most samples the memory holds.
    seed: seeds the replacement draws (see :class:`~clreplay.StoragePolicy`).
    memmap_dir: a folder to keep the stored samples in memory-mapped files, for
        memories larger than RAM; None keeps them in RAM. Same results either way.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> from clreplay.benchmarks import Experience
    >>> policy = ReservoirSamplingStoragePolicy({}, mem_size=10, seed=0)
    >>> for i in range(3):
    ...     data = ClassificationDataset(torch.randn(100, 2), torch.full((100,), i))
    ...     policy(SimpleNamespace(experience=Experience(data, i, [i])))
    >>> policy.n_seen, len(policy.ext_mem[0])
    (300, 10)
    """

    name = "reservoir"
    summary = "ReservoirSamplingStoragePolicy: a uniform sample of everything seen"

    def __init__(
        self, ext_mem: Dict, mem_size: int, *, seed: int | None = None, memmap_dir=None
    ) -> None:
        super().__init__(ext_mem, mem_size, seed=seed, memmap_dir=memmap_dir)
        self._draws = ReplacementDraws(self.mem_size, lambda: self.generator)
        self._rows: Optional[Tensor] = None  # the group's rows, 0..filled-1 (kept while it holds)
        self._adopt()

    def _adopt(self) -> None:
        """What ``ext_mem`` held (adopted by the store into rows ``0..n-1``, group after
        group) becomes the one group: the first samples seen."""
        total = sum(len(rows) for rows in self._stored_rows().values())
        self._filled = self.n_seen = total
        self._rows = torch.arange(total) if total else None
        self._set_groups({0: self._rows} if total else {})

    # ------------------------------------------------------------------ updates
    def __call__(self, strategy, *, columns=None, **kwargs) -> None:
        """Feed every sample of ``strategy.experience`` to the reservoir, in dataset order."""
        experience = experience_of(strategy)
        self._store(experience.dataset, experience.current_experience, columns)

    def update_from_batch(self, strategy, x: Tensor, y: Tensor, t: Tensor, *, columns=None) -> bool:
        """Feed the samples of one mini-batch to the reservoir, in order; whether one was kept."""
        experience = experience_of(strategy)
        return self._store((x, y, t), experience.current_experience, columns)

    def _store(self, data, origin: int, columns=None) -> bool:
        """Decide which rows the ``n`` new samples take (a plan), then let the store apply it."""
        n = len(data) if isinstance(data, ClassificationDataset) else data[0].shape[0]
        decision = self._decide(n)
        self.n_seen += n
        if decision is None:
            return False
        positions, at = decision
        self._filled = max(self._filled, int(at.max()) + 1)
        if self._rows is None or len(self._rows) != self._filled:
            self._rows = torch.arange(self._filled)
        self._commit({0: GroupPlan.overwrite(self._rows, positions, at)}, data, origin=origin,
                     columns=columns)
        return True

    def _decide(self, n: int) -> Optional[Tuple[Tensor, Tensor]]:
        """The rows the next ``n`` samples take: (positions among them, rows), one entry
        per row, or None when none is kept. While the memory fills, sample ``i`` takes
        row ``i``; after that it replaces row ``floor(u * (i + 1))`` when that row exists
        (the uniforms are drawn a chunk at a time:
        :mod:`~clreplay.replay.policies.reservoir_draws`). A row taken twice ends with
        the later sample, as if they were stored one at a time."""
        fill = min(max(self.mem_size - self.n_seen, 0), n)
        drawn = self._draws.draw(self.n_seen + fill, n - fill)
        if not fill:
            return drawn
        positions, rows = torch.arange(fill), torch.arange(self._filled, self._filled + fill)
        if drawn is None:
            return positions, rows
        later = torch.isin(rows, drawn[1])  # filled, then replaced within the same batch
        return torch.cat([positions[~later], drawn[0] + fill]), torch.cat([rows[~later], drawn[1]])

    # -------------------------------------------------------------- persistence
    def _seed_state(self) -> dict:
        self._draws.rewind()  # the generator as the samples seen so far left it
        return super()._seed_state()

    def _load_seed_state(self, state: dict) -> None:
        super()._load_seed_state(state)
        self._draws.forget()

    def _extra_state(self) -> dict:
        return {"n_seen": self.n_seen}

    def _load_extra_state(self, state: dict) -> None:
        self.n_seen = int(state["n_seen"])
        self._filled = len(self.ext_mem[0]) if self.ext_mem else 0
        self._rows = self.ext_mem[0].indices if self.ext_mem else None
