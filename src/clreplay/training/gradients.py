"""Gradients summed over the ranks, bucket by bucket while the backward pass runs."""

from __future__ import annotations

import functools
from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn

from clreplay import distributed as idist

#: Buckets of about this many bytes: small enough that the first sums start early in the
#: backward pass, large enough that a collective's fixed cost stays small.
BUCKET_BYTES = 1 << 20


class GradientReducer:
    """Sums the gradients of a model's parameters over the ranks of the process group.

    The parameters that require gradients are put in buckets of about
    ``bucket_bytes`` (one dtype and device each), in reverse order: the order in
    which a backward pass usually produces their gradients. Between :meth:`start`
    and :meth:`finish` (around the strategy's backward pass), a bucket whose
    gradients have all been accumulated starts its ``all_reduce`` at once, in the
    background, while the backward pass goes on: a parameter alone in its bucket (one
    at least as large as a bucket: most of a large model's weights) is summed in
    place, in its own gradient, without a copy; the small ones of a bucket are
    copied into one flat tensor first. Buckets start in the same order on every rank,
    each after the ones before it, so the collectives always match. :meth:`finish`
    starts the buckets not started yet (a parameter that got no gradient on this
    rank counts as zeros), sums which parameters had a gradient (one small
    collective), waits for every sum and gives each parameter the sum as its
    gradient, or no gradient if no rank had one for it. Hooks outside that window
    (another backward pass of a method) do nothing. The buckets are built again
    when the set of parameters that require gradients changes (a model that grows).
    """

    def __init__(self, model: nn.Module, *, bucket_bytes: int = BUCKET_BYTES) -> None:
        self.model = model
        self.bucket_bytes = bucket_bytes
        self._params: List[nn.Parameter] = []
        self._buckets: List[List[nn.Parameter]] = []
        self._hooks: list = []
        self._active = False
        self._ready: List[int] = []
        self._works: List[Optional[Tuple[object, Optional[Tensor]]]] = []
        self._has_grad: List[bool] = []
        self._started = 0

    def _build(self, params: List[nn.Parameter]) -> None:
        for handle in self._hooks:
            handle.remove()
        groups: Dict[tuple, List[List[nn.Parameter]]] = {}
        sizes: Dict[tuple, int] = {}
        for p in reversed(params):
            key = (p.dtype, p.device)
            nbytes = p.numel() * p.element_size()
            buckets = groups.setdefault(key, [[]])
            if buckets[-1] and sizes[key] + nbytes > self.bucket_bytes:
                buckets.append([])
                sizes[key] = 0
            buckets[-1].append(p)
            sizes[key] = sizes.get(key, 0) + nbytes
        self._buckets = [b for buckets in groups.values() for b in buckets]
        self._hooks = [p.register_post_accumulate_grad_hook(functools.partial(self._on_grad, i))
                       for i, bucket in enumerate(self._buckets) for p in bucket]
        self._params = params

    def start(self) -> None:
        """Open the window of one backward pass."""
        params = [p for p in self.model.parameters() if p.requires_grad]
        if len(params) != len(self._params) or any(a is not b for a, b in zip(params, self._params)):
            self._build(params)
        self._ready = [0] * len(self._buckets)
        self._works = [None] * len(self._buckets)
        self._has_grad = []
        self._started = 0
        self._active = True

    def _on_grad(self, bucket: int, param: Tensor) -> None:
        if not self._active:
            return
        self._ready[bucket] += 1
        while (self._started < len(self._buckets)
               and self._ready[self._started] == len(self._buckets[self._started])):
            self._start_bucket(self._started)

    def _start_bucket(self, b: int) -> None:
        params = self._buckets[b]
        self._has_grad += [p.grad is not None for p in params]
        if len(params) == 1:
            p = params[0]
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            elif not p.grad.is_contiguous():  # collectives need dense memory
                p.grad = p.grad.contiguous()
            self._works[b] = (idist.all_reduce_async_(p.grad), None)
        else:
            flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                              for p in params])
            self._works[b] = (idist.all_reduce_async_(flat), flat)
        self._started = b + 1

    def finish(self) -> None:
        """Start what is left, wait for every sum and set the gradients; close the window."""
        try:
            while self._started < len(self._buckets):
                self._start_bucket(self._started)
            if not self._params:
                return
            first = self._params[0]
            # Which parameters had a gradient on some rank: in bucket order, like _has_grad.
            flags = torch.tensor(self._has_grad, dtype=torch.float32).to(first.device)
            flags_work = idist.all_reduce_async_(flags)
            for params, (work, flat) in zip(self._buckets, self._works):
                work.wait()
                if flat is None:
                    continue
                offset = 0
                for p in params:
                    n = p.numel()
                    p.grad = flat[offset : offset + n].view_as(p)
                    offset += n
            flags_work.wait()
            if not all(self._has_grad):  # else every sum counts this rank's gradient
                had = iter((flags > 0).tolist())
                for params in self._buckets:
                    for p in params:
                        if not next(had):
                            p.grad = None
        finally:
            self._active = False
            self._works = []
