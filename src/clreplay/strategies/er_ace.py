"""ER-ACE: experience replay with an asymmetric cross-entropy.

Caccia et al., "New Insights on Reducing Abrupt Representation Change in Online
Continual Learning", ICLR 2022, Sec. 4 (the ER-ACE loss)::

    L = CE(mask_current(h(x)), y) + CE(h(x'), y')

The stream's cross-entropy is taken over the logits of the classes present in the
current experience so far only (every other logit is set to the most negative
float, so it gets neither probability nor gradient): new classes then cannot push
the old ones down. The replayed samples' cross-entropy (the ``"replay"`` draw) is
the ordinary one, over every output. Both terms are means over their own rows.
The memory is a reservoir updated after every step (online replay), as in the
paper. (The authors' code masks only classes seen before and absent from the
incoming batch, leaving classes never seen unmasked; this follows the paper's rule.)
"""

from __future__ import annotations

from typing import List, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from clreplay.replay.online import OnlineReplayPlugin
from clreplay.replay.policies.reservoir import ReservoirSamplingStoragePolicy
from clreplay.strategies.der import STORE_EVERY_EPOCH
from clreplay.strategies.losses import is_plain_cross_entropy, segment_mean
from clreplay.strategies.method import Method


def mask_logits(logits: Tensor, allowed: Tensor) -> Tensor:
    """``logits`` with every class not ``allowed`` (a boolean mask over classes) set to
    the most negative float: they take no part in a softmax.

    >>> out = mask_logits(torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([True, False, True]))
    >>> out[0, 0].item(), out[0, 2].item(), out[0, 1].item() < -1e38
    (1.0, 3.0, True)
    """
    return logits.masked_fill(~allowed, torch.finfo(logits.dtype).min)


class ERACEPlugin(OnlineReplayPlugin):
    """ER-ACE: online replay whose stream loss masks the classes not yet present in the
    current experience (:meth:`criterion`).

    Parameters
    ----------
    mem_size: samples in the reservoir memory.
    batch_size_mem: memory samples per step; default ``train_mb_size``.
    seed: seeds the memory draws (None: the run's stream).
    memmap_dir: keep the memory in memory-mapped files there.
    store_every_epoch: offer the stream to the reservoir at every epoch (the default).

    Example
    -------
    >>> from clreplay.benchmarks import split_digits
    >>> from clreplay.training import Naive
    >>> bench, ace = split_digits(), ERACEPlugin(mem_size=100)
    >>> model = torch.nn.Linear(64, 10)
    >>> optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    >>> Naive(model, optimizer, train_mb_size=10, plugins=[ace], seed=0).train(bench.train_stream[:2])
    >>> ace.present_classes == sorted(bench.class_order[2:4])
    True
    """

    seed_name = "er_ace"
    draws = ("replay",)

    def __init__(self, mem_size: int = 200, *, batch_size_mem: Optional[int] = None,
                 seed: Optional[int] = None, memmap_dir=None, store_every_epoch: bool = True) -> None:
        policy = ReservoirSamplingStoragePolicy({}, mem_size, memmap_dir=memmap_dir)
        super().__init__(mem_size, policy, batch_size_mem=batch_size_mem, seed=seed,
                         store_every_epoch=store_every_epoch)
        self._present: Optional[Tensor] = None  # classes of the current experience so far

    @property
    def present_classes(self) -> List[int]:
        """The classes of the current experience seen so far (the stream's allowed logits)."""
        return [] if self._present is None else torch.nonzero(self._present).flatten().tolist()

    def before_training_exp(self, strategy, **kwargs):
        super().before_training_exp(strategy, **kwargs)
        if not strategy.resuming_experience:  # else the checkpoint holds the classes so far
            self._present = None

    def criterion(self, strategy) -> Tensor:
        mb, out = strategy.mb, strategy.mb_output
        stream = mb.stream
        y = mb.y[stream.slice]
        if self._present is None or len(self._present) != out.shape[1]:
            self._present = _grow(self._present, out.shape[1], out.device)
        whole = mb.global_batch  # the classes the step's whole stream batch brings
        self._present[whole.y[whole.stream.slice].to(out.device)] = True
        loss = self._ce(strategy, mask_logits(out[stream.slice], self._present), y, mb, "stream")
        if "replay" in mb:
            replay = mb.segment("replay").slice
            loss = loss + self._ce(strategy, out[replay], mb.y[replay], mb, "replay")
        return loss

    @staticmethod
    def _ce(strategy, logits: Tensor, y: Tensor, mb, name: str) -> Tensor:
        """The mean cross-entropy of segment ``name`` (the strategy's ``loss_fn`` if it is not the plain one)."""
        if is_plain_cross_entropy(strategy.loss_fn):
            return segment_mean(F.cross_entropy(logits, y, reduction="none"), mb, name)
        return strategy.loss_fn(logits, y) if len(y) else logits.sum() * 0.0

    def _extra_state(self) -> dict:
        return {"present_classes": self.present_classes}

    def _load_extra_state(self, state: dict) -> None:
        classes = state["present_classes"]
        self._present = None
        if classes:
            self._present = _grow(None, max(classes) + 1, "cpu")
            self._present[torch.tensor(classes)] = True


def _grow(mask: Optional[Tensor], width: int, device) -> Tensor:
    """``mask`` (None: no class) over ``width`` classes, on ``device``."""
    grown = torch.zeros(width, dtype=torch.bool, device=device)
    if mask is not None:
        n = min(len(mask), width)
        grown[:n] = mask[:n].to(device)
    return grown


def _build(config, model: nn.Module) -> List:
    return [ERACEPlugin(config.mem_size, batch_size_mem=config.batch_size_mem, memmap_dir=config.memmap_dir,
                        store_every_epoch=config.method_options["store_every_epoch"])]


ER_ACE = Method(
    name="er-ace",
    summary="ER with asymmetric cross-entropy: stream CE over the current experience's classes only, "
            "replayed samples' CE over all",
    paper="Caccia et al., New Insights on Reducing Abrupt Representation Change in Online CL, ICLR 2022",
    build=_build, options=(STORE_EVERY_EPOCH,), replay_options=("batch_size_mem", "memmap_dir"),
    protocol="online reservoir, the stream offered after every step of every epoch (mammoth's)",
)
