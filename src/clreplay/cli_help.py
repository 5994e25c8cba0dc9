"""What ``clreplay run --help`` describes: the settings in effect (the defaults of a
``--benchmark``, ``--preset`` or ``--method`` typed beside ``--help``) and the summary
of each component chosen."""

from __future__ import annotations

import argparse
from typing import Optional, Sequence, Tuple

from clreplay.models.registry import MODELS
from clreplay.options import Option
from clreplay.replay.registry import POLICIES, SELECTIONS
from clreplay.run_config import RunConfig
from clreplay.strategies.registry import METHODS

#: The settings ``--help`` describes when nothing is typed beside it.
DEFAULTS = RunConfig()
#: The components whose registries describe a choice: ``--help`` describes the one in effect.
DESCRIBED = {"policy": POLICIES, "selection": SELECTIONS, "model": MODELS, "method": METHODS}


def described(option: Option, defaults: RunConfig) -> str:
    """An option's help, with the summary of the component in effect for a choice of
    components (``--policy``: ``class`` is ClassBalancedStoragePolicy ...)."""
    registry = DESCRIBED.get(option.name)
    value = getattr(defaults, option.name, None) if registry is not None else None
    if value is None:  # the policy before it is resolved: experience unless online
        value = "reservoir" if option.name == "policy" and defaults.online else \
            "experience" if option.name == "policy" else None
    if value not in (registry or {}):
        return option.help
    return f"{option.help}; {value}: {registry[value].summary}"


def help_context(argv: Sequence[str]) -> Tuple[RunConfig, Optional[str]]:
    """What ``clreplay run ... --help`` describes: the settings of the ``--benchmark``,
    ``--preset``, ``--method``, ``--policy``, ``--selection`` and ``--model`` typed beside
    ``--help`` (RunConfig's defaults without them), and those words for its description
    (None: the plain defaults). A name that does not exist leaves the plain defaults: the
    parser itself then says what is wrong with it."""
    argv = list(argv)
    if "run" not in argv or not {"-h", "--help"} & set(argv):
        return DEFAULTS, None
    peek = argparse.ArgumentParser(add_help=False)
    for flag in ("--benchmark", "--preset", "--method", "--policy", "--selection", "--model"):
        peek.add_argument(flag)
    typed, _ = peek.parse_known_args(argv[argv.index("run") + 1:])
    if all(value is None for value in vars(typed).values()):
        return DEFAULTS, None
    from clreplay.presets import resolve_config
    from clreplay.strategies.registry import resolve_method_options

    given = {key: value for key, value in vars(typed).items() if value is not None and key != "preset"}
    try:
        config = resolve_config(given, preset=typed.preset)
        config.method_options = resolve_method_options(config.method, config.method_options)
    except (ValueError, TypeError, KeyError):
        return DEFAULTS, None
    what = [f"--{key} {value}" for key, value in vars(typed).items() if value is not None]
    return config, " ".join(what)
