"""Data parallelism for a strategy: each rank trains on its slice of every global mini-batch.

A strategy whose run context has ``world_size > 1`` (``BaseStrategy(distributed=True)``
inside a process group) keeps one :class:`DataParallel`. Every rank builds the same
*global* mini-batch of ``train_mb_size`` samples (current and replayed: batch
sources and memories draw from generators seeded alike on every rank), takes its
slice of it (:class:`ShardedBatchSource`), and computes its share of the global
batch's loss; the model trains through
:class:`~torch.nn.parallel.DistributedDataParallel`, whose reducer sums the gradients
over the ranks while the backward pass runs. So one step updates the weights as a
single process training on the whole global batch would, up to floating-point
rounding, whatever the number of processes. A gradient a method computes besides
(A-GEM's reference gradient) is computed on the plain module over each rank's share
of its batch and summed with one all_reduce (:func:`batch_gradient`).

Evaluation splits each experience's batches over the ranks and sums the correct
counts; the model's parameters and buffers start from rank 0's.
"""

from __future__ import annotations

from typing import Callable, Mapping, Optional, Sequence

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from clreplay import distributed as idist
from clreplay.data.batching import BatchSource, MappedBatchSource
from clreplay.data.dataset import ClassificationDataset
from clreplay.data.minibatch import MiniBatch, Segment, segment_shares


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
    keeps its global size as ``total``, and the slice's ``whole`` is ``mb``. Over the
    ranks the slices partition ``mb``.
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
    return MiniBatch(x, y, t, segments=segments, whole=mb)


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

    def __init__(self, wraps: BatchSource, rank: int, world_size: int, *, replicate: bool = False) -> None:
        super().__init__(wraps)
        self.rank, self.world_size, self.replicate = rank, world_size, replicate
        self.global_size = self.local_size = 0

    def map(self, batch) -> MiniBatch:
        mb = MiniBatch.of(batch)
        local = mb if self.replicate else shard_minibatch(mb, self.rank, self.world_size)
        self.global_size, self.local_size = len(mb), len(local)
        return local


class DataParallel:
    """What a strategy does differently over several processes (its ``context.world_size > 1``).

    Created by the strategy, with the process group already initialized: it checks
    that the group matches the context and wraps the model in
    :class:`~torch.nn.parallel.DistributedDataParallel` (which starts every rank from
    rank 0's parameters and buffers). The strategy's model stays the plain module;
    the training forward goes through :meth:`module` (the wrapper), whose backward
    sums the gradients over the ranks (torch's reducer, bucket by bucket while the
    backward pass runs). The strategy calls :meth:`shard` once per experience (after
    the plugins' ``before_training_exp``: the model is wrapped again there, from rank
    0's weights, so a plugin may re-initialise or replace layers), :meth:`loss_share`
    and :meth:`backward` every step, :meth:`sum` for the epoch's loss and the
    evaluation's counts, and :meth:`eval_shard` for each evaluated experience.

    Each rank's loss is its share of the global batch's loss, and DDP *averages* the
    gradients over the ranks: :meth:`backward` differentiates the share times the
    world size, so the gradient is that of the global batch's loss, as one process
    would compute it on the whole batch.
    """

    #: The DistributedDataParallel options a strategy may set (``distributed={...}``).
    OPTIONS = ("find_unused_parameters", "static_graph", "gradient_as_bucket_view", "bucket_cap_mb",
               "broadcast_buffers")

    def __init__(self, model: nn.Module, context, options: Optional[Mapping] = None) -> None:
        unknown = sorted(set(options or {}) - set(self.OPTIONS))
        if unknown:
            raise ValueError(f"distributed options must be among {list(self.OPTIONS)}, got {unknown}")
        self.options = dict(options or {})
        if not idist.is_initialized():
            raise ValueError(
                f"context.world_size is {context.world_size} but no process group is initialized: "
                "start the processes with torchrun or clreplay.launch.launch "
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
        self._ddp: Optional[DistributedDataParallel] = None
        self._params: tuple = ()
        self._forwarded = False
        self._wrap()

    # ------------------------------------------------------------ the wrapper
    def _trainable(self) -> tuple:
        return tuple(p for p in self.model.parameters() if p.requires_grad)

    def _wrap(self) -> None:
        """Wrap the model (again): DDP broadcasts rank 0's parameters and buffers and
        registers its reducer on the parameters that require gradients now."""
        self._ddp = None  # the old reducer's hooks go with it
        self._params = self._trainable()
        if not self._params:  # nothing to sum: DDP refuses such a module
            with torch.no_grad():
                for tensor in list(self.model.parameters()) + list(self.model.buffers()):
                    tensor.copy_(idist.broadcast(tensor))
            return
        first = self._params[0]
        device_ids = [first.device] if first.device.type == "cuda" else None
        self._ddp = DistributedDataParallel(self.model, device_ids=device_ids, **self.options)
        self._ddp.register_forward_pre_hook(self._note_forward)

    def _note_forward(self, module, inputs) -> None:
        self._forwarded = True

    def module(self) -> nn.Module:
        """What the training forward goes through: the DDP wrapper of the model (wrapped
        again first if the parameters that require gradients changed, e.g. a head that
        grew or a layer frozen)."""
        params = self._trainable()
        if len(params) != len(self._params) or any(a is not b for a, b in zip(params, self._params)):
            self._wrap()
        return self.model if self._ddp is None else self._ddp

    # ------------------------------------------------------------- training
    def shard(self, source: BatchSource, *, replicate: bool = False) -> ShardedBatchSource:
        """The rank's slice of ``source``'s global batches, for the current experience; the
        model is wrapped again, from rank 0's weights (plugins may have changed it).

        ``replicate``: every rank trains on the whole global batch instead, and its loss
        counts ``1 / world_size``: for a method whose loss pairs every row of the batch
        with every other (the contrastive losses of SCR and OnPro), so that it gives one
        process's weights, without the speed-up of slicing.
        """
        self._wrap()
        self.source = ShardedBatchSource(source, self.rank, self.world_size, replicate=replicate)
        return self.source

    def reshard(self, whole: MiniBatch) -> MiniBatch:
        """This rank's slice of ``whole``, a global batch a method rebuilt inside a step
        (MIR keeps ``k`` of its ``C`` candidates, on every rank alike); the step's sizes
        (:meth:`loss_share`, :attr:`samples`) follow it."""
        local = whole if self.source.replicate else shard_minibatch(whole, self.rank, self.world_size)
        self.source.global_size, self.source.local_size = len(whole), len(local)
        return local

    @property
    def samples(self) -> int:
        """Samples of the current global batch (what a single process would forward)."""
        return self.source.global_size

    def loss_share(self, loss: Tensor, output: Tensor) -> Tensor:
        """This rank's share of the global batch's loss: ``loss`` (the mean over its slice)
        times its fraction of the global batch, so the shares sum to the global mean.

        A rank whose slice is empty (a last batch smaller than the ranks) contributes
        zero, through its (empty) output so that its backward still runs.
        """
        source = self.source
        if source.local_size == 0:
            return output.sum() * 0.0
        if source.replicate:  # every rank computed the whole batch's loss
            return loss / self.world_size
        return loss * (source.local_size / source.global_size)

    def backward(self, share: Tensor, differentiate: Callable[[Tensor], None] = Tensor.backward) -> None:
        """Differentiate the loss ``share`` (:meth:`loss_share`) with ``differentiate`` (the
        strategy's, which scales an fp16 loss): every gradient becomes the sum over the ranks
        of the shares' gradients (DDP averages, so the share is scaled by the world size).
        The forward must have gone through :meth:`module`."""
        if self._ddp is not None and not self._forwarded:
            raise RuntimeError(
                "the training forward must go through strategy.train_model (the "
                "DistributedDataParallel wrapper) in a distributed run, else the gradients are "
                "not summed over the ranks: got a forward through strategy.model (override "
                "forward() with self.train_model(...))"
            )
        self._forwarded = False
        differentiate(share * self.world_size)

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



def batch_gradient(strategy, x: Tensor, y: Tensor, params: Sequence[Tensor]) -> Tensor:
    """The gradient of ``strategy.loss_fn(strategy.model(x), y)`` (a mean over the rows)
    with respect to ``params``, flattened (zeros for a parameter it does not reach).

    A gradient a method needs besides the step's own (A-GEM's reference gradient on a
    memory batch): it is computed on the plain module, so DDP's reducer takes no part.
    Over several processes every rank holds the same batch ``x, y``; each differentiates
    its contiguous share of the rows, weighted by its share, and one all_reduce sums
    the shares: every rank gets the gradient one process computes on the whole batch.

    >>> model = nn.Linear(2, 2)
    >>> strategy = type("S", (), {"model": model, "loss_fn": nn.CrossEntropyLoss(), "_parallel": None})()
    >>> x, y = torch.randn(4, 2), torch.tensor([0, 1, 1, 0])
    >>> g = batch_gradient(strategy, x, y, list(model.parameters()))
    >>> reference = torch.autograd.grad(nn.functional.cross_entropy(model(x), y), list(model.parameters()))
    >>> torch.allclose(g, torch.cat([t.reshape(-1) for t in reference]))
    True
    """
    parallel = getattr(strategy, "_parallel", None)
    weight = 1.0
    if parallel is not None:
        start, stop = idist.share_bounds(len(y), parallel.rank, parallel.world_size)
        weight = (stop - start) / max(len(y), 1)
        x, y = x[start:stop], y[start:stop]
    output = strategy.model(x)
    loss = strategy.loss_fn(output, y) * weight if len(y) else output.sum() * 0.0
    grads = torch.autograd.grad(loss, list(params), allow_unused=True)
    flat = torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, params)])
    return flat if parallel is None else idist.all_reduce(flat)
