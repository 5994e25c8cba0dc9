"""ReservoirSamplingStoragePolicy: a uniform sample of everything seen so far."""

from __future__ import annotations

from typing import Callable, Dict, Optional, Tuple

import torch
from torch import Tensor

from clreplay.data.dataset import Batch, ClassificationDataset
from clreplay.replay.slab import Slab
from clreplay.replay.storage import experience_of
from clreplay.replay.streaming import StreamingStoragePolicy

#: Up to this many draws, the reservoir decides sample by sample in Python: for a
#: mini-batch of ten, a few list operations cost less than a dozen tensor ops.
_SMALL_DRAW = 64


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

    The memory is one group, ``ext_mem[0]``: a view of ``mem_size`` preallocated
    rows updated in place (in RAM, or in memory-mapped files in ``memmap_dir``).

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

    def __init__(
        self, ext_mem: Dict, mem_size: int, *, seed: int | None = None, memmap_dir=None
    ) -> None:
        super().__init__(ext_mem, mem_size, seed=seed)
        self.memmap_dir = memmap_dir
        self.n_seen = 0
        self._adopt()

    def _adopt(self) -> None:
        """Move what ``ext_mem`` holds into a fresh slab, as the first samples seen."""
        self._slab = Slab(self.mem_size, directory=self.memmap_dir)
        self._filled = 0
        groups = [g for g in self.ext_mem.values() if len(g) > 0]
        self.ext_mem.clear()
        if not groups:
            return
        data = ClassificationDataset.concat(groups)
        if len(data) > self.mem_size:
            raise ValueError(
                f"ext_mem must hold at most mem_size ({self.mem_size}) samples, got {len(data)}"
            )
        self._slab.write(slice(0, len(data)), *data.get_batch(torch.arange(len(data))))
        self._filled = len(data)
        self.n_seen = max(self.n_seen, len(data))
        self.ext_mem[0] = self._slab.prefix(self._filled)

    # ------------------------------------------------------------------ updates
    def __call__(self, strategy, **kwargs) -> None:
        """Feed every sample of ``strategy.experience`` to the reservoir, in dataset order."""
        data = experience_of(strategy).dataset
        self._store(len(data), lambda pos: data.get_batch(pos))

    def update_from_batch(self, strategy, x: Tensor, y: Tensor, t: Tensor) -> None:
        """Feed the samples of one mini-batch to the reservoir, in order."""
        if len(x) <= self.mem_size - self.n_seen:  # still filling: one slice copy
            start = self.n_seen
            self._slab.write(slice(start, start + len(x)), x, y, t)
            self.n_seen += len(x)
            self._filled = self.n_seen
            self.ext_mem[0] = self._slab.prefix(self._filled)
            return
        self._store(len(x), lambda pos: (x[pos], y[pos], t[pos]))

    def _store(self, n: int, read: Callable[[Tensor], Batch]) -> None:
        fill = min(max(self.mem_size - self.n_seen, 0), n)
        if fill:
            self._slab.write(slice(self._filled, self._filled + fill), *read(torch.arange(fill)))
            self._filled += fill
        drawn = self._draw(self.n_seen + fill, n - fill)
        if drawn is not None:
            positions, rows = drawn
            self._slab.write(rows, *read(positions + fill))
        self.n_seen += n
        if fill:
            self.ext_mem[0] = self._slab.prefix(self._filled)

    def _draw(self, seen: int, count: int) -> Optional[Tuple[Tensor, Tensor]]:
        """Rows replaced by the next ``count`` samples after ``seen``: (positions, rows).

        When several of them draw the same row, the last one wins, as if they
        were stored one at a time. None when no sample is kept.
        """
        if count <= 0:
            return None
        u = torch.rand(count, dtype=torch.float64, generator=self.generator)
        if count <= _SMALL_DRAW:
            chosen: Dict[int, int] = {}
            for k, uk in enumerate(u.tolist()):
                j = int(uk * (seen + k + 1))  # the same double product as below
                if j < self.mem_size:
                    chosen[j] = k
            if not chosen:
                return None
            return torch.tensor(list(chosen.values())), torch.tensor(list(chosen))
        j = (u * torch.arange(seen + 1, seen + 1 + count, dtype=torch.float64)).long()
        kept = torch.nonzero(j < self.mem_size).flatten()
        if kept.numel() == 0:
            return None
        rows = j[kept]
        order = torch.argsort(rows, stable=True)  # within a row, arrival order
        rows, kept = rows[order], kept[order]
        last = torch.ones_like(rows, dtype=torch.bool)
        last[:-1] = rows[1:] != rows[:-1]
        return kept[last], rows[last]

    # -------------------------------------------------------------- persistence
    def state_dict(self) -> dict:
        state = super().state_dict()
        self._slab.release()  # copying read the rows through the mapping, if any
        return state

    def _extra_state(self) -> dict:
        return {"n_seen": self.n_seen}

    def _load_extra_state(self, state: dict) -> None:
        self.n_seen = int(state["n_seen"])

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self._adopt()
