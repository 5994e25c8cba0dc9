"""What every rehearsal method shares: how it describes itself, and a draw from its memory.

A method is a :class:`Method` record kept next to its plugin: a registry
``name`` (what ``clreplay run --method`` takes), a one-line ``summary``, the
``paper`` it implements, its hyper-parameters (:class:`Option`: name, default,
help, range) and a ``build`` function that turns a run's configuration into the
plugins a strategy needs. :mod:`clreplay.strategies.registry` lists the records;
the command line, the run configuration's checks and the reports read them.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import torch
from torch import nn

from clreplay.data.minibatch import MiniBatch
from clreplay.replay.mixing.draws import MemoryReader, memory_reader, sample_without_replacement
from clreplay.replay.policies.base import StoragePolicy
from clreplay.training.plugin import StrategyPlugin


@dataclass(frozen=True)
class Option:
    """One hyper-parameter of a method: ``name`` (the keyword argument, and
    ``--name`` with dashes on the command line), its ``default`` (the paper's
    setting for MNIST-like data), a ``help`` line, its ``kind`` (``float`` or
    ``int``) and the smallest value it takes.

    >>> alpha = Option("alpha", 0.2, "weight of the logit-matching term")
    >>> alpha.flag, alpha.check(0.5)
    ('--alpha', 0.5)
    >>> alpha.check(-1.0)
    Traceback (most recent call last):
    ...
    ValueError: --alpha must be a number >= 0.0, got -1.0
    """

    name: str
    default: Any
    help: str
    kind: type = float
    minimum: float = 0.0

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def check(self, value: Any, label: Optional[str] = None) -> Any:
        """``value`` converted to ``kind`` if it is in range; else an error naming ``label``
        (default: the flag)."""
        label = label or self.flag
        expected = f"{'an int' if self.kind is int else 'a number'} >= {self.kind(self.minimum)}"
        integral = isinstance(value, numbers.Integral)
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or (self.kind is int and not integral):
            raise TypeError(f"{label} must be {expected}, got {value!r} ({type(value).__name__})")
        if not value >= self.minimum or (self.kind is float and value != value):
            raise ValueError(f"{label} must be {expected}, got {value!r}")
        return self.kind(value)


#: ``build(config, model) -> plugins``: the plugins of a method for a run configuration
#: (a :class:`~clreplay.run.RunConfig`, validated, whose ``method_options`` are resolved).
Build = Callable[[Any, nn.Module], List[StrategyPlugin]]


@dataclass(frozen=True)
class Method:
    """A rehearsal method as the registry, the command line and reports see it.

    ``replay_options`` names the run options beyond ``mem_size`` that the method
    takes (``batch_size_mem``, ``memmap_dir``); the others are refused.
    """

    name: str
    summary: str
    paper: str
    build: Build
    options: Tuple[Option, ...] = ()
    replay_options: Tuple[str, ...] = ()

    def option(self, name: str) -> Option:
        for option in self.options:
            if option.name == name:
                return option
        raise KeyError(name)

    def resolve(self, given: Mapping[str, Any]) -> Dict[str, Any]:
        """Every option's value: ``given`` (checked) over the defaults. An option the
        method does not take is a ``ValueError`` naming its flag.

        >>> m = Method("toy", "a toy", "nobody", lambda config, model: [],
        ...            options=(Option("alpha", 0.2, "weight"),))
        >>> m.resolve({}), m.resolve({"alpha": 1})
        ({'alpha': 0.2}, {'alpha': 1.0})
        """
        if not isinstance(given, Mapping):
            raise TypeError(f"method_options must be a dict, got {type(given).__name__}")
        names = [option.name for option in self.options]
        for key in given:
            if key not in names:
                from clreplay.strategies.registry import methods_taking

                takers = methods_taking(key)
                flag = "--" + str(key).replace("_", "-")
                where = (f"applies to --method {' or '.join(takers)}" if takers
                         else "is not an option of any method")
                raise ValueError(f"{flag} {where}, got {flag} {given[key]!r} with --method {self.name}")
        return {o.name: o.check(given[o.name]) if o.name in given else o.default for o in self.options}

    def describe(self, options: Mapping[str, Any]) -> str:
        """``name`` with its option values, e.g. ``derpp (alpha 0.2, beta 1.0)``."""
        values = ", ".join(f"{key.replace('_', ' ')} {value}" for key, value in options.items())
        return f"{self.name} ({values})" if values else self.name


class MemorySampler:
    """Draws samples uniformly from the whole memory of ``policy``, read in place in its
    store. The reader of the memory is kept while the policy's groups stay the same
    views (rows overwritten in place are read as they are now), so a draw per step
    costs a few tensor operations.

    >>> from types import SimpleNamespace
    >>> from clreplay import ClassificationDataset, ReservoirSamplingStoragePolicy
    >>> from clreplay.benchmarks import Experience
    >>> policy = ReservoirSamplingStoragePolicy({}, mem_size=4, seed=0)
    >>> sampler = MemorySampler(policy)
    >>> sampler.draw(3, torch.Generator()) is None   # nothing stored yet
    True
    >>> data = ClassificationDataset(torch.arange(6.).unsqueeze(1), torch.arange(6))
    >>> policy(SimpleNamespace(experience=Experience(data, 0, list(range(6)))))
    >>> batch = sampler.draw(3, torch.Generator().manual_seed(0))
    >>> len(batch), bool(batch.from_memory.all()), len(batch.memory_rows)
    (3, True, 3)
    """

    def __init__(self, policy: StoragePolicy) -> None:
        self.policy = policy
        self._reader: Optional[MemoryReader] = None

    def draw(self, count: int, generator: torch.Generator, *, extras: bool = True) -> Optional[MiniBatch]:
        """``min(count, memory size)`` distinct samples drawn with ``generator`` (with the
        store's extra columns unless ``extras`` is False); None while the memory is empty."""
        reader = self._reader = memory_reader(self.policy, previous=self._reader)
        if reader is None:
            return None
        rows = reader.rows(sample_without_replacement(len(reader.memory), count, generator))
        y, t = reader.labels(rows)
        return MiniBatch(reader.x(rows), y, t, from_memory=torch.ones(len(rows), dtype=torch.bool, device=y.device),
                         memory_rows=reader.store_rows(rows), extras=reader.extras(rows) if extras else {})


def draw_from_memory(policy: StoragePolicy, count: int, generator: torch.Generator) -> Optional[MiniBatch]:
    """One draw of :class:`MemorySampler` (A-GEM's reference batch, DER++'s second batch)."""
    return MemorySampler(policy).draw(count, generator)


class SingleProcess:
    """Mixin of the methods not yet proven over several processes: ``setup`` refuses a
    run context with ``world_size > 1`` (their extra forward and backward passes, masks
    and gradient projections are per process; only ER's memory is checked to stay
    identical on every rank)."""

    def setup(self, context) -> None:
        if context.world_size > 1:
            raise ValueError(
                f"{type(self).__name__} runs in one process; got a run context with world_size "
                f"{context.world_size} (distributed training supports ER: ReplayPlugin, OnlineReplayPlugin)"
            )
        super().setup(context)


def stream_rows(mb: MiniBatch) -> int:
    """How many rows of ``mb`` are current data: replay batch sources put them first
    (counted from the store rows when the batch has them: no device sync)."""
    return len(mb) - (len(mb.memory_rows) if mb.memory_rows is not None else mb.n_memory)
