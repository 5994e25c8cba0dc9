"""ER-ACE: experience replay with an asymmetric cross-entropy.

Caccia et al., "New Insights on Reducing Abrupt Representation Change in Online
Continual Learning", ICLR 2022, Sec. 4, Eq. 4 (the ER-ACE loss)::

    L = CE(mask(h(x)), y) + CE(h(x'), y')

The incoming batch's cross-entropy is taken with the logits of the classes seen
before and absent from that batch set to the most negative float (they get
neither probability nor gradient): new classes cannot push the old ones down,
while the incoming batch's classes and the classes never seen compete as usual.
The replayed samples' cross-entropy is the ordinary one, over every output. Both
terms are means over their own rows. The memory is a reservoir updated after
every step (online replay), as in the paper.

As in the authors' code and in mammoth (the reference implementations the
methods table compares with), the first experience trains on the incoming batches
alone, without mask nor replay (nothing seen before, nothing to protect), while
the memory fills. Measured on split Fashion-MNIST (``bench/methods_table.py``,
one epoch, memory 200, 3 seeds), this rule reaches 0.755 where masking every
class outside the current experience's reaches 0.748.
"""

from __future__ import annotations

from typing import List, Optional

import torch
from torch import Tensor, nn

from clreplay.replay.online import OnlineReplayPlugin
from clreplay.strategies.base import Method, SingleProcess, stream_rows


def mask_logits(logits: Tensor, allowed: Tensor) -> Tensor:
    """``logits`` with every class not ``allowed`` (a boolean mask over classes) set to
    the most negative float: they take no part in a softmax.

    >>> out = mask_logits(torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([True, False, True]))
    >>> out[0, 0].item(), out[0, 2].item(), out[0, 1].item() < -1e38
    (1.0, 3.0, True)
    """
    return logits.masked_fill(~allowed, torch.finfo(logits.dtype).min)


class ERACEPlugin(SingleProcess, OnlineReplayPlugin):
    """ER-ACE: online replay whose loss masks, for the incoming samples, the classes
    seen before and absent from their batch (:meth:`criterion`).

    Parameters
    ----------
    mem_size: samples in the reservoir memory.
    batch_size_mem: memory samples per step; default ``train_mb_size``.
    seed: seeds the memory draws (None: the run's stream).

    Example
    -------
    >>> from clreplay.benchmarks import split_digits
    >>> from clreplay.training import Naive
    >>> bench, ace = split_digits(), ERACEPlugin(mem_size=100)
    >>> model = torch.nn.Linear(64, 10)
    >>> optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    >>> Naive(model, optimizer, train_mb_size=10, plugins=[ace], seed=0).train(bench.train_stream[:2])
    >>> ace.seen_classes == sorted(set(bench.class_order[:4]))
    True
    """

    _seed_name = "er_ace"

    def __init__(self, mem_size: int = 200, *, batch_size_mem: Optional[int] = None,
                 seed: Optional[int] = None, memmap_dir=None) -> None:
        from clreplay.replay.policies.reservoir import ReservoirSamplingStoragePolicy

        policy = ReservoirSamplingStoragePolicy({}, mem_size, memmap_dir=memmap_dir)
        super().__init__(mem_size, policy, batch_size_mem=batch_size_mem, seed=seed)
        self._seen: Optional[Tensor] = None  # bool over classes: in some incoming batch so far

    @property
    def seen_classes(self) -> List[int]:
        """The classes of every incoming batch so far."""
        return [] if self._seen is None else torch.nonzero(self._seen.cpu()).flatten().tolist()

    def memory_draws(self, strategy) -> int:
        """No replay in the first experience (nothing seen before it); one draw after."""
        return 0 if strategy.clock.train_exp_counter == 0 else 1

    def criterion(self, strategy) -> Tensor:
        mb, out = strategy.mb, strategy.mb_output
        n = stream_rows(mb)
        y = mb.y[:n]
        width = out.shape[1]
        present = torch.zeros(width, dtype=torch.bool, device=out.device)
        present[y] = True
        seen_before = _widen(self._seen, width, out.device)
        self._seen = seen_before | present
        if strategy.clock.train_exp_counter == 0:  # nothing to protect yet
            return strategy.loss_fn(out[:n], y)
        loss = strategy.loss_fn(mask_logits(out[:n], present | ~seen_before), y)
        if n < len(mb):
            loss = loss + strategy.loss_fn(out[n:], mb.y[n:])
        return loss

    def state_dict(self) -> dict:
        return {**super().state_dict(), "seen_classes": self.seen_classes}

    def load_state_dict(self, state: dict) -> None:
        if not isinstance(state, dict) or "seen_classes" not in state:
            raise KeyError("ER-ACE state must have key 'seen_classes'")
        state = dict(state)
        seen = state.pop("seen_classes")
        super().load_state_dict(state)
        self._seen = None
        if seen:
            self._seen = torch.zeros(max(seen) + 1, dtype=torch.bool)
            self._seen[torch.tensor(seen)] = True


def _widen(mask: Optional[Tensor], width: int, device) -> Tensor:
    """``mask`` (None: no class) as a bool tensor of at least ``width`` classes on ``device``."""
    if mask is None:
        return torch.zeros(width, dtype=torch.bool, device=device)
    mask = mask.to(device)
    if len(mask) < width:
        mask = torch.cat([mask, torch.zeros(width - len(mask), dtype=torch.bool, device=device)])
    return mask


def _build(config, model: nn.Module) -> List:
    return [ERACEPlugin(config.mem_size, batch_size_mem=config.batch_size_mem, memmap_dir=config.memmap_dir)]


ER_ACE = Method(
    name="er-ace",
    summary="ER with asymmetric cross-entropy: stream CE with the classes seen before and absent "
            "from the batch masked, replayed samples' CE over all",
    paper="Caccia et al., New Insights on Reducing Abrupt Representation Change in Online CL, ICLR 2022",
    build=_build,
    replay_options=("batch_size_mem", "memmap_dir"),
)
