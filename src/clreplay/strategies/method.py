"""Method: a rehearsal method as the registry, the command line and reports see it.

A method is a record kept next to its plugin, in the method's own file: a registry
``name`` (what ``clreplay run --method`` takes), a one-line ``summary``, the
``paper`` it implements, its hyper-parameters (:class:`~clreplay.options.Option`
records: name, default, help, bounds), the run options it takes beyond
``mem_size``, which storage ``protocol`` it follows, and a ``build`` function that
turns a run's configuration into the plugins a strategy needs.
:mod:`clreplay.strategies.registry` lists the records; the command line's flags,
the run configuration's checks and the reports read them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Tuple

from torch import nn

from clreplay.options import Option, option_named
from clreplay.training.plugin import StrategyPlugin

#: ``build(config, model) -> plugins``: the plugins of a method for a run configuration
#: (a :class:`~clreplay.run_config.RunConfig`, validated, whose ``method_options`` are resolved).
Build = Callable[[Any, nn.Module], List[StrategyPlugin]]


@dataclass(frozen=True)
class Method:
    """A rehearsal method (see the module's description).

    ``replay_options`` names the run options beyond ``mem_size`` that the method
    takes (``batch_size_mem``, ``memmap_dir``); the others are refused.
    ``protocol`` says in words when samples reach its memory.

    >>> m = Method("toy", "a toy", "nobody", lambda config, model: [],
    ...            options=(Option("alpha", 0.2, "weight", minimum=0.0),))
    >>> m.resolve({}), m.resolve({"alpha": 1})
    ({'alpha': 0.2}, {'alpha': 1.0})
    >>> m.describe({"alpha": 1.0})
    'toy (alpha 1.0)'
    """

    name: str
    summary: str
    paper: str
    build: Build
    options: Tuple[Option, ...] = ()
    replay_options: Tuple[str, ...] = ()
    protocol: str = ""

    def option(self, name: str) -> Option:
        return option_named(self.options, name)

    def resolve(self, given: Mapping[str, Any]) -> Dict[str, Any]:
        """Every option's value: ``given`` (checked, named by flag) over the defaults. An
        option the method does not take is a ``KeyError`` naming it."""
        if not isinstance(given, Mapping):
            raise TypeError(f"method_options must be a dict, got {type(given).__name__}")
        names = [option.name for option in self.options]
        for key in given:
            if key not in names:
                raise KeyError(key)
        return {o.name: o.check(given[o.name]) if o.name in given else o.default for o in self.options}

    def describe(self, options: Mapping[str, Any]) -> str:
        """``name`` with its option values, e.g. ``derpp (alpha 0.2, beta 1.0)``."""
        values = ", ".join(f"{key.replace('_', ' ')} {value}" for key, value in options.items())
        return f"{self.name} ({values})" if values else self.name
