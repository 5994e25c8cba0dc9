"""Components that describe themselves: one source for the registry, the CLI, reports and checkpoints."""

from __future__ import annotations

from typing import Any, Dict, Tuple


class Described:
    """Mixin: a component's registry ``name``, a one-line ``summary`` and its ``options``.

    ``options`` names the keyword arguments (beyond the common ones) that define
    the component; :meth:`describe` reports their values, so a checkpoint can tell
    whether it was saved by the same kind of component and a report can say what
    ran. ``needs_model`` says whether it reads a model (selection by features or
    outputs).

    >>> class Toy(Described):
    ...     name, summary, options = "toy", "a toy component", ("width",)
    ...     def __init__(self, width):
    ...         self.width = width
    >>> Toy(3).describe()
    {'name': 'toy', 'type': 'Toy', 'width': 3}
    """

    name: str = ""
    summary: str = ""
    options: Tuple[str, ...] = ()
    needs_model: bool = False

    def describe(self) -> Dict[str, Any]:
        info: Dict[str, Any] = {"name": self.name or type(self).__name__, "type": type(self).__name__}
        for option in self.options:
            value = getattr(self, option, None)
            info[option] = value if isinstance(value, (int, float, str, bool, type(None))) else str(value)
        return info
