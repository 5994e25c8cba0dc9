"""MIR: maximally interfered retrieval, replaying the memory rows a step would hurt most.

Aljundi et al., "Online Continual Learning with Maximally Interfered Retrieval",
NeurIPS 2019, Sec. 3.1 and Algorithm 1. Before each step on the stream batch
``B_n``, a random subsample ``B_C`` of ``C`` memory samples is drawn and each is
scored by how much a virtual SGD step on the stream batch alone would raise its loss::

    θ_v = θ - lr · ∇_θ L(f_θ(B_n))                           (the virtual update)
    s(x) = ℓ(f_θv(x), y) - ℓ(f_θ(x), y),  x ∈ B_C           (the interference, Eq. 1)

The ``k`` rows with the largest scores (``batch_size_mem``) are replayed, and the
model trains on ``B_n ∪ top-k(B_C)`` (one cross-entropy over the joint batch; the
strategy's loss). The memory is a reservoir updated after every step.

The virtual step is plain SGD at the optimiser's first learning rate (the authors'
code), taken by :func:`torch.func.functional_call` on the model with the updated
weights, so the model itself is never changed; ties between scores go to the row
drawn first. While the memory holds no more than ``k`` samples, all of them are
replayed (there is nothing to choose).
"""

from __future__ import annotations

from typing import List, Optional, Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call

from clreplay.options import Option
from clreplay.replay.online import OnlineReplayPlugin
from clreplay.replay.policies.reservoir import ReservoirSamplingStoragePolicy
from clreplay.strategies.der import STORE_EVERY_EPOCH
from clreplay.strategies.method import Method
from clreplay.training.data_parallel import batch_gradient

SUBSAMPLE = Option("subsample", 50, "MIR: memory candidates C scored before each step (the paper's "
                   "code: 50); the batch-size-mem best of them are replayed", minimum=1, maximum=2**31 - 1)


def interference_scores(model: nn.Module, loss_fn, stream_x: Tensor, stream_y: Tensor,
                        candidates_x: Tensor, candidates_y: Tensor, lr: float, *,
                        grads: Optional[Sequence[Optional[Tensor]]] = None) -> Tensor:
    """MIR's score of each candidate: its loss after a virtual SGD step of learning rate
    ``lr`` on the stream batch minus its loss now (``loss_fn`` per row: ``reduction="none"``
    is passed). The model is left as it was. ``grads``: the stream batch's mean-loss
    gradient, one per parameter that requires one, when already computed (over several
    processes, summed over the ranks' shares); ``stream_x, stream_y`` are then not read.

    >>> model = nn.Linear(1, 2, bias=False)
    >>> _ = model.weight.data.copy_(torch.tensor([[1.0], [0.0]]))
    >>> loss = torch.nn.functional.cross_entropy
    >>> s = interference_scores(model, loss, torch.ones(1, 1), torch.tensor([1]),
    ...                         torch.tensor([[1.0], [-1.0]]), torch.tensor([0, 0]), lr=1.0)
    >>> [round(v, 4) for v in s.tolist()]   # W_v = W - (p - e_1) x = [[0.2689], [0.7311]]
    [0.6374, -0.8247]
    """
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    if grads is None:
        with torch.enable_grad():
            loss = loss_fn(model(stream_x), stream_y, reduction="mean")
            grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
    with torch.no_grad():
        virtual = {name: p - lr * g if g is not None else p for (name, p), g in zip(params.items(), grads)}
        before = loss_fn(model(candidates_x), candidates_y, reduction="none")
        after = loss_fn(functional_call(model, virtual, (candidates_x,)), candidates_y, reduction="none")
    return after - before


def _per_row_loss(loss_fn):
    """``loss_fn(out, y, reduction=...)``: the plain cross-entropy, or ``loss_fn`` itself when
    it takes a reduction (a module's is set for the call)."""
    if loss_fn is None or isinstance(loss_fn, nn.CrossEntropyLoss):
        weight = getattr(loss_fn, "weight", None)
        smoothing = getattr(loss_fn, "label_smoothing", 0.0)
        return lambda out, y, reduction: nn.functional.cross_entropy(
            out, y, weight=weight, reduction=reduction, label_smoothing=smoothing)
    if hasattr(loss_fn, "reduction"):
        def call(out, y, reduction):
            saved, loss_fn.reduction = loss_fn.reduction, reduction
            try:
                return loss_fn(out, y)
            finally:
                loss_fn.reduction = saved
        return call
    raise TypeError(f"MIR needs a per-row loss: the strategy's criterion must be an nn.CrossEntropyLoss or "
                    f"have a reduction attribute, got {type(loss_fn).__name__}")


class MIRPlugin(OnlineReplayPlugin):
    """MIR (see the module's description) on an online reservoir.

    Parameters
    ----------
    mem_size: samples in the reservoir memory.
    subsample: candidates ``C`` drawn from the memory before each step.
    batch_size_mem: rows ``k`` replayed per step (the best-scored candidates); default
        ``train_mb_size``.
    seed: seeds the candidate draws (None: the run's stream).
    memmap_dir: keep the memory in memory-mapped files there.
    store_every_epoch: offer the stream to the reservoir at every epoch (the default).

    Example
    -------
    >>> from clreplay.benchmarks import split_digits
    >>> from clreplay.training import Naive
    >>> model, mir = torch.nn.Linear(64, 10), MIRPlugin(mem_size=100, subsample=30)
    >>> strategy = Naive(model, torch.optim.SGD(model.parameters(), lr=0.1), train_mb_size=10,
    ...                  plugins=[mir], seed=0)
    >>> strategy.train(split_digits().train_stream[:2])
    >>> len(strategy.mb.segment("replay"))   # 10 of the 30 candidates were replayed
    10
    """

    seed_name = "mir"
    _state_name = "MIR"
    draws = ("replay",)

    def __init__(self, mem_size: int = 200, subsample: int = 50, *, batch_size_mem: Optional[int] = None,
                 seed: Optional[int] = None, memmap_dir=None, store_every_epoch: bool = True) -> None:
        self.subsample = SUBSAMPLE.check(subsample, "subsample")
        policy = ReservoirSamplingStoragePolicy({}, mem_size, memmap_dir=memmap_dir)
        super().__init__(mem_size, policy, batch_size_mem=batch_size_mem, seed=seed,
                         store_every_epoch=store_every_epoch)

    def draw_size(self, strategy) -> int:
        """The candidates: ``subsample`` rows (at least the ``k`` replayed)."""
        return max(self.subsample, self.batch_size_mem or strategy.train_mb_size)

    def before_forward(self, strategy, **kwargs):
        """Keep the ``k`` candidates of the ``"replay"`` draw with the largest interference.

        Over several processes every rank holds the whole global batch (``mb.global_batch``):
        the stream's gradient is summed over the ranks' shares (:func:`batch_gradient`, one
        all_reduce), every rank scores the ``C`` candidates alike and keeps the same ``k``,
        and takes its slice of the batch that is left, as one process would train on it."""
        mb = strategy.mb
        whole = mb.global_batch
        if "replay" not in whole:
            return
        k = self.batch_size_mem or strategy.train_mb_size
        candidates = whole.segment("replay")
        if len(candidates) <= k:
            return
        model, device, parallel = strategy.model, mb.x.device, getattr(strategy, "_parallel", None)
        stream_x, stream_y = whole.x[whole.stream.slice].to(device), whole.y[whole.stream.slice].to(device)
        grads = None
        if parallel is not None:
            params = [p for p in model.parameters() if p.requires_grad]
            flat = batch_gradient(strategy, stream_x, stream_y, params)
            grads = [g.view_as(p) for g, p in zip(flat.split([p.numel() for p in params]), params)]
        scores = interference_scores(model, _per_row_loss(strategy.loss_fn), stream_x, stream_y,
                                     whole.x[candidates.slice].to(device), whole.y[candidates.slice].to(device),
                                     strategy.optimizer.param_groups[0]["lr"], grads=grads)
        top = torch.argsort(scores, descending=True, stable=True)[:k]
        chosen = whole.select("replay", top)
        strategy.mb = chosen if parallel is None else parallel.reshard(chosen).to(device)

def _build(config, model: nn.Module) -> List:
    o = config.method_options
    return [MIRPlugin(config.mem_size, o["subsample"], batch_size_mem=config.batch_size_mem,
                      memmap_dir=config.memmap_dir, store_every_epoch=o["store_every_epoch"])]


MIR = Method(
    name="mir",
    summary="MIR: replay the memory candidates whose loss a virtual SGD step on the stream batch raises most",
    paper="Aljundi et al., Online Continual Learning with Maximally Interfered Retrieval, NeurIPS 2019",
    build=_build, options=(SUBSAMPLE, STORE_EVERY_EPOCH), replay_options=("batch_size_mem", "memmap_dir"),
    protocol="online reservoir, the stream offered after every step of every epoch (mammoth's); "
             "batch-size-mem of --subsample random candidates replayed, by interference",
)
