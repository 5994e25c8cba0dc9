"""Data parallelism for a strategy: each rank trains on its slice of every global mini-batch.

A strategy whose run context has ``world_size > 1`` (``BaseStrategy(distributed=True)``
inside a process group) keeps one :class:`DataParallel`. Every rank builds the same
*global* mini-batch of ``train_mb_size`` samples (current and replayed: batch
sources and memories draw from generators seeded alike on every rank), takes its
slice of it (:class:`ShardedBatchSource`), and computes its share of the global
batch's loss; gradients are summed over the ranks before the optimiser's step (bucket
by bucket during the backward pass, :class:`~clreplay.training.gradients.GradientReducer`). So
one step updates the weights as a single process training on the whole global
batch would, up to floating-point rounding, whatever the number of processes.

Evaluation splits each experience's batches over the ranks and sums the correct
counts; the model's parameters and buffers start from rank 0's.
"""

from __future__ import annotations

from typing import List, Mapping, Optional, Sequence

import torch
from torch import Tensor, nn

from clreplay import distributed as idist
from clreplay.data.batching import BatchSource, MappedBatchSource
from clreplay.data.dataset import ClassificationDataset
from clreplay.data.minibatch import MiniBatch, Segment
from clreplay.training.gradients import GradientReducer


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


class _RowsOf(Mapping):
    """``columns`` (a mapping of per-row values) at rows ``[start, stop)``, read when looked up."""

    def __init__(self, columns: Mapping[str, Tensor], start: int, stop: int) -> None:
        self._columns, self._start, self._stop = columns, start, stop

    def __getitem__(self, name: str) -> Tensor:
        return self._columns[name][self._start : self._stop]

    def __contains__(self, name) -> bool:
        return name in self._columns

    def __iter__(self):
        return iter(self._columns)

    def __len__(self) -> int:
        return len(self._columns)


def shard_minibatch(mb: MiniBatch, rank: int, world_size: int) -> MiniBatch:
    """Rank ``rank``'s slice of the global mini-batch ``mb``.

    The slice holds a contiguous share of each of ``mb``'s segments, in the same order
    (:func:`segment_shares`), with their store rows and other columns; each segment
    keeps its global size as ``total``. Over the ranks the slices partition ``mb``.
    """
    shares = segment_shares([len(s) for s in mb.segments], world_size)
    parts, segments, start = [], [], 0
    for segment, counts in zip(mb.segments, shares):
        a = segment.start + sum(counts[:rank])
        n = counts[rank]
        parts.append(torch.arange(a, a + n))
        offset = a - segment.start
        rows = None if segment.rows is None else segment.rows[offset : offset + n]
        columns = _RowsOf(segment.columns, offset, offset + n) if segment.columns else None
        segments.append(Segment(segment.name, start, start + n, from_memory=segment.from_memory, rows=rows,
                                columns=columns, total=segment.total))
        start += n
    positions = torch.cat(parts)
    n = len(positions)
    if n and int(positions[-1] - positions[0]) == n - 1:  # contiguous: views, no copy
        first = int(positions[0])
        x, y, t = (part.narrow(0, first, n) for part in (mb.x, mb.y, mb.t))
    else:
        x, y, t = (part.index_select(0, positions.to(part.device)) for part in (mb.x, mb.y, mb.t))
    return MiniBatch(x, y, t, segments=segments)


class ShardedBatchSource(MappedBatchSource):
    """This rank's slice of every global mini-batch of ``wraps`` (see :func:`shard_minibatch`).

    ``wraps`` is the source it extends (the strategy's batch source after the plugins'
    ``before_training_exp``). While a batch is being trained on, ``global_size`` is the
    global batch's size and ``local_size`` the size of this rank's slice.

    Its state is the wrapped source's (the same on every rank: each draws the global
    batches), and :meth:`iterate_from` resumes the wrapped source's epoch at global
    batch ``start`` before slicing, so a checkpoint taken inside an experience
    resumes under any number of processes.
    """

    def __init__(self, wraps: BatchSource, rank: int, world_size: int) -> None:
        super().__init__(wraps)
        self.rank, self.world_size = rank, world_size
        self.global_size = self.local_size = 0

    def map(self, batch) -> MiniBatch:
        mb = MiniBatch.of(batch)
        local = shard_minibatch(mb, self.rank, self.world_size)
        self.global_size, self.local_size = len(mb), len(local)
        return local


class DataParallel:
    """What a strategy does differently over several processes (its ``context.world_size > 1``).

    Created by the strategy, with the process group already initialized: it checks
    that the group matches the context and starts every rank from rank 0's
    parameters and buffers. The strategy then calls :meth:`shard` once per
    experience (after the plugins' ``before_training_exp``), :meth:`loss_share` and
    :meth:`sync_gradients` every step, :meth:`sum` for the epoch's loss and the
    evaluation's counts, and :meth:`eval_shard` for each evaluated experience.
    """

    def __init__(self, model: nn.Module, context) -> None:
        if not idist.is_initialized():
            raise ValueError(
                f"context.world_size is {context.world_size} but no process group is initialized: "
                "start the processes with torchrun or clreplay.distributed.launch "
                "(or init_from_env) first"
            )
        if (idist.get_rank(), idist.get_world_size()) != (context.rank, context.world_size):
            raise ValueError(
                f"context (rank {context.rank}, world_size {context.world_size}) must match the "
                f"process group (rank {idist.get_rank()}, world_size {idist.get_world_size()})"
            )
        self.model = model
        self.rank, self.world_size = context.rank, context.world_size
        self.source: Optional[ShardedBatchSource] = None
        with torch.no_grad():
            for tensor in list(model.parameters()) + list(model.buffers()):
                tensor.copy_(idist.broadcast(tensor))
        self._buffers = [b for b in model.buffers() if b.is_floating_point()]
        self.reducer = GradientReducer(model)

    # ------------------------------------------------------------- training
    def shard(self, source: BatchSource) -> ShardedBatchSource:
        """The rank's slice of ``source``'s global batches, for the current experience."""
        self.source = ShardedBatchSource(source, self.rank, self.world_size)
        return self.source

    @property
    def samples(self) -> int:
        """Samples of the current global batch (what a single process would forward)."""
        return self.source.global_size

    def loss_share(self, loss: Tensor, output: Tensor) -> Tensor:
        """This rank's share of the global batch's loss: ``loss`` (the mean over its slice)
        times its fraction of the global batch, so the shares sum to the global mean.

        A rank whose slice is empty (a last batch smaller than the ranks) contributes
        zero, through its (empty) output so that its backward still runs. Called right
        before the backward pass, it opens the summing of its gradients.
        """
        self.reducer.start()
        source = self.source
        if source.local_size == 0:
            return output.sum() * 0.0
        return loss * (source.local_size / source.global_size)

    def sync_gradients(self) -> None:
        """After the backward pass: every gradient becomes its sum over the ranks.

        A parameter without a gradient on every rank keeps none; one that has a
        gradient on some rank gets the sum (zeros standing in for the others).
        Floating-point buffers (e.g. batch-norm statistics) are then set to rank 0's.
        """
        self.reducer.finish()
        if self._buffers:
            with torch.no_grad():
                for buffer in self._buffers:
                    buffer.copy_(idist.broadcast(buffer))

    def sum(self, tensor: Tensor) -> Tensor:
        """``tensor`` summed over the ranks."""
        return idist.all_reduce(tensor)

    # ----------------------------------------------------------- evaluation
    def eval_shard(self, dataset: ClassificationDataset, batch_size: int) -> ClassificationDataset:
        """The rank's share of ``dataset`` to evaluate: a contiguous run of its batches of
        ``batch_size`` (the batches one process would evaluate)."""
        n_batches = -(-len(dataset) // batch_size)
        first, stop = idist.share_bounds(n_batches, self.rank, self.world_size)
        start, end = (min(b * batch_size, len(dataset)) for b in (first, stop))
        if start == 0 and end == len(dataset):
            return dataset
        return dataset.subset(torch.arange(start, end))

