"""GDumb: a greedy class-balanced memory, and a model trained from scratch on it alone.

Prabhu et al., "GDumb: A Simple Approach that Questions Our Progress in Continual
Learning", ECCV 2020, Sec. 3. The sampler takes the stream one sample at a time:
while the memory has room it stores the sample; when full, a sample of class
``y`` whose class holds fewer than ``k / |Y|`` samples (``k`` the memory size,
``|Y|`` the classes seen, ``y`` included) replaces a random sample of the
largest class. The learner never trains on the stream: at each evaluation point
(here after each experience) the model is re-initialised and trained on the
memory only; it is evaluated as it stands.
"""

from __future__ import annotations

from typing import Dict, Iterator, List, Optional

import torch
from torch import nn

from clreplay._seeding import global_rng_seeded
from clreplay.data.batching import BatchSource, DatasetBatchSource
from clreplay.data.dataset import ClassificationDataset
from clreplay.options import Option
from clreplay.replay.memory_plugin import MemoryPlugin
from clreplay.replay.mixing.balanced import split_evenly
from clreplay.replay.policies.base import StoragePolicy, experience_of
from clreplay.replay.storage.store import GroupPlan
from clreplay.strategies.method import Method

PASSES = Option("passes", 128, "GDumb: passes over the memory at each evaluation point", minimum=1)


class GreedyClassBalancedStoragePolicy(StoragePolicy):
    """GDumb's greedy class-balanced sampler, fed an experience in its dataset order.

    Groups are keyed by class, each in order of arrival. A sample that would
    replace one draws the replaced position uniformly within the largest class
    (the lowest label among equally large ones) from the policy's generator.

    >>> from types import SimpleNamespace
    >>> from clreplay.benchmarks import Experience
    >>> policy = GreedyClassBalancedStoragePolicy({}, mem_size=4, seed=0)
    >>> data = ClassificationDataset(torch.zeros(7, 1), torch.tensor([0, 0, 0, 0, 1, 1, 1]))
    >>> policy(SimpleNamespace(experience=Experience(data, 0, [0, 1])))
    >>> {c: len(g) for c, g in policy.ext_mem.items()}
    {0: 2, 1: 2}
    """

    name = "greedy"
    summary = "GDumb's greedy class-balanced sampler"

    def __init__(self, ext_mem: Dict, mem_size: int, *, seed: Optional[int] = None) -> None:
        super().__init__(ext_mem, mem_size, seed=seed)
        self.seen_classes: set = set(ext_mem)

    def __call__(self, strategy, *, columns=None, **kwargs) -> None:
        experience = experience_of(strategy)
        data: ClassificationDataset = experience.dataset
        labels = data.targets.cpu().tolist()
        # A class's members in arrival order: store rows as -(row + 1), new positions as >= 0.
        members: Dict[int, List[int]] = {c: [-(r + 1) for r in rows.tolist()]
                                         for c, rows in self._stored_rows().items()}
        total = sum(len(m) for m in members.values())
        draws = torch.rand(len(labels), dtype=torch.float64, generator=self.generator).tolist()
        for position, y in enumerate(labels):
            self.seen_classes.add(y)
            own = members.setdefault(y, [])
            if total < self.mem_size:
                own.append(position)
                total += 1
            elif len(own) < self.mem_size / len(self.seen_classes):
                largest = max(sorted(members), key=lambda c: len(members[c]))
                victims = members[largest]
                del victims[int(draws[position] * len(victims))]
                own.append(position)
        plans = {}
        for c, items in members.items():
            if not items:
                continue
            new = [i for i in items if i >= 0]
            old = [-(i + 1) for i in items if i < 0]
            keep, n_new, n_old = [], 0, 0
            for i in items:
                if i >= 0:
                    keep.append(n_new)
                    n_new += 1
                else:
                    keep.append(len(new) + n_old)
                    n_old += 1
            plans[c] = GroupPlan(torch.tensor(new, dtype=torch.long), torch.tensor(old, dtype=torch.long),
                                 torch.tensor(keep, dtype=torch.long))
        self._commit(plans, data, origin=experience.current_experience, columns=columns)

    def _extra_state(self) -> dict:
        return {"seen_classes": sorted(self.seen_classes)}

    def _load_extra_state(self, state: dict) -> None:
        self.seen_classes = set(state["seen_classes"])


def reinitialise(model: nn.Module, seed: int) -> None:
    """Draw fresh weights for ``model``: every module that holds parameters calls its
    ``reset_parameters()`` under torch's generators seeded with ``seed`` (and restored
    after, so the caller's random state is untouched).

    >>> model = nn.Linear(3, 2)
    >>> reinitialise(model, 5); first = model.weight.clone()
    >>> reinitialise(model, 5); torch.equal(first, model.weight)
    True
    """
    owners = [(name, m) for name, m in model.named_modules() if next(m.parameters(recurse=False), None) is not None]
    for name, module in owners:
        if not callable(getattr(module, "reset_parameters", None)):
            raise TypeError(
                f"model must be re-initialisable: module {name or '<root>'!r} ({type(module).__name__}) "
                "holds parameters but has no reset_parameters()"
            )
    devices = sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})
    with global_rng_seeded(seed, devices=devices):
        for _, module in owners:
            module.reset_parameters()


class _MemoryPasses(BatchSource):
    """Loop epoch ``e`` of the experience makes ``shares[e]`` shuffled passes over ``memory``."""

    def __init__(self, memory: ClassificationDataset, batch_size: int, shares: List[int],
                 generator: torch.Generator) -> None:
        self.source = DatasetBatchSource(memory, batch_size, shuffle=True, generator=generator)
        self.shares, self.epoch = shares, 0

    def __len__(self) -> int:
        return len(self.source) * (self.shares[self.epoch] if self.epoch < len(self.shares) else 0)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch}

    def load_state_dict(self, state: dict) -> None:
        self.epoch = int(state["epoch"])

    def __iter__(self) -> Iterator:
        passes = self.shares[self.epoch] if self.epoch < len(self.shares) else 0
        self.epoch += 1
        for _ in range(passes):
            yield from self.source


class GDumbPlugin(MemoryPlugin):
    """GDumb: fill the greedy memory from the experience, then re-initialise the model
    and train it on the memory only.

    ``before_training_exp`` feeds the whole experience to a
    :class:`GreedyClassBalancedStoragePolicy`, re-initialises the model with a seed
    drawn from the plugin's generator (:func:`reinitialise`), clears the optimiser's
    state (e.g. momentum), and makes the strategy train on the memory: ``passes``
    shuffled passes of ``train_mb_size`` samples in all, split over the strategy's
    ``train_epochs`` (``passes`` must be at least ``train_epochs``). The stream is
    never trained on.

    Parameters
    ----------
    mem_size: samples in the memory.
    passes: passes over the memory at each evaluation point (the paper's MNIST runs: 128).
    seed: seeds the sampler's replacements and the re-initialisations (None: the run's stream).

    Example
    -------
    >>> from clreplay.benchmarks import split_digits
    >>> from clreplay.training import Naive
    >>> gdumb, experiences = GDumbPlugin(mem_size=100, passes=4), split_digits().train_stream[:2]
    >>> net = torch.nn.Linear(64, 10)
    >>> strategy = Naive(net, torch.optim.SGD(net.parameters(), lr=0.1), plugins=[gdumb],
    ...                  train_mb_size=10, seed=0)
    >>> strategy.train(experiences)
    >>> sorted(len(g) for g in gdumb.ext_mem.values()), strategy.clock.train_samples
    ([25, 25, 25, 25], 800)
    """

    seed_name = "gdumb"
    _state_name = "GDumb"

    def __init__(self, mem_size: int = 200, *, passes: int = 128, seed: Optional[int] = None) -> None:
        self.passes = PASSES.check(passes, "passes")
        super().__init__(mem_size, None, seed=seed,
                         default_policy=lambda size: GreedyClassBalancedStoragePolicy({}, size))

    def before_training_exp(self, strategy, **kwargs):
        epochs = strategy.train_epochs
        if epochs > self.passes:
            raise ValueError(
                f"passes ({self.passes}) must be at least the strategy's train_epochs ({epochs}): "
                "each epoch makes at least one pass over the memory"
            )
        if not strategy.resuming_experience:  # else the checkpoint holds the filled memory and new model
            self.storage_policy(strategy)
            self.check_replicated(strategy, f"experience {strategy.experience.current_experience}")
            reinitialise(strategy.model, int(torch.randint(0, 2**62, (1,), generator=self.generator)))
            strategy.optimizer.state.clear()
        groups = [g for g in self.ext_mem.values() if len(g) > 0]
        memory = ClassificationDataset.concat(groups) if groups else experience_of(strategy).dataset.subset([])
        shares = split_evenly(self.passes, epochs) if epochs else []
        strategy.batch_source = _MemoryPasses(memory, strategy.train_mb_size, shares, strategy.generator)


def _build(config, model: nn.Module) -> List:
    return [GDumbPlugin(config.mem_size, passes=config.method_options["passes"])]


GDUMB = Method(
    name="gdumb",
    summary="GDumb: greedy class-balanced memory; retrain from scratch on the memory only",
    paper="Prabhu et al., GDumb: A Simple Approach that Questions Our Progress in CL, ECCV 2020",
    build=_build,
    options=(PASSES,),
    protocol="greedy class-balanced memory, filled from each experience before training on the memory only",
)
