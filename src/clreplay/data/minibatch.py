"""MiniBatch: the current training batch, and where each of its samples came from."""

from __future__ import annotations

from typing import Mapping, Optional

import torch
from torch import Tensor


class MiniBatch:
    """One mini-batch: samples ``x``, labels ``y``, task labels ``t``, and provenance.

    ``from_memory`` is a boolean mask of the rows replayed from a memory;
    ``memory_rows`` holds the store rows those samples came from (in batch order,
    one per True of the mask; None when the batch replays nothing or its memory is
    not a store); ``extras`` maps each extra column of the memory (e.g. DER's
    ``logits``) to its values for those rows (a mapping that may read each column
    from the store when first looked up). A strategy exposes the batch it trains
    on as ``strategy.mb``; ``strategy.mb_x``, ``mb_y`` and ``mb_task_id`` are its
    ``x``, ``y`` and ``t``.

    >>> mb = MiniBatch(torch.zeros(3, 2), torch.tensor([0, 1, 2]), torch.zeros(3, dtype=torch.long),
    ...                from_memory=torch.tensor([False, True, True]), memory_rows=torch.tensor([7, 4]))
    >>> len(mb), mb.n_memory, mb.y[mb.from_memory].tolist()
    (3, 2, [1, 2])
    """

    __slots__ = ("x", "y", "t", "_from_memory", "memory_rows", "extras")

    def __init__(
        self,
        x: Tensor,
        y: Tensor,
        t: Tensor,
        *,
        from_memory: Optional[Tensor] = None,
        memory_rows: Optional[Tensor] = None,
        extras: Optional[Mapping[str, Tensor]] = None,
    ) -> None:
        self.x, self.y, self.t = x, y, t
        self._from_memory = from_memory
        self.memory_rows = memory_rows
        self.extras = {} if extras is None else extras

    @property
    def from_memory(self) -> Tensor:
        """Boolean mask of the replayed rows (all False for a batch of current data)."""
        if self._from_memory is None:
            self._from_memory = torch.zeros(self.y.shape[0], dtype=torch.bool, device=self.y.device)
        return self._from_memory

    @property
    def n_memory(self) -> int:
        """How many samples of the batch were replayed."""
        if self._from_memory is None:
            return 0
        return int(self._from_memory.sum())

    def __len__(self) -> int:
        return self.y.shape[0]

    def __iter__(self):
        """``x, y, t = mb``: unpacks like the ``(x, y, t)`` tuples batch sources used to yield."""
        return iter((self.x, self.y, self.t))

    def to(self, device: torch.device) -> "MiniBatch":
        """The batch with every tensor on ``device`` (non-blocking copies)."""
        def move(value):
            return None if value is None else value.to(device, non_blocking=True)

        return MiniBatch(
            move(self.x), move(self.y), move(self.t), from_memory=move(self._from_memory),
            memory_rows=self.memory_rows,  # an index into the store: it stays with the store
            extras={name: move(value) for name, value in self.extras.items()},
        )

    def __repr__(self) -> str:
        return f"MiniBatch({len(self)} samples, {self.n_memory} from memory, extras={sorted(self.extras)})"

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
