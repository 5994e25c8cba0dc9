"""DER and DER++: dark experience replay, matching the logits a sample got when it was seen.

Buzzega et al., "Dark Experience for General Continual Learning: a Strong, Simple
Baseline", NeurIPS 2020. A reservoir memory keeps, with each sample, the logits
``z`` the model gave it in the step that trained on it. Each step trains on the
stream batch and on draws from the memory (the batch's ``"replay"`` and, for
DER++, ``"replay_ce"`` segments); the loss is (their Eq. 6 for DER, Eq. 7 for DER++)::

    CE(h(x), y)                    on the stream
    + alpha * MSE(h(x'), z')       on the first draw, against its stored logits
    + beta  * CE(h(x''), y'')      on the second draw (DER++ only)

MSE is the mean squared difference over the logits (as the authors' code
computes it). Protocol: the stream is offered to the reservoir after every step
of every epoch, as in the authors' code (``store_every_epoch=False``: the first
epoch only), so the stored logits are those of a model that has seen the data.
"""

from __future__ import annotations

from typing import List, Optional

import torch
from torch import Tensor, nn

from clreplay.options import Option
from clreplay.replay.online import OnlineReplayPlugin
from clreplay.replay.policies.reservoir import ReservoirSamplingStoragePolicy
from clreplay.strategies.losses import cross_entropy, logit_mse
from clreplay.strategies.method import Method

PAPER = "Buzzega et al., Dark Experience for General Continual Learning, NeurIPS 2020"
# DER++'s defaults: the paper's Seq-MNIST setting with a memory of 200 (alpha 0.2, beta 1.0).
ALPHA = Option("alpha", 0.2, "weight of DER's logit-matching (MSE) term", minimum=0.0)
# DER's: the paper's Seq-MNIST value for a memory of 500 (0.2 for 200, in one epoch of batches of
# 10). The main job trains 5 epochs of ~45 steps an experience: at 0.2 DER ended at 0.59-0.78 on
# split_digits (seeds 0-3), at 1.0 at 0.86-0.91.
DER_ALPHA = Option("alpha", 1.0, ALPHA.help, minimum=0.0)
BETA = Option("beta", 1.0, "weight of DER++'s cross-entropy on a second memory draw", minimum=0.0)
STORE_EVERY_EPOCH = Option("store_every_epoch", True, "offer the stream to the memory at every epoch "
                           "(mammoth's protocol); false: in the first epoch only (each sample once)")


class DERPlugin(OnlineReplayPlugin):
    """DER (``beta=0``) and DER++ (``beta>0``) on a reservoir that stores logits.

    Online replay (:class:`~clreplay.OnlineReplayPlugin`): each step trains on the
    stream plus ``batch_size_mem`` samples drawn from the memory (and, for DER++,
    another such draw); the stream's samples then go to the reservoir with the
    logits the model gave them in that step (:meth:`stored_columns`). The plugin
    owns the strategy's loss (:meth:`criterion`; the strategy's ``loss_fn`` is the
    cross-entropy used).

    Parameters
    ----------
    mem_size: samples in the memory.
    alpha: weight of the logit-matching term (paper, Seq-MNIST, memory 200: 0.2).
    beta: weight of the cross-entropy on a second memory draw; 0 is DER (DER++: 1.0).
    batch_size_mem: memory samples per draw; default ``train_mb_size``.
    seed: seeds the memory draws (None: the run's stream).
    memmap_dir: keep the memory in memory-mapped files there.
    store_every_epoch: offer the stream to the reservoir at every epoch (the default).

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

    seed_name = "der"

    def __init__(self, mem_size: int = 200, alpha: float = 0.2, beta: float = 0.0, *,
                 batch_size_mem: Optional[int] = None, seed: Optional[int] = None, memmap_dir=None,
                 store_every_epoch: bool = True) -> None:
        self.alpha = ALPHA.check(alpha, "alpha")
        self.beta = BETA.check(beta, "beta")
        policy = ReservoirSamplingStoragePolicy({}, mem_size, memmap_dir=memmap_dir)
        super().__init__(mem_size, policy, batch_size_mem=batch_size_mem, seed=seed,
                         store_every_epoch=store_every_epoch)
        self.draws = ("replay", "replay_ce") if self.beta > 0 else ("replay",)

    def after_forward(self, strategy, **kwargs):
        """The stored logits follow the head's width (a head that grows: the logits of
        its new classes read NaN for the rows stored before, and are not compared)."""
        width = strategy.mb_output.shape[1]
        spec = self.storage_policy.store.extras.get("logits")
        if spec is None or spec.shape[0] < width:
            self.storage_policy.store.ensure_column("logits", (width,), torch.float32, fill=float("nan"))

    def criterion(self, strategy) -> Tensor:
        """CE on the stream (+ beta * CE on the second draw) + alpha * MSE on the first draw."""
        mb, out = strategy.mb, strategy.mb_output
        loss = cross_entropy(out, mb, {"stream": 1.0, "replay_ce": self.beta}, strategy.loss_fn)
        if "replay" in mb and self.alpha > 0:
            loss = torch.add(loss, logit_mse(out, mb, "replay"), alpha=self.alpha)  # loss + alpha * MSE
        return loss

    def stored_columns(self, strategy):
        """The logits the stream rows got in this step, computed before its update."""
        return {"logits": strategy.mb_output[strategy.mb.stream.slice].detach()}


def _build(config, model: nn.Module) -> List:
    options = config.method_options
    return [DERPlugin(config.mem_size, options["alpha"], options.get("beta", 0.0),
                      batch_size_mem=config.batch_size_mem, memmap_dir=config.memmap_dir,
                      store_every_epoch=options["store_every_epoch"])]


_PROTOCOL = "online reservoir, the stream offered after every step of every epoch (mammoth's)"

DER = Method(
    name="der",
    summary="dark experience replay: CE on the stream + alpha * MSE to the logits stored with replayed samples",
    paper=PAPER, build=_build, options=(DER_ALPHA, STORE_EVERY_EPOCH),
    replay_options=("batch_size_mem", "memmap_dir"), protocol=_PROTOCOL,
)

DERPP = Method(
    name="derpp",
    summary="DER++: DER + beta * CE on a second, independently drawn memory batch",
    paper=PAPER, build=_build, options=(ALPHA, BETA, STORE_EVERY_EPOCH),
    replay_options=("batch_size_mem", "memmap_dir"), protocol=_PROTOCOL,
)
