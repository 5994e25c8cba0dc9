"""MiniBatch: the current training batch, and where each of its rows came from.

A mini-batch is made of named *segments*, runs of consecutive rows set by the batch
sources that built it: the stream's rows (``"stream"``, the current experience's
samples) and each memory draw appended to them (``"replay"``, DER++'s second draw
``"replay_ce"``, ...). A source that extends another's batches appends segments of
its own, so provenance survives composition: every replayed row of a batch that two
replay plugins built is in a memory segment. A memory segment also knows the store
rows its samples came from and reads the store's other columns (DER's ``logits``)
for them when first looked up.
"""

from __future__ import annotations

from typing import Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import Tensor

from clreplay import distributed as idist

#: The segment of the current experience's samples.
STREAM = "stream"
_NO_COLUMNS: Mapping[str, Tensor] = {}


class Segment:
    """``stop - start`` consecutive rows of a mini-batch, put there by one source.

    ``from_memory`` says whether they were replayed from a memory; ``rows`` holds the
    store rows they came from (None when the memory is not a store); ``columns`` maps
    the store's other columns to their values at those rows (read when first looked
    up). ``total`` is the segment's size in the global batch of a distributed run (its
    length otherwise): a loss that averages over a segment divides by it, so that the
    ranks' shares add up to one process's loss on the global batch.

    >>> s = Segment("replay", 3, 5, from_memory=True, rows=torch.tensor([7, 1]))
    >>> len(s), s.slice, s.total
    (2, slice(3, 5, None), 2)
    """

    __slots__ = ("name", "start", "stop", "from_memory", "rows", "columns", "total")

    def __init__(self, name: str, start: int, stop: int, *, from_memory: bool = False,
                 rows: Optional[Tensor] = None, columns: Optional[Mapping[str, Tensor]] = None,
                 total: Optional[int] = None) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty str, got {name!r}")
        if not 0 <= start <= stop:
            raise ValueError(f"a segment must have 0 <= start <= stop, got start={start}, stop={stop}")
        self.name, self.start, self.stop = name, start, stop
        self.from_memory, self.rows = from_memory, rows
        self.columns = _NO_COLUMNS if columns is None else columns
        self.total = stop - start if total is None else total

    def __len__(self) -> int:
        return self.stop - self.start

    @property
    def slice(self) -> slice:
        return slice(self.start, self.stop)

    def moved(self, start: int, *, rows: Optional[Tensor] = None, columns=None, length: Optional[int] = None,
              total: Optional[int] = None) -> "Segment":
        """The same segment starting at row ``start`` (optionally another length and rows)."""
        n = len(self) if length is None else length
        return Segment(self.name, start, start + n, from_memory=self.from_memory,
                       rows=self.rows if rows is None else rows,
                       columns=self.columns if columns is None else columns,
                       total=self.total if total is None else total)

    def __repr__(self) -> str:
        kind = "memory" if self.from_memory else "stream"
        return f"Segment({self.name!r}, {self.start}:{self.stop}, {kind})"


class _ColumnsSubset(Mapping):
    """The rows at ``positions`` of a segment's columns, each read when first looked up."""

    def __init__(self, columns: Mapping[str, Tensor], positions: Tensor) -> None:
        self._columns, self._positions = columns, positions

    def __getitem__(self, name: str) -> Tensor:
        values = self._columns[name]
        return values[self._positions.to(values.device)]

    def __iter__(self):
        return iter(self._columns)

    def __len__(self) -> int:
        return len(self._columns)


# The from_memory masks of recent segment layouts: batches of one experience share a few.
_MASKS: Dict[tuple, Tensor] = {}


def _mask(segments: Sequence[Segment], device) -> Tensor:
    key = (tuple((len(s), s.from_memory) for s in segments), device)
    mask = _MASKS.get(key)
    if mask is None:
        if len(_MASKS) > 64:
            _MASKS.clear()
        mask = torch.cat([torch.full((len(s),), s.from_memory, dtype=torch.bool, device=device)
                          for s in segments]) if segments else torch.zeros(0, dtype=torch.bool, device=device)
        _MASKS[key] = mask
    return mask


class MiniBatch:
    """One mini-batch: samples ``x``, labels ``y``, task labels ``t``, and its segments.

    A batch made without segments is one ``"stream"`` segment. ``mb.segment(name)``
    returns a segment, ``name in mb`` says whether the batch has one,
    ``mb.from_memory`` is the mask of the replayed rows (derived from the segments).
    In a distributed run a rank trains on a slice of the global batch: ``whole`` is
    that global batch (None for a batch that is whole), and :attr:`global_batch`
    reads it the same way in one process or many.
    A strategy exposes the batch it trains on as ``strategy.mb``; ``strategy.mb_x``,
    ``mb_y`` and ``mb_task_id`` are its ``x``, ``y`` and ``t``.

    >>> mb = MiniBatch(torch.zeros(3, 2), torch.tensor([0, 1, 2]), torch.zeros(3, dtype=torch.long))
    >>> mb = mb.append(torch.ones(2, 2), torch.tensor([5, 6]), torch.zeros(2, dtype=torch.long),
    ...                name="replay", rows=torch.tensor([7, 4]))
    >>> len(mb), mb.n_memory, mb.y[mb.from_memory].tolist(), [s.name for s in mb.segments]
    (5, 2, [5, 6], ['stream', 'replay'])
    >>> mb.segment("replay").rows.tolist(), "replay_ce" in mb
    ([7, 4], False)
    """

    __slots__ = ("x", "y", "t", "segments", "whole")

    def __init__(self, x: Tensor, y: Tensor, t: Tensor, *,
                 segments: Optional[Sequence[Segment]] = None,
                 whole: Optional["MiniBatch"] = None) -> None:
        self.x, self.y, self.t = x, y, t
        if segments is None:
            segments = (Segment(STREAM, 0, y.shape[0]),)
        self.segments: Tuple[Segment, ...] = tuple(segments)
        self.whole = whole

    @property
    def global_batch(self) -> "MiniBatch":
        """The whole batch of the step: the global batch this one is a rank's slice of, or
        this batch (one process). Its rows are on the device the batch was built on."""
        return self if self.whole is None else self.whole

    @property
    def is_slice(self) -> bool:
        """Whether this batch is one rank's slice of a global batch (a distributed run)."""
        return self.whole is not None

    # ------------------------------------------------------------- segments
    def segment(self, name: str) -> Segment:
        """The segment called ``name`` (a ``KeyError`` naming the batch's segments if none)."""
        for segment in self.segments:
            if segment.name == name:
                return segment
        raise KeyError(f"the mini-batch has no segment {name!r}; it has {[s.name for s in self.segments]}")

    def __contains__(self, name: str) -> bool:
        return any(segment.name == name for segment in self.segments)

    @property
    def stream(self) -> Segment:
        """The rows of the current experience (the first segment of a batch a source built)."""
        return self.segment(STREAM)

    @property
    def memory_segments(self) -> Tuple[Segment, ...]:
        return tuple(s for s in self.segments if s.from_memory)

    @property
    def from_memory(self) -> Tensor:
        """Boolean mask of the replayed rows (all False for a batch of current data)."""
        return _mask(self.segments, self.y.device)

    @property
    def n_memory(self) -> int:
        """How many rows of the batch were replayed (no device sync)."""
        return sum(len(s) for s in self.segments if s.from_memory)

    def __len__(self) -> int:
        return self.y.shape[0]

    def __iter__(self) -> Iterator[Tensor]:
        """``x, y, t = mb``: unpacks like the ``(x, y, t)`` tuples batch sources may yield."""
        return iter((self.x, self.y, self.t))

    def append(self, x: Tensor, y: Tensor, t: Tensor, *, name: str, from_memory: bool = True,
               rows: Optional[Tensor] = None, columns: Optional[Mapping[str, Tensor]] = None) -> "MiniBatch":
        """This batch followed by the rows ``x, y, t`` as a new segment ``name`` (a memory
        draw by default, from store ``rows``, with the store's other ``columns``)."""
        if name in self:
            raise ValueError(
                f"the mini-batch already has a segment {name!r} (segments {[s.name for s in self.segments]}): "
                "two sources that append to one batch must name their draws differently"
            )
        n = len(self)
        segment = Segment(name, n, n + y.shape[0], from_memory=from_memory, rows=rows, columns=columns)
        if x.device != self.x.device:
            x, y, t = x.to(self.x.device), y.to(self.y.device), t.to(self.t.device)
        return MiniBatch(torch.cat((self.x, x)), torch.cat((self.y, y)), torch.cat((self.t, t)),
                         segments=self.segments + (segment,))

    def select(self, name: str, positions: Tensor) -> "MiniBatch":
        """This batch with segment ``name`` cut down to its rows at ``positions`` (positions
        within the segment, in that order; their store rows and columns follow them) and the
        other segments unchanged: a method that picks which of a draw's rows to train on
        (MIR's retrieval).

        >>> mb = MiniBatch(torch.zeros(1, 1), torch.tensor([9]), torch.zeros(1, dtype=torch.long))
        >>> mb = mb.append(torch.zeros(3, 1), torch.tensor([5, 6, 7]), torch.zeros(3, dtype=torch.long),
        ...                name="replay", rows=torch.tensor([40, 41, 42]))
        >>> picked = mb.select("replay", torch.tensor([2, 0]))
        >>> picked.y.tolist(), picked.segment("replay").rows.tolist(), picked.n_memory
        ([9, 7, 5], [42, 40], 2)
        """
        chosen = self.segment(name)
        positions = positions.to(torch.long)
        keep = torch.cat([torch.arange(s.start, s.stop) if s is not chosen else positions.cpu() + s.start
                          for s in self.segments]) if self.segments else torch.zeros(0, dtype=torch.long)
        segments, start = [], 0
        for s in self.segments:
            if s is chosen:
                rows = None if s.rows is None else s.rows[positions.to(s.rows.device)]
                columns = _ColumnsSubset(s.columns, positions) if s.columns else None
                segments.append(s.moved(start, rows=rows, columns=columns, length=len(positions),
                                        total=len(positions)))
            else:
                segments.append(s.moved(start))
            start += len(segments[-1])
        index = keep.to(self.y.device)
        return MiniBatch(self.x[keep.to(self.x.device)], self.y[index], self.t[keep.to(self.t.device)],
                         segments=segments)

    def to(self, device: torch.device) -> "MiniBatch":
        """The batch with its samples and labels on ``device`` (non-blocking copies); store
        rows stay with their store."""
        return MiniBatch(self.x.to(device, non_blocking=True), self.y.to(device, non_blocking=True),
                         self.t.to(device, non_blocking=True), segments=self.segments, whole=self.whole)

    def __repr__(self) -> str:
        parts = ", ".join(f"{s.name} {len(s)}" for s in self.segments)
        return f"MiniBatch({len(self)} samples: {parts})"

    @classmethod
    def of(cls, batch) -> "MiniBatch":
        """``batch`` as a MiniBatch: a MiniBatch as is, an ``(x, y, t)`` tuple wrapped."""
        if isinstance(batch, MiniBatch):
            return batch
        try:
            x, y, t = batch
        except (TypeError, ValueError):
            raise TypeError(
                f"a batch source must yield MiniBatch or (x, y, t) tuples, got {type(batch).__name__}"
            ) from None
        return cls(x, y, t)


def segment_shares(lengths: Sequence[int], world_size: int) -> List[List[int]]:
    """How many rows of each segment each rank takes: ``shares[s][r]``.

    Every segment is split as evenly as possible over the ranks, and the rows that do
    not divide go to the ranks that have the fewest rows so far (the lowest rank
    first), so that every rank's slice holds the global batch's size divided by the
    ranks, within one row.

    >>> segment_shares([11, 21], 2)
    [[6, 5], [10, 11]]
    >>> segment_shares([1, 0], 2)
    [[1, 0], [0, 0]]
    """
    given = [0] * world_size
    shares = []
    for length in lengths:
        base, extra = divmod(length, world_size)
        counts = [base] * world_size
        for rank in sorted(range(world_size), key=lambda r: (given[r], r))[:extra]:
            counts[rank] += 1
        given = [g + c for g, c in zip(given, counts)]
        shares.append(counts)
    return shares


def segment_counts(mb: MiniBatch, name: str) -> List[int]:
    """How many rows of segment ``name`` of the step's global batch each rank holds (what
    every rank knows without asking the others; ``[len]`` in one process).

    >>> mb = MiniBatch(torch.zeros(3, 1), torch.zeros(3, dtype=torch.long), torch.zeros(3, dtype=torch.long))
    >>> segment_counts(mb, "stream")
    [3]
    """
    whole = mb.global_batch
    index = [s.name for s in whole.segments].index(name)
    return segment_shares([len(s) for s in whole.segments], idist.get_world_size())[index]
