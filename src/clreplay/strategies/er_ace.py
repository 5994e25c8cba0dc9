"""ER-ACE: experience replay with an asymmetric cross-entropy.

Caccia et al., "New Insights on Reducing Abrupt Representation Change in Online
Continual Learning", ICLR 2022, Sec. 4 (the ER-ACE loss)::

    L = CE(mask_current(h(x)), y) + CE(h(x'), y')

The incoming samples' cross-entropy is taken over the logits of the classes
present in the current experience so far only (every other logit is set to the
most negative float, so it gets neither probability nor gradient): new classes
then cannot push the old ones down. The replayed samples' cross-entropy is the
ordinary one, over every output. Both terms are means over their own rows. The
memory is a reservoir updated after every step (online replay), as in the paper.

(The authors' code masks only classes seen before and absent from the incoming
batch, leaving classes never seen unmasked; :class:`ERACEPlugin` follows the
paper's rule above.)
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


def _grow(mask: Optional[Tensor], width: int, device) -> Tensor:
    if mask is None:
        return torch.zeros(width, dtype=torch.bool, device=device)
    mask = mask.to(device)
    if len(mask) < width:
        return torch.cat([mask, torch.zeros(width - len(mask), dtype=torch.bool, device=mask.device)])
    return mask


class ERACEPlugin(SingleProcess, OnlineReplayPlugin):
    """ER-ACE: online replay whose loss masks, for the incoming samples, the classes
    not yet present in the current experience (:meth:`criterion`).

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
        self._present: Optional[Tensor] = None  # classes of the current experience so far
        self._seen: Optional[Tensor] = None  # classes of the experiences before it

    @property
    def seen_classes(self) -> List[int]:
        """The classes of every experience so far (the current one included)."""
        masks = [m.cpu() for m in (self._seen, self._present) if m is not None]
        if not masks:
            return []
        seen = _grow(None, max(len(m) for m in masks), "cpu")
        for mask in masks:
            seen[: len(mask)] |= mask
        return torch.nonzero(seen).flatten().tolist()

    def before_training_exp(self, strategy, **kwargs):
        super().before_training_exp(strategy, **kwargs)
        self.start_experience()

    def start_experience(self) -> None:
        """No class is present yet; the previous experience's join the seen ones."""
        if self._present is not None:
            self._seen = self._mask(self.seen_classes)
        self._present = None

    def criterion(self, strategy) -> Tensor:
        mb, out = strategy.mb, strategy.mb_output
        n = stream_rows(mb)
        width = max(out.shape[1], 1)
        y = mb.y[:n]
        self._present = _grow(self._present, width, out.device)
        self._present[y] = True
        loss = strategy.loss_fn(mask_logits(out[:n], self._present[:width]), y)
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
        self._seen, self._present = self._mask(seen), None

    @staticmethod
    def _mask(classes: List[int]) -> Optional[Tensor]:
        if not classes:
            return None
        mask = torch.zeros(max(classes) + 1, dtype=torch.bool)
        mask[torch.tensor(classes)] = True
        return mask


def _build(config, model: nn.Module) -> List:
    return [ERACEPlugin(config.mem_size, batch_size_mem=config.batch_size_mem, memmap_dir=config.memmap_dir)]


ER_ACE = Method(
    name="er-ace",
    summary="ER with asymmetric cross-entropy: stream CE over the current experience's classes only, "
            "replayed samples' CE over all",
    paper="Caccia et al., New Insights on Reducing Abrupt Representation Change in Online CL, ICLR 2022",
    build=_build,
    replay_options=("batch_size_mem", "memmap_dir"),
)
