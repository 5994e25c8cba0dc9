"""The rehearsal methods, looked up by name (``clreplay run --method``, reports, the bench).

Each method describes itself in a :class:`~clreplay.strategies.method.Method` record
kept in its own module; this table only lists them, so a new method is one file
plus one line here.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping

from clreplay.components import Registry
from clreplay.options import Option
from clreplay.strategies.agem import AGEM
from clreplay.strategies.bic import BIC
from clreplay.strategies.cls_er import CLS_ER
from clreplay.strategies.der import DER, DERPP
from clreplay.strategies.er import ER
from clreplay.strategies.er_ace import ER_ACE
from clreplay.strategies.gdumb import GDUMB
from clreplay.strategies.icarl import ICARL
from clreplay.strategies.method import Method
from clreplay.strategies.mir import MIR
from clreplay.strategies.onpro import ONPRO
from clreplay.strategies.scr import SCR
from clreplay.strategies.xder import XDER

METHODS = Registry("method", [ER, DER, DERPP, XDER, ER_ACE, AGEM, GDUMB, ICARL, CLS_ER, MIR, BIC, SCR, ONPRO])


def list_methods() -> List[str]:
    """The method names, in the table's order (ER, the default, first).

    >>> list_methods()
    ['er', 'der', 'derpp', 'xder', 'er-ace', 'agem', 'gdumb', 'icarl', 'cls-er', 'mir', 'bic', 'scr', 'onpro']
    """
    return METHODS.names()


def get_method(name: str) -> Method:
    """The method registered as ``name``; an unknown name suggests close ones.

    >>> get_method("derpp").option("beta").default
    1.0
    """
    return METHODS.get(name)


def methods_taking(option: str) -> List[str]:
    """The methods that take the option ``option``.

    >>> methods_taking("alpha")
    ['der', 'derpp', 'xder']
    """
    return METHODS.taking(option)


def resolve_method_options(name: str, given: Mapping[str, Any]) -> Dict[str, Any]:
    """The options of method ``name``: ``given`` (checked) over its defaults; an option it
    does not take is a ``ValueError`` naming the flag and the methods that take it.

    >>> resolve_method_options("derpp", {"beta": 0.5})["beta"]
    0.5
    >>> resolve_method_options("er", {"alpha": 0.5})
    Traceback (most recent call last):
    ...
    ValueError: --alpha applies to --method der or derpp or xder, got --alpha 0.5 with --method er
    """
    method = get_method(name)
    try:
        return method.resolve(given)
    except KeyError as err:
        key = err.args[0]
        takers = methods_taking(key)
        flag = "--" + str(key).replace("_", "-")
        where = f"applies to --method {' or '.join(takers)}" if takers else "is not an option of any method"
        raise ValueError(f"{flag} {where}, got {flag} {given[key]!r} with --method {name}") from None


def all_options() -> Dict[str, List[tuple]]:
    """Every option name with ``(method, Option)`` for each method that takes it
    (what the command line turns into flags)."""
    return METHODS.options()


__all__ = ["METHODS", "Method", "Option", "all_options", "get_method", "list_methods", "methods_taking",
           "resolve_method_options"]
