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

from typing import Optional, Tuple

import torch
from torch import Tensor, nn

from clreplay import distributed as idist
from clreplay.data.batching import BatchSource, MappedBatchSource
from clreplay.data.dataset import ClassificationDataset
from clreplay.data.minibatch import MiniBatch
from clreplay.training.gradients import GradientReducer


def slice_bounds(n_current: int, n_memory: int, rank: int, world_size: int
                 ) -> Tuple[Tuple[int, int], Tuple[int, int]]:
    """This rank's ``[start, stop)`` among the current rows and among the replayed rows.

    Each rank takes a contiguous share of the current rows (larger shares first)
    and of the replayed rows, sized so that every rank's slice holds the global
    batch's size divided by the ranks (±1): the batch's work is split evenly, and
    each rank's current rows come first, as in the global batch.

    >>> [slice_bounds(11, 21, r, 2) for r in range(2)]
    [((0, 6), (0, 10)), ((6, 11), (10, 21))]
    """
    totals = idist.shares(n_current + n_memory, world_size)
    current = idist.shares(n_current, world_size)
    memory = [t - c for t, c in zip(totals, current)]
    c0, m0 = sum(current[:rank]), sum(memory[:rank])
    return (c0, c0 + current[rank]), (m0, m0 + memory[rank])


def shard_minibatch(mb: MiniBatch, rank: int, world_size: int) -> Tuple[MiniBatch, int]:
    """Rank ``rank``'s slice of the global mini-batch ``mb``, and how many current rows it has.

    The slice holds a contiguous share of ``mb``'s current rows followed by one of its
    replayed rows (:func:`slice_bounds`), with their store rows and extra columns; over
    the ranks the slices partition ``mb``.
    """
    mask = mb.from_memory.cpu()
    current = torch.nonzero(~mask).flatten()
    memory = torch.nonzero(mask).flatten()
    (c0, c1), (m0, m1) = slice_bounds(len(current), len(memory), rank, world_size)
    positions = torch.cat([current[c0:c1], memory[m0:m1]])
    n = len(positions)
    if n and int(positions[-1] - positions[0]) == n - 1 and bool((positions[1:] > positions[:-1]).all()):
        start = int(positions[0])  # contiguous: views, no copy
        x, y, t = (part.narrow(0, start, n) for part in (mb.x, mb.y, mb.t))
    else:
        x, y, t = (part.index_select(0, positions.to(part.device)) for part in (mb.x, mb.y, mb.t))
    if m1 == m0 and mb.memory_rows is None and not mb.extras:
        return MiniBatch(x, y, t), c1 - c0
    local_mask = torch.zeros(n, dtype=torch.bool, device=mb.y.device)
    local_mask[c1 - c0 :] = True
    rows = None if mb.memory_rows is None else mb.memory_rows[m0:m1]
    extras = {name: value[m0:m1] for name, value in mb.extras.items()}
    return MiniBatch(x, y, t, from_memory=local_mask, memory_rows=rows, extras=extras), c1 - c0


class ShardedBatchSource(MappedBatchSource):
    """This rank's slice of every global mini-batch of ``wraps`` (see :func:`shard_minibatch`).

    ``wraps`` is the source it extends (the strategy's batch source after the plugins'
    ``before_training_exp``). While a batch is being trained on, ``global_size`` is the
    global batch's size, ``local_size`` the size of this rank's slice and
    ``current_rows`` its number of current (not replayed) rows, which come first in it.

    Its state is the wrapped source's (the same on every rank: each draws the global
    batches), and :meth:`iterate_from` resumes the wrapped source's epoch at global
    batch ``start`` before slicing, so a checkpoint taken inside an experience
    resumes under any number of processes.
    """

    def __init__(self, wraps: BatchSource, rank: int, world_size: int) -> None:
        super().__init__(wraps)
        self.rank, self.world_size = rank, world_size
        self.global_size = self.local_size = self.current_rows = 0

    def map(self, batch) -> MiniBatch:
        mb = MiniBatch.of(batch)
        local, self.current_rows = shard_minibatch(mb, self.rank, self.world_size)
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

