"""Components that describe themselves, and the one registry shape they are looked up in:
one source for the command line, the run configuration's checks, reports and checkpoints."""

from __future__ import annotations

import fnmatch
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Tuple


class Described:
    """Mixin: a component's registry ``name``, a one-line ``summary`` and its ``options``.

    ``options`` are the :class:`~clreplay.options.Option` records of the keyword
    arguments (beyond the common ones) that define the component; :meth:`describe`
    reports their values, so a checkpoint can tell whether it was saved by the same
    kind of component and a report can say what ran. ``needs_model`` says whether it
    reads a model (selection by features or outputs).

    >>> from clreplay.options import Option
    >>> class Toy(Described):
    ...     name, summary, options = "toy", "a toy component", (Option("width", 1, "its width"),)
    ...     def __init__(self, width):
    ...         self.width = width
    >>> Toy(3).describe()
    {'name': 'toy', 'type': 'Toy', 'width': 3}
    """

    name: str = ""
    summary: str = ""
    options: Tuple[Any, ...] = ()
    needs_model: bool = False

    def describe(self) -> Dict[str, Any]:
        info: Dict[str, Any] = {"name": self.name or type(self).__name__, "type": type(self).__name__}
        for option in self.options:
            option = option.name
            value = getattr(self, option, None)
            info[option] = value if isinstance(value, (int, float, str, bool, type(None))) else str(value)
        return info


class Registry(Mapping):
    """Components of one kind, looked up by name: benchmarks, models, storage policies,
    selection strategies and methods all live in one of these.

    An entry is anything with a ``name``, a one-line ``summary`` and its ``options``
    (:class:`~clreplay.options.Option` records): a class that describes itself, or a
    record such as a :class:`~clreplay.strategies.method.Method`. The command line's
    choices and flags, the run configuration's checks and the reports read them here;
    an unknown name is a ``ValueError`` suggesting close ones.

    >>> from types import SimpleNamespace
    >>> from clreplay.options import Option
    >>> tiny = Registry("toy", [SimpleNamespace(name="a", summary="the a", options=(Option("k", 1, "k"),)),
    ...                         SimpleNamespace(name="b", summary="the b", options=())])
    >>> list(tiny), tiny.taking("k"), tiny.describe()
    (['a', 'b'], ['a'], 'a (the a), b (the b)')
    >>> tiny.get("c")
    Traceback (most recent call last):
    ...
    ValueError: toy must be one of 'a', 'b', got 'c'
    """

    def __init__(self, kind: str, entries: Iterable[Any]) -> None:
        self.kind = kind
        self._entries: Dict[str, Any] = {}
        for entry in entries:
            if entry.name in self._entries:
                raise ValueError(f"{kind} {entry.name!r} is registered twice")
            self._entries[entry.name] = entry

    def __getitem__(self, name: str) -> Any:
        return self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def names(self, pattern: str = "*") -> List[str]:
        """Registered names matching a glob ``pattern``, in registration order."""
        return [name for name in self._entries if fnmatch.fnmatch(name, pattern)]

    def get(self, name: str, label: Optional[str] = None) -> Any:  # type: ignore[override]
        """The entry ``name``; an unknown name is a ``ValueError`` naming ``label`` (default:
        the kind) and the close matches."""
        from clreplay._validation import check_choice

        check_choice(label or self.kind, name, list(self._entries))
        return self._entries[name]

    def taking(self, option: str) -> List[str]:
        """The entries that take the option ``option``."""
        return [name for name, entry in self._entries.items()
                if any(o.name == option for o in getattr(entry, "options", ()))]

    def options(self) -> Dict[str, List[Tuple[str, Any]]]:
        """Every option name with ``(entry, Option)`` for each entry that takes it."""
        table: Dict[str, List[Tuple[str, Any]]] = {}
        for name, entry in self._entries.items():
            for option in getattr(entry, "options", ()):
                table.setdefault(option.name, []).append((name, option))
        return table

    def describe(self) -> str:
        """``name (summary), ...`` for help texts."""
        return ", ".join(f"{name} ({entry.summary})" for name, entry in self._entries.items())
