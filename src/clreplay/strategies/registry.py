"""The rehearsal methods, looked up by name (``clreplay run --method``, reports, the bench).

Each method describes itself in a :class:`~clreplay.strategies.base.Method` record
kept in its own module; this table only lists them, so a new method is one file
plus one line here.
"""

from __future__ import annotations

from typing import Dict, List

from clreplay._validation import check_choice
from clreplay.strategies.agem import AGEM
from clreplay.strategies.base import Method, Option
from clreplay.strategies.der import DER, DERPP
from clreplay.strategies.er import ER
from clreplay.strategies.er_ace import ER_ACE
from clreplay.strategies.gdumb import GDUMB
from clreplay.strategies.icarl import ICARL

METHODS: Dict[str, Method] = {m.name: m for m in (ER, DER, DERPP, ER_ACE, AGEM, GDUMB, ICARL)}


def list_methods() -> List[str]:
    """The method names, in the table's order (ER, the default, first).

    >>> list_methods()
    ['er', 'der', 'derpp', 'er-ace', 'agem', 'gdumb', 'icarl']
    """
    return list(METHODS)


def get_method(name: str) -> Method:
    """The method registered as ``name``; an unknown name suggests close ones.

    >>> get_method("derpp").option("beta").default
    1.0
    """
    check_choice("method", name, list_methods())
    return METHODS[name]


def methods_taking(option: str) -> List[str]:
    """The methods that take the option ``option``.

    >>> methods_taking("alpha")
    ['der', 'derpp']
    """
    return [name for name, m in METHODS.items() if any(o.name == option for o in m.options)]


def all_options() -> Dict[str, List[tuple]]:
    """Every option name with ``(method, Option)`` for each method that takes it
    (what the command line turns into flags)."""
    table: Dict[str, List[tuple]] = {}
    for name, method in METHODS.items():
        for option in method.options:
            table.setdefault(option.name, []).append((name, option))
    return table


__all__ = ["METHODS", "Method", "Option", "all_options", "get_method", "list_methods", "methods_taking"]
