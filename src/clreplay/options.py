"""Typed option records: the one home of every setting's kind, default, bounds, choices and help.

Components describe their options with :class:`Option` records (methods, storage
policies, models, benchmarks, and the run itself); the command line's flags, the
run configuration's checks and the error messages all derive from them, so a
bound or a choice is written once.

>>> alpha = Option("alpha", 0.2, "weight of the logit-matching term", minimum=0.0)
>>> alpha.flag, alpha.check(0.5), alpha.check(1)
('--alpha', 0.5, 1.0)
>>> alpha.check(-1.0)
Traceback (most recent call last):
...
ValueError: --alpha must be a number >= 0.0, got -1.0
"""

from __future__ import annotations

import difflib
import math
import numbers
import os
from dataclasses import dataclass
from typing import Any, Iterable, Optional, Tuple

#: The kinds an option may have.
KINDS = (bool, int, float, str)


@dataclass(frozen=True)
class Option:
    """One setting: ``name`` (the keyword argument, the configuration field, and ``--name``
    with dashes on the command line), its ``default``, a ``help`` line, its ``kind``
    (``bool``, ``int``, ``float`` or ``str``; by default the default's), the bounds
    ``minimum``/``maximum`` of a number, the ``choices`` of a string, whether it may be
    None (``nullable``; a None default implies it) and whether it is a list of values
    (``many``, e.g. the MLP's hidden sizes, at most ``maximum_items`` of them)."""

    name: str
    default: Any
    help: str
    kind: Optional[type] = None
    minimum: Optional[float] = None
    maximum: Optional[float] = None
    choices: Optional[Tuple[Any, ...]] = None
    nullable: bool = False
    many: bool = False
    maximum_items: Optional[int] = None
    #: The bounds exclude themselves: ``minimum < value`` (``lr``), ``value < maximum`` (``momentum``).
    open_minimum: bool = False
    open_maximum: bool = False
    #: A file or folder: a ``str`` or an ``os.PathLike``.
    path: bool = False
    #: The command-line flag, when it is not ``--name`` (``world_size`` is ``--nproc``).
    cli_flag: Optional[str] = None
    #: How an out-of-range value's message states the range, when the bounds read better
    #: in words (``"an int in [0, 2**63 - 1]"``).
    range_text: Optional[str] = None

    def __post_init__(self) -> None:
        kind = self.kind
        if kind is None:
            sample = self.default[0] if self.many and self.default else self.default
            kind = type(sample) if sample is not None else str
            object.__setattr__(self, "kind", kind)
        if kind not in KINDS:
            raise TypeError(f"kind must be one of {[k.__name__ for k in KINDS]}, got {kind!r}")
        if self.default is None:
            object.__setattr__(self, "nullable", True)
        if self.choices is not None:
            object.__setattr__(self, "choices", tuple(self.choices))

    @property
    def flag(self) -> str:
        return self.cli_flag or "--" + self.name.replace("_", "-")

    # ------------------------------------------------------------- checking
    def expected(self) -> str:
        """What the option takes, in words (the middle of its error messages): its kind and
        lower bound (an upper bound is named when a value exceeds it)."""
        if self.choices is not None:
            text = "one of " + ", ".join(repr(c) for c in self.choices)
        elif self.path:
            text = "a path"
        elif self.kind is bool:
            text = "a bool"
        elif self.kind is str:
            text = "a str"
        else:
            noun = "an int" if self.kind is int else "a number"
            low = None if self.minimum is None else self.kind(self.minimum)
            if self.open_maximum and low is not None:
                text = f"{noun} in [{low}, {self.kind(self.maximum)})"
            elif low is not None and low == 0 and self.open_minimum:
                text = "a positive number" if self.kind is float else "a positive int"
            elif low == 1 and self.kind is int:
                text = "a positive int"
            elif low == 0 and self.kind is int:
                text = "a non-negative int"
            elif low is not None:
                text = f"{noun} {'>' if self.open_minimum else '>='} {low}"
            else:
                text = noun
        if self.many:
            text = f"a list of {text.removeprefix('a ').removeprefix('an ')}s" if self.choices is None \
                else f"a list of values, each {text}"
        return text + (" or None" if self.nullable else "")

    def check(self, value: Any, label: Optional[str] = None) -> Any:
        """``value`` converted to the option's kind if it is valid; else a ``TypeError`` or
        ``ValueError`` naming ``label`` (default: the flag), what was expected and ``value``."""
        label = label or self.flag
        if value is None:
            if self.nullable:
                return None
            raise TypeError(f"{label} must be {self.expected()}, got None")
        if self.many:
            if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
                raise TypeError(f"{label} must be {self.expected()}, got {value!r}")
            values = list(value)
            if self.maximum_items is not None and len(values) > self.maximum_items:
                raise ValueError(f"{label} must hold at most {self.maximum_items} values, got {len(values)}")
            return [self._check_one(v, label, whole=value) for v in values]
        return self._check_one(value, label)

    def _check_one(self, value: Any, label: str, whole: Any = None) -> Any:
        shown = value if whole is None else whole
        if self.path:
            if not isinstance(value, (str, os.PathLike)):
                raise TypeError(f"{label} must be {self.expected()}, got {shown!r} ({type(value).__name__})")
            if not str(value).strip():
                raise ValueError(f"{label} must be {self.expected()}, got {shown!r}")
            return value
        if self.kind is bool:
            if not isinstance(value, bool):
                raise TypeError(f"{label} must be {self.expected()}, got {shown!r}")
            return value
        if self.kind is str:
            if not isinstance(value, str):
                raise TypeError(f"{label} must be {self.expected()}, got {shown!r} ({type(value).__name__})")
            if self.choices is not None and value not in self.choices:
                close = difflib.get_close_matches(value, [str(c) for c in self.choices], n=3, cutoff=0.8)
                hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
                raise ValueError(f"{label} must be {self.expected()}, got {value!r}{hint}")
            return value
        integral = isinstance(value, numbers.Integral)
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or (self.kind is int and not integral):
            raise TypeError(f"{label} must be {self.expected()}, got {shown!r} ({type(value).__name__})")
        if self.kind is float and not math.isfinite(value):
            raise ValueError(f"{label} must be {self.expected()}, got {shown!r}")
        low, high = self.minimum, self.maximum
        too_low = low is not None and (value < low or (self.open_minimum and value == low))
        too_high = high is not None and (value > high or (self.open_maximum and value == high))
        if (too_low or too_high) and self.range_text:
            raise ValueError(f"{label} must be {self.range_text}, got {shown!r}")
        if too_low:
            raise ValueError(f"{label} must be {self.expected()}, got {shown!r}")
        if too_high:
            bound = f"below {self.kind(high)}" if self.open_maximum else f"at most {self.kind(high)}"
            raise ValueError(f"{label} must be {bound}, got {shown!r}")
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"{label} must be {self.expected()}, got {shown!r}")
        return self.kind(value)


def option_named(options: Iterable[Option], name: str) -> Option:
    """The option called ``name`` among ``options`` (a ``KeyError`` if none)."""
    for option in options:
        if option.name == name:
            return option
    raise KeyError(name)


def resolve(options: Tuple[Option, ...], given: dict, *, owner: str = "") -> dict:
    """Every option's value: ``given`` (checked) over the defaults. A key that is not one of
    ``options`` is a ``ValueError`` naming it (and ``owner``, what takes the options)."""
    names = [o.name for o in options]
    for key in given:
        if key not in names:
            where = f" of {owner}" if owner else ""
            raise ValueError(f"{'--' + str(key).replace('_', '-')} is not an option{where}; its options "
                             f"are {', '.join(names) or 'none'}")
    return {o.name: o.check(given[o.name]) if o.name in given else o.default for o in options}
