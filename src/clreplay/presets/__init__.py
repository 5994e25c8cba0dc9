"""Presets: named TOML files of run settings, shipped with the package.

A preset (or a user's own file, ``clreplay run --config FILE.toml``) maps
:class:`~clreplay.run.RunConfig` field names to values; ``description`` is the
only other key. :func:`resolve_config` layers, lowest first: the ``RunConfig``
defaults, the defaults of the chosen benchmark (the preset named like it, if any,
e.g. ``split_fashion_mnist``), the ``--preset``, the ``--config`` file, then the
flags given on the command line.

>>> "der_er_split_cifar10" in list_presets()
True
>>> resolve_config({"epochs": 2}, preset="der_er_split_mnist").epochs
2
>>> resolve_config({}, preset="der_er_split_mnist").lr
0.01
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from importlib import resources
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

import tomllib

from clreplay._validation import check_choice
from clreplay.input_files import read_regular

#: The largest --config file read (a run's settings take a few hundred bytes).
MAX_CONFIG_BYTES = 1 << 20
#: Keys a preset file may hold besides RunConfig fields.
METADATA_KEYS = ("description",)


def _files() -> Dict[str, Any]:
    """Every shipped preset by name: a file's path below this package without ``.toml``
    (``derpp/split_fashion_mnist/200`` is ``derpp/split_fashion_mnist/200.toml``)."""
    found: Dict[str, Any] = {}

    def walk(folder, prefix: str) -> None:
        for entry in folder.iterdir():
            if entry.is_dir() and not entry.name.startswith(("_", ".")):
                walk(entry, f"{prefix}{entry.name}/")
            elif entry.name.endswith(".toml"):
                found[prefix + entry.name[: -len(".toml")]] = entry

    walk(resources.files(__name__), "")
    return found


def list_presets() -> List[str]:
    """Names of the presets shipped with clreplay."""
    return sorted(_files())


def _run_fields() -> List[str]:
    from clreplay.run_config import RunConfig

    return [f.name for f in dataclasses.fields(RunConfig)]


def _parse(text: str, source: str) -> Dict[str, Any]:
    try:
        values = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{source} must be valid TOML, got a parse error: {err}") from None
    fields = _run_fields()
    for key, value in values.items():
        if key in METADATA_KEYS:
            continue
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=1, cutoff=0.7)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(
                f"{source} has an unknown key {key!r}: keys must be run settings "
                f"({', '.join(fields)}) or {', '.join(METADATA_KEYS)}{hint}"
            )
        if isinstance(value, dict) and key != "method_options":
            raise ValueError(f"{source}: {key} must be a value, got a table")
        if key == "method_options" and not isinstance(value, dict):
            raise ValueError(f"{source}: method_options must be a table of the method's options, got {value!r}")
    return values


def load_preset(name: str) -> Dict[str, Any]:
    """The settings of the shipped preset ``name`` (``description`` included)."""
    files = _files()
    check_choice("preset", name, sorted(files))
    return _parse(files[name].read_text(encoding="utf-8"), f"preset {name!r}")


def read_config_file(path: str | os.PathLike) -> Dict[str, Any]:
    """The settings in a user's TOML file (same keys as a preset)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"config must be a TOML file, got {str(path)!r}: no such file")
    data = read_regular(path, what="config file", limit=MAX_CONFIG_BYTES)  # no FIFO, no device
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"config file {str(path)!r} must be UTF-8 text (TOML), got byte "
                         f"{data[err.start]:#04x} at offset {err.start}, which is not UTF-8") from None
    return _parse(text, f"config file {str(path)!r}")


def preset_text(name: str) -> str:
    """The TOML text of the shipped preset ``name`` (with its comments)."""
    files = _files()
    check_choice("preset", name, sorted(files))
    return files[name].read_text(encoding="utf-8")


def describe_presets() -> Dict[str, str]:
    """Each preset's name and description."""
    return {name: str(load_preset(name).get("description", "")) for name in list_presets()}


def resolve_config(
    given: Mapping[str, Any],
    *,
    preset: Optional[str] = None,
    config_file: Optional[str | os.PathLike] = None,
):
    """The :class:`~clreplay.run.RunConfig` of a run: the ``given`` settings over the
    ``config_file`` over the ``preset`` over the chosen benchmark's defaults over
    ``RunConfig``'s. Unknown keys anywhere are a ValueError naming the key."""
    from clreplay.run_config import RunConfig

    fields = _run_fields()
    unknown = [k for k in given if k not in fields]
    if unknown:
        raise ValueError(f"unknown run settings {unknown}; expected some of {fields}")
    layers = []
    if preset is not None:
        layers.append(load_preset(preset))
    if config_file is not None:
        layers.append(read_config_file(config_file))
    layers.append(dict(given))
    values: Dict[str, Any] = {}
    for layer in layers:
        options = {**values.get("method_options", {}), **layer.get("method_options", {})}
        values.update({k: v for k, v in layer.items() if k not in METADATA_KEYS})
        if options:  # a method's options merge, key by key, like the other settings
            values["method_options"] = options
    benchmark = values.get("benchmark", RunConfig.benchmark)
    if benchmark in _files():
        defaults = load_preset(benchmark)
        values = {**{k: v for k, v in defaults.items() if k not in METADATA_KEYS}, **values}
    # No policy chosen anywhere: reservoir for online replay, else experience-balanced.
    values.setdefault("policy", None)
    return RunConfig(**values)
