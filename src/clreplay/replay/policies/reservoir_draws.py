"""The reservoir's replacement draws, made a thousand samples at a time.

Algorithm R draws one uniform per sample after the memory is full, and keeps the
``i``-th sample (counting from 0) in row ``floor(u * (i + 1))`` when that row
exists. Fed mini-batch by mini-batch (online replay), that was a random draw and
a few list operations every step, mostly to find that no sample is kept (a full
memory of ``m`` keeps ``m / i`` of them). :class:`ReplacementDraws` draws the
uniforms in chunks and finds the kept samples of a whole chunk with a few tensor
operations; a step then looks its samples up in a sorted list.

The values are the generator's uniforms in the same order as drawn one batch at
a time (a CPU generator's float64 uniforms do not depend on how they are split
into calls), so the memory is the same bit for bit. The generator runs ahead of
the samples by what is left of the chunk: :meth:`ReplacementDraws.rewind` puts it
back where the samples seen so far left it, which is the state a checkpoint
saves.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch import Tensor

#: Uniforms drawn at once (one tensor of 8 KiB): the draw, a product and a
#: comparison for this many samples instead of one draw per mini-batch.
CHUNK = 1024


class _Chunk:
    """Uniforms for samples ``start .. start + length - 1`` and the samples they keep."""

    __slots__ = ("start", "length", "state", "next", "kept", "rows")

    def __init__(self, start: int, length: int, state: Tensor, kept: List[int], rows: List[int]) -> None:
        self.start, self.length, self.state = start, length, state
        self.next = start  # the first sample whose uniform is not consumed yet
        self.kept, self.rows = kept, rows  # ascending sample indices, and the row each takes


class ReplacementDraws:
    """Which of the next samples a full reservoir of ``mem_size`` rows keeps, and where.

    ``generator()`` returns the generator to draw from (the policy's, created on
    first use).
    """

    def __init__(self, mem_size: int, generator: Callable[[], torch.Generator]) -> None:
        self.mem_size = mem_size
        self._generator = generator
        self._chunk: Optional[_Chunk] = None

    def draw(self, seen: int, count: int) -> Optional[Tuple[Tensor, Tensor]]:
        """Rows replaced by the ``count`` samples after the first ``seen``: (positions among
        them, rows), one entry per row; a row drawn twice goes to the later sample, as if
        they were stored one at a time. None when none is kept.
        """
        if count <= 0:
            return None
        chunk = self._chunk
        if chunk is None or chunk.next != seen or seen + count > chunk.start + chunk.length:
            chunk = self._refill(seen, count)
        chunk.next = seen + count
        lo = bisect_left(chunk.kept, seen)
        hi = bisect_left(chunk.kept, seen + count, lo)
        if lo == hi:
            return None
        chosen: Dict[int, int] = {}
        for sample, row in zip(chunk.kept[lo:hi], chunk.rows[lo:hi]):
            chosen[row] = sample - seen  # in arrival order: the later sample wins
        return torch.tensor(list(chosen.values())), torch.tensor(list(chosen))

    def _refill(self, seen: int, count: int) -> _Chunk:
        """A chunk starting at sample ``seen``, the generator first put back where the samples
        consumed so far left it (the unconsumed uniforms are drawn again, the same values)."""
        self.rewind()
        generator = self._generator()
        length = max(CHUNK, count)
        state = generator.get_state()
        u = torch.rand(length, dtype=torch.float64, generator=generator)
        j = (u * torch.arange(seen + 1, seen + 1 + length, dtype=torch.float64)).long()
        kept = torch.nonzero(j < self.mem_size).flatten()
        self._chunk = _Chunk(seen, length, state, (kept + seen).tolist(), j[kept].tolist())
        return self._chunk

    def rewind(self) -> None:
        """Put the generator back to where the consumed uniforms left it and forget the rest."""
        chunk, self._chunk = self._chunk, None
        if chunk is None or chunk.next == chunk.start + chunk.length:
            return
        replay = torch.Generator()
        replay.set_state(chunk.state)
        torch.rand(chunk.next - chunk.start, dtype=torch.float64, generator=replay)
        self._generator().set_state(replay.get_state())

    def forget(self) -> None:
        """Drop the chunk without touching the generator (its state was just set from outside)."""
        self._chunk = None
