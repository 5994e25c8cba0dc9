"""A-GEM: averaged gradient episodic memory.

Chaudhry et al., "Efficient Lifelong Learning with A-GEM", ICLR 2019, Eq. 11:
with ``g`` the gradient of the current mini-batch's loss and ``g_ref`` the
gradient of the loss on a batch drawn at random from the episodic memory (both
flattened over every trainable parameter), the update uses::

    g~ = g - (g . g_ref / g_ref . g_ref) g_ref   if g . g_ref < 0,   else g

so that, to first order, the step never increases the loss on the memory. The
mini-batches themselves hold current samples only; the memory (balanced over
experiences, updated after each one) only provides ``g_ref``.
"""

from __future__ import annotations

from typing import List, Optional

import torch
from torch import Tensor, nn

from clreplay.options import Option
from clreplay.replay.memory_plugin import MemoryPlugin
from clreplay.replay.mixing.draws import MemorySampler
from clreplay.replay.policies.base import StoragePolicy
from clreplay.replay.policies.experience_balanced import ExperienceBalancedStoragePolicy
from clreplay.strategies.method import Method
from clreplay.training.data_parallel import batch_gradient

SAMPLE_SIZE = Option("sample_size", 128, "A-GEM: memory samples per reference gradient", minimum=1)


def project_gradient(g: Tensor, g_ref: Tensor) -> Tensor:
    """A-GEM's projection of the flat gradient ``g`` against the reference ``g_ref``.

    >>> project_gradient(torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0])).tolist()
    [0.5, 0.5]
    >>> project_gradient(torch.tensor([1.0, 1.0]), torch.tensor([1.0, 0.0])).tolist()  # no conflict
    [1.0, 1.0]
    """
    dot = torch.dot(g, g_ref)
    # Without a branch on the host (which would wait for the device): a gradient that does
    # not conflict (also against a zero reference gradient) gets a coefficient of 0.
    coefficient = torch.where(dot < 0, dot / torch.dot(g_ref, g_ref).clamp_min(torch.finfo(g.dtype).tiny), 0.0)
    return g - coefficient * g_ref


class AGEMPlugin(MemoryPlugin):
    """A-GEM: project each step's gradient so it does not conflict with the memory's.

    After the backward pass of every step (once the memory holds anything),
    ``sample_size`` samples are drawn from the memory with the plugin's generator,
    their loss (the strategy's ``loss_fn``) is differentiated with respect to the
    model's trainable parameters (:func:`~clreplay.training.data_parallel.batch_gradient`:
    over several processes each rank differentiates a share of the draw and the
    shares are summed), and the parameters' ``.grad`` are replaced by the projected
    gradient (:func:`project_gradient`). After each experience the memory takes
    samples of it through the storage policy.

    Parameters
    ----------
    mem_size: samples in the episodic memory.
    sample_size: memory samples per reference gradient (Seq-MNIST setting of the
        DER paper: 128).
    storage_policy: default ``ExperienceBalancedStoragePolicy(ext_mem={}, mem_size=mem_size)``:
        an equal share of the memory for each experience seen.
    seed: seeds the draws of reference batches (None: the run's stream).

    Example
    -------
    >>> from clreplay.benchmarks import split_digits
    >>> from clreplay.training import Naive
    >>> agem = AGEMPlugin(mem_size=100, sample_size=32)
    >>> linear = torch.nn.Linear(64, 10)
    >>> strategy = Naive(linear, torch.optim.SGD(linear.parameters(), lr=0.1), train_mb_size=10,
    ...                  plugins=[agem], seed=0)
    >>> strategy.train(split_digits().train_stream[:2])
    >>> agem.projections > 0, [len(g) for g in agem.ext_mem.values()]
    (True, [50, 50])
    """

    seed_name = "agem"
    _state_name = "A-GEM"

    def __init__(self, mem_size: int = 200, sample_size: int = 128, *,
                 storage_policy: Optional[StoragePolicy] = None, seed: Optional[int] = None) -> None:
        self.sample_size = SAMPLE_SIZE.check(sample_size, "sample_size")
        super().__init__(mem_size, storage_policy, seed=seed,
                         default_policy=lambda size: ExperienceBalancedStoragePolicy({}, size))
        self._sampler = MemorySampler(self.storage_policy)
        self._projections = torch.zeros((), dtype=torch.long)

    @property
    def projections(self) -> int:
        """Steps whose gradient was projected so far (a statistic, not saved)."""
        return int(self._projections)

    def after_backward(self, strategy, **kwargs):
        """Replace the gradient by its projection against the memory's reference gradient."""
        batch = self._sampler.draw(self.sample_size, self.generator)
        if batch is None:
            return
        params = [p for p in strategy.model.parameters() if p.requires_grad]
        device = params[0].device if params else strategy.device
        ref = batch_gradient(strategy, batch.x.to(device), batch.y.to(device), params)
        g = _flatten([p.grad for p in params], params)
        projected = project_gradient(g, ref)
        # Counted on the device, read when asked for.
        self._projections = self._projections.to(g.device) + (torch.dot(g, ref) < 0)
        offset = 0
        for p in params:
            n = p.numel()
            p.grad = projected[offset : offset + n].view_as(p).clone()
            offset += n

    def after_training_exp(self, strategy, **kwargs):
        """Store samples of the experience just trained on (every rank alike: checked)."""
        self.storage_policy(strategy)
        self.check_replicated(strategy, f"experience {strategy.experience.current_experience}")


def _flatten(grads, params) -> Tensor:
    return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1)
                      for g, p in zip(grads, params)])


def _build(config, model: nn.Module) -> List:
    return [AGEMPlugin(config.mem_size, config.method_options["sample_size"])]


AGEM = Method(
    name="agem",
    summary="A-GEM: project the gradient when it conflicts with a memory batch's gradient",
    paper="Chaudhry et al., Efficient Lifelong Learning with A-GEM, ICLR 2019",
    build=_build,
    options=(SAMPLE_SIZE,),
    protocol="experience-balanced memory, filled after each experience; replayed only in the reference gradient",
)
