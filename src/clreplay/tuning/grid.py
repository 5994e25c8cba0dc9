"""The points a tune evaluates: a grid of settings (every combination) or a list of them.

A setting is a :class:`~clreplay.run_config.RunConfig` field (``lr``, ``batch_size_mem``,
``epochs``, ...) or an option of the run's method (``alpha``, ``reg_weight``, ...); its
values are parsed and checked by the setting's :class:`~clreplay.options.Option` record.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence

import tomllib

from clreplay.options import Option
from clreplay.run_config import COMPONENT_OPTIONS, RUN_OPTIONS
from clreplay.strategies.registry import get_method

#: Settings a tune never varies: where a run writes, what it reads, how it is launched.
FIXED = ("output", "overwrite", "checkpoint_dir", "checkpoint_every", "memmap_dir", "device", "world_size",
         "data", "name", "method", "benchmark", "seed")


def setting_option(name: str, method: str) -> Option:
    """The option record of the setting ``name`` for a run of ``method``: a run setting or one
    of the method's options (a ``ValueError`` naming the grid's setting otherwise)."""
    if name in FIXED:
        raise ValueError(f"--grid {name} cannot be tuned (it says what runs, not how: give it as a run flag)")
    for option in RUN_OPTIONS + COMPONENT_OPTIONS:
        if option.name == name:
            return option
    try:
        return get_method(method).option(name)
    except KeyError:
        raise ValueError(f"--grid {name} is neither a run setting nor an option of --method {method}") from None


def parse_value(option: Option, text: str) -> Any:
    """One grid value from its text, converted to the option's kind and checked.

    >>> parse_value(Option("lr", 0.1, "lr", minimum=0.0), "0.03"), parse_value(Option("online", False, "x"), "true")
    (0.03, True)
    """
    if option.many:
        try:
            return option.check([option.kind(v) for v in text.split("x")], f"--grid {option.name}")
        except ValueError:
            raise ValueError(f"--grid {option.name} takes values like 100x100, got {text!r}") from None
    if option.kind is bool:
        lowered = text.strip().lower()
        if lowered not in ("true", "false"):
            raise ValueError(f"--grid {option.name} takes true or false, got {text!r}")
        value: Any = lowered == "true"
    elif option.kind in (int, float):
        try:
            value = option.kind(text) if option.kind is float else int(text)
        except ValueError:
            raise ValueError(f"--grid {option.name} takes {option.expected()} values, got {text!r}") from None
    elif text.strip().lower() in ("none", "null") and option.nullable:
        value = None
    else:
        value = text.strip()
    return option.check(value, f"--grid {option.name}")


def parse_grid(specs: Sequence[str], method: str) -> Dict[str, List[Any]]:
    """``NAME=V1,V2,...`` specs as ``{name: [values]}`` (a list setting such as ``hidden`` takes
    ``100x100`` for ``[100, 100]``).

    >>> parse_grid(["lr=0.01,0.1", "alpha=0.2"], "derpp")
    {'lr': [0.01, 0.1], 'alpha': [0.2]}
    """
    grid: Dict[str, List[Any]] = {}
    for spec in specs:
        name, sep, values = spec.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not name or not values.strip():
            raise ValueError(f"--grid must be NAME=V1,V2,... (e.g. lr=0.01,0.1), got {spec!r}")
        if name in grid:
            raise ValueError(f"--grid {name} is given twice")
        option = setting_option(name, method)
        grid[name] = [parse_value(option, v) for v in values.split(",")]
    return grid


def grid_points(grid: Mapping[str, Sequence[Any]]) -> List[Dict[str, Any]]:
    """Every combination of the grid's values, the last setting varying fastest.

    >>> grid_points({"lr": [0.01, 0.1], "alpha": [0.2, 0.5]})
    [{'lr': 0.01, 'alpha': 0.2}, {'lr': 0.01, 'alpha': 0.5}, {'lr': 0.1, 'alpha': 0.2}, {'lr': 0.1, 'alpha': 0.5}]
    """
    names = list(grid)
    return [dict(zip(names, values)) for values in itertools.product(*(grid[n] for n in names))]


def read_points(path: str | Path, method: str) -> List[Dict[str, Any]]:
    """A list of points from a file: JSON (a list of objects) or TOML (``[[point]]`` tables),
    each value checked like a grid's."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--points must name a JSON or TOML file, got {str(path)!r}: no such file")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".toml":
        try:
            points = tomllib.loads(text).get("point")
        except tomllib.TOMLDecodeError as err:
            raise ValueError(f"--points {path}: invalid TOML: {err}") from None
    else:
        try:
            points = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"--points {path}: invalid JSON: {err}") from None
    if not isinstance(points, list) or not points or not all(isinstance(p, dict) for p in points):
        raise ValueError(f"--points {path} must hold a non-empty list of settings ([[point]] tables in TOML)")
    checked = []
    for point in points:
        checked.append({name.replace("-", "_"): setting_option(name.replace("-", "_"), method).check(
            value, f"--points {name}") for name, value in point.items()})
    return checked
