"""Where a run setting came from, for errors about settings the user did not type.

``clreplay run --preset der_er_split_mnist --no-replay`` is refused because the
preset turns on online replay; an error saying "--online must be False" would
blame a flag that was never typed. :func:`explain_origins` adds to such an error
where the value came from (the preset, the ``--config`` file, the benchmark's
defaults) and the flag that overrides it.

>>> origins = {"online": ("preset 'der_er_split_mnist'", True)}
>>> err = ValueError("--online must be False without replay, got --online with --no-replay")
>>> print(explain_origins(err, origins, {"online": "--online"}, {"--online", "--no-online"}))
--online must be False without replay, got --online with --no-replay; online = true comes from preset 'der_er_split_mnist', not from the command line: --no-online overrides it
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Collection, Dict, Mapping, Optional, Tuple

from clreplay.presets import METADATA_KEYS, _files, load_preset, read_config_file

#: field -> (where its value came from, the value)
Origins = Dict[str, Tuple[str, Any]]


def setting_origins(given: Mapping[str, Any], *, preset: Optional[str] = None,
                    config_file: Optional[str | os.PathLike] = None) -> Origins:
    """The settings of a run that were not ``given`` on the command line, each with
    the layer it came from (as :func:`clreplay.presets.resolve_config` layers them)."""
    origins: Origins = {}
    layers = []
    if preset is not None:
        layers.append((f"preset {preset!r}", load_preset(preset)))
    if config_file is not None:
        layers.append((f"config file {str(config_file)!r}", read_config_file(config_file)))
    for label, values in layers:
        for key, value in values.items():
            if key not in METADATA_KEYS and key != "method_options":
                origins[key] = (label, value)
    benchmark = given.get("benchmark", origins.get("benchmark", (None, None))[1])
    if benchmark in _files():  # the benchmark's own defaults, below every other layer
        for key, value in load_preset(benchmark).items():
            if key not in METADATA_KEYS and key not in origins:
                origins[key] = (f"the defaults of benchmark {benchmark!r} (preset {benchmark!r})", value)
    return {key: origin for key, origin in origins.items() if key not in given}


def _override(field: str, flag: str, label: str, value: Any, option_strings: Collection[str]) -> str:
    """How to override ``value`` (set by ``label``) from the command line."""
    if isinstance(value, bool):
        name = flag[len("--no-"):] if flag.startswith("--no-") else flag[len("--"):]
        opposite = f"--no-{name}" if value else f"--{name}"
        if opposite in option_strings:
            return f"{opposite} overrides it"
        where = "edit that file" if label.startswith("config file") else "use a --config file"
        return f"no flag sets it back: {where}"
    from clreplay.run_config import RunConfig  # the presets load before the run's modules

    if getattr(RunConfig(), field, None) is not None:
        return f"{flag} VALUE overrides it"
    unset = ("remove it from that file" if label.startswith("config file") else
             "start from a copy of the preset without it (`clreplay presets --show NAME > "
             "my.toml`, edited, then --config my.toml)")
    return f"{flag} VALUE overrides it; to leave it unset, {unset}"


def explain_origins(err: Exception, origins: Origins, flags: Mapping[str, str],
                    option_strings: Collection[str]) -> Exception:
    """``err`` with a note for each flag it names whose value came from a preset, a
    config file or a benchmark's defaults (``flags``: field -> flag); ``err`` itself
    when it names none, or is not a plain ValueError/TypeError."""
    if type(err) not in (ValueError, TypeError):
        return err
    text = str(err)
    notes = []
    for field, (label, value) in origins.items():
        flag = flags.get(field)
        if flag is None or not re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text):
            continue
        notes.append(f"{field} = {json.dumps(value)} comes from {label}, not from the command "
                     f"line: {_override(field, flag, label, value, option_strings)}")
    if not notes:
        return err
    return type(err)(f"{text}; {'; '.join(notes)}")
