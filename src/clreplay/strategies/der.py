"""DER and DER++: dark experience replay, matching the logits a sample got when it was seen.

Buzzega et al., "Dark Experience for General Continual Learning: a Strong, Simple
Baseline", NeurIPS 2020. A reservoir memory keeps, with each sample, the logits
``z`` the model produced for it when it arrived (the forward pass of the step that
trained on it). The loss of a step is (their Eq. 6 for DER, Eq. 7 for DER++)::

    CE(h(x), y) on the stream samples
    + alpha * MSE(h(x'), z')     on replayed samples (x', z') of this batch
    + beta  * CE(h(x''), y'')    on a second batch (x'', y'') drawn independently

MSE is the mean squared difference over the compared logits (as the authors'
code computes it). DER is ``beta = 0``.

A head that grows: each row also stores the width of its logits when stored
(column ``logits_width``), and the distillation term compares only those
columns of the current logits with the stored ones (the newer classes of a
wider head are not pulled towards anything). The ``logits`` column widens with
the head (:meth:`~clreplay.replay.storage.MemoryStore.resize_column`; the new
columns of old rows read 0 and are never compared).
"""

from __future__ import annotations

from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from clreplay.replay.online import OnlineReplayPlugin
from clreplay.strategies.base import MemorySampler, Method, Option, SingleProcess

LOGITS, WIDTH = "logits", "logits_width"

_PAPER = "Buzzega et al., Dark Experience for General Continual Learning, NeurIPS 2020"
# Defaults: the paper's Seq-MNIST setting with a memory of 200 (DER: alpha 0.2; DER++: 0.2, 1.0).
_ALPHA = Option("alpha", 0.2, "weight of DER's logit-matching (MSE) term")
_BETA = Option("beta", 1.0, "weight of DER++'s cross-entropy on a second memory batch")


def logit_matching_loss(current: Tensor, stored: Tensor, widths: Tensor) -> Tensor:
    """Mean squared difference between ``current`` logits and ``stored`` ones, row ``i``
    compared on its first ``widths[i]`` columns only (the classes it was stored with).

    >>> current = torch.tensor([[2.0, 2.0, 9.0], [0.0, 1.0, 9.0]])
    >>> stored = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    >>> logit_matching_loss(current, stored, torch.tensor([2, 2])).item()   # (1 + 0 + 0 + 1) / 4
    0.5
    >>> logit_matching_loss(current, stored, torch.tensor([2, 1])).item()   # (1 + 0 + 0) / 3
    0.3333333432674408
    """
    k = min(current.shape[1], stored.shape[1])
    current, stored = current[:, :k], stored[:, :k].to(current.dtype)
    if bool((widths >= k).all()):
        return F.mse_loss(current, stored)
    mask = torch.arange(k, device=widths.device) < widths.unsqueeze(1)
    squared = (current - stored).pow(2) * mask
    return squared.sum() / mask.sum().clamp(min=1)


def _zeros(shape, *, then=None):
    def fill(strategy, x: Tensor) -> Tensor:
        if then is not None:
            then()
        dtype = torch.long if not shape else torch.float32
        return torch.zeros((len(x), *shape), dtype=dtype, device=x.device)

    return fill


class DERPlugin(SingleProcess, OnlineReplayPlugin):
    """DER (``beta=0``) and DER++ (``beta>0``) on a reservoir memory that stores logits.

    Online replay (:class:`~clreplay.OnlineReplayPlugin`): each step trains on the
    stream mini-batch plus ``batch_size_mem`` samples drawn from the memory, and the
    stream samples then go to the reservoir with the logits the model gave them in
    that step (:meth:`stream_extras`). The plugin owns the strategy's loss
    (:meth:`criterion`; the strategy's ``loss_fn`` is the cross-entropy used).

    Parameters
    ----------
    mem_size: samples in the memory.
    alpha: weight of the logit-matching term (paper, Seq-MNIST, memory 200: 0.2).
    beta: weight of the cross-entropy on a second memory batch; 0 is DER (DER++: 1.0).
    batch_size_mem: memory samples per step, for each memory batch; default ``train_mb_size``.
    seed: seeds the memory draws (None: the run's stream).

    Example
    -------
    >>> from clreplay.benchmarks import split_digits
    >>> from clreplay.training import Naive
    >>> model, der = torch.nn.Linear(64, 10), DERPlugin(mem_size=100, alpha=0.2, beta=1.0)
    >>> Naive(model, torch.optim.SGD(model.parameters(), lr=0.1), train_mb_size=10,
    ...       plugins=[der], seed=0).train(split_digits().train_stream[0])
    >>> der.ext_mem[0].targets.shape, der.storage_policy.store.extras["logits"].shape
    (torch.Size([100]), (10,))
    """

    _seed_name = "der"

    def __init__(self, mem_size: int = 200, alpha: float = 0.2, beta: float = 0.0, *,
                 batch_size_mem: Optional[int] = None, seed: Optional[int] = None,
                 memmap_dir=None) -> None:
        from clreplay.replay.policies.reservoir import ReservoirSamplingStoragePolicy

        self.alpha = _ALPHA.check(alpha, "alpha")
        self.beta = _BETA.check(beta, "beta")
        policy = ReservoirSamplingStoragePolicy({}, mem_size, memmap_dir=memmap_dir)
        super().__init__(mem_size, policy, batch_size_mem=batch_size_mem, seed=seed)
        self._sampler = MemorySampler(self.storage_policy)
        # True while every stored row holds logits as wide as the column: the logit
        # matching is then a plain MSE, without reading the widths.
        self._full_width = True
        self._appends_second = False  # DER++'s second batch drawn with the first (see memory_draws)
        self._widths: Dict[tuple, Tensor] = {}  # the logits_width values of a batch, reused
        self._weights: Dict[tuple, Tensor] = {}  # the cross-entropy weights of a batch's rows
        self._width = 0  # the logits columns' width
        self._plain, self._plain_for = False, None  # whether loss_fn is the plain cross-entropy

    # ------------------------------------------------------------- the logits
    def _ensure_width(self, width: int, *, exactly: bool = False) -> None:
        """Register the logits columns, or widen them for a head that grew (``exactly``:
        give them this width, as a saved memory has)."""
        store = self.storage_policy.store
        spec = store.extras.get(LOGITS)
        if spec is None:
            store.register_column(LOGITS, (width,), torch.float32, fill=_zeros((width,)))
            store.register_column(WIDTH, (), torch.long, fill=_zeros((), then=self._rows_without_logits))
        elif spec.shape[0] < width or (exactly and spec.shape[0] != width):
            store.resize_column(LOGITS, (width,))
            store.register_column(LOGITS, (width,), torch.float32, fill=_zeros((width,)))
            self._full_width = False

    def after_forward(self, strategy, **kwargs):
        """The logits columns follow the head's width from its first output on (before
        anything is stored: the stream's logits are computed only when stored)."""
        if strategy.mb_output.shape[1] > self._width:
            self._ensure_width(strategy.mb_output.shape[1])
            self._width = self._columns()

    def _rows_without_logits(self) -> None:
        """Samples stored without a forward pass (``train_epochs=0``) have no logits."""
        self._full_width = False

    def stream_extras(self, strategy, n: int) -> Dict[str, Tensor]:
        """The logits of the ``n`` stream samples just trained on (the first rows of the
        step's output, computed before the update), padded to the column, and their width."""
        logits = strategy.mb_output[:n].detach()
        width = logits.shape[1]
        columns = self._width  # the column, kept as wide as the head by after_forward
        if width < columns:
            logits = F.pad(logits, (0, columns - width))
        key = (n, width, logits.device)
        widths = self._widths.get(key)
        if widths is None:  # the store copies what it is given: one tensor serves every step
            widths = self._widths[key] = torch.full((n,), width, dtype=torch.long, device=logits.device)
        return {LOGITS: logits, WIDTH: widths}

    def _columns(self) -> int:
        spec = self.storage_policy.store.extras.get(LOGITS)
        return 0 if spec is None else spec.shape[0]

    # ------------------------------------------------- DER++'s second batch
    def memory_draws(self, strategy) -> int:
        """DER++ on a model whose rows are independent (no batch normalisation): the second
        memory batch is drawn with the first and forwarded with the batch (the same outputs
        as a forward of its own, at the cost of one). Otherwise one draw."""
        self._appends_second = self.beta > 0 and not _batch_dependent(strategy.model)
        return 2 if self._appends_second else 1

    # --------------------------------------------------------------- the loss
    def criterion(self, strategy) -> Tensor:
        """CE on the stream rows + alpha * logit matching on the replayed rows
        (+ beta * CE on a second, independent memory batch)."""
        mb, out = strategy.mb, strategy.mb_output
        n_memory = len(mb.memory_rows) if mb.memory_rows is not None else mb.n_memory
        n = len(mb) - n_memory
        # The second batch, when drawn with the first, is the second half of the memory rows.
        end = len(mb) - (n_memory // 2 if self._appends_second else 0)
        plain = self._plain_cross_entropy(strategy.loss_fn)
        if plain:
            # Both cross-entropy terms in one call: per-row losses weighted 1/n on the
            # stream rows, beta/k on the k rows of the second batch, 0 on the others.
            # The same sum, with fewer autograd nodes than a loss per slice (this runs
            # every step, and at batch 10 the nodes cost more than the arithmetic).
            second = len(mb) - end if self.beta > 0 else 0
            rows = F.cross_entropy(out, mb.y, reduction="none")
            loss = torch.dot(rows, self._row_weights(n, end - n, second, out))
        else:
            loss = strategy.loss_fn(out[:n], mb.y[:n])
        if n < end and self.alpha > 0 and LOGITS in mb.extras:
            stored = mb.extras[LOGITS]
            if len(stored) != end - n:  # DER++: the second batch's logits are not compared
                stored = stored[: end - n]
            if self._full_width and stored.shape[1] == out.shape[1]:
                matching = F.mse_loss(out[n:end], stored)
            else:
                matching = logit_matching_loss(out[n:end], stored, mb.extras[WIDTH][: end - n])
            loss = torch.add(loss, matching, alpha=self.alpha)  # one node for loss + alpha * matching
        if self.beta > 0:
            if self._appends_second:
                if end < len(mb) and not plain:
                    loss = torch.add(loss, strategy.loss_fn(out[end:], mb.y[end:]), alpha=self.beta)
            else:
                batch = self._sampler.draw(self.batch_size_mem or strategy.train_mb_size, self.generator,
                                           extras=False)
                if batch is not None:
                    batch = batch.to(out.device)
                    loss = loss + self.beta * strategy.loss_fn(strategy.model(batch.x), batch.y)
        return loss

    def _plain_cross_entropy(self, loss_fn) -> bool:
        """:func:`_is_plain_cross_entropy`, decided once a loss function (it runs every step)."""
        if self._plain_for is not loss_fn:
            self._plain, self._plain_for = _is_plain_cross_entropy(loss_fn), loss_fn
        return self._plain

    def _row_weights(self, stream: int, replayed: int, second: int, out: Tensor) -> Tensor:
        """The weights of the per-row cross-entropies: ``1/stream`` on the stream rows,
        0 on the ``replayed`` rows, ``beta/second`` on the second batch's rows (made
        once a shape)."""
        key = (stream, replayed, second, out.dtype, out.device)
        weights = self._weights.get(key)
        if weights is None:
            parts = [torch.full((stream,), 1.0 / stream if stream else 0.0, dtype=torch.float64),
                     torch.zeros(replayed, dtype=torch.float64),
                     torch.full((second,), self.beta / second if second else 0.0, dtype=torch.float64)]
            weights = self._weights[key] = torch.cat(parts).to(out.device, out.dtype)
        return weights

    # ------------------------------------------------------------ persistence
    def load_state_dict(self, state: dict) -> None:
        """Restore the memory, registering its logits columns first (a fresh plugin has
        none until its first step), at the saved width."""
        store = state.get("storage_policy", {}).get("store", {}) if isinstance(state, dict) else {}
        saved = store.get("extras", {})
        if LOGITS in saved:
            self._ensure_width(int(saved[LOGITS][0][0]), exactly=True)
        super().load_state_dict(state)
        self._width = self._columns()
        widths = store.get("columns", {}).get(WIDTH)
        self._full_width = widths is None or bool((widths == saved[LOGITS][0][0]).all())


def _is_plain_cross_entropy(loss_fn) -> bool:
    """Whether ``loss_fn`` is the mean cross-entropy with no options (what one weighted
    sum of per-row losses can stand in for)."""
    return (type(loss_fn) is nn.CrossEntropyLoss and loss_fn.weight is None and loss_fn.reduction == "mean"
            and loss_fn.label_smoothing == 0.0 and loss_fn.ignore_index == -100)


def _batch_dependent(model: nn.Module) -> bool:
    """Whether a row's output depends on the other rows of its batch (batch normalisation
    in training): then DER++'s second batch needs a forward of its own."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def _build(config, model: nn.Module) -> List:
    options = config.method_options
    return [DERPlugin(config.mem_size, options["alpha"], options.get("beta", 0.0),
                      batch_size_mem=config.batch_size_mem, memmap_dir=config.memmap_dir)]


DER = Method(
    name="der",
    summary="dark experience replay: CE on the stream + alpha * MSE to the logits stored with replayed samples",
    paper=_PAPER, build=_build, options=(_ALPHA,),
    replay_options=("batch_size_mem", "memmap_dir"),
)

DERPP = Method(
    name="derpp",
    summary="DER++: DER + beta * CE on a second, independently drawn memory batch",
    paper=_PAPER, build=_build,
    options=(_ALPHA, _BETA),
    replay_options=("batch_size_mem", "memmap_dir"),
)
