"""Whether a checkpoint belongs to this run: its configuration, structure and counters.

A run resumes only from a checkpoint of the same configuration (except the fields
that say where it writes or computes), whose tensors have the same shapes and whose
plugins are of the same kinds, and whose counters a run can reach.
"""

from __future__ import annotations

import dataclasses
import json
import reprlib
from typing import Any, Dict, List, Mapping, Optional

from clreplay.checkpoint.format import CheckpointError, key_path
from clreplay.training.strategy import BaseStrategy

#: Configuration fields that say where a run writes or computes, not what it
#: computes: a run resumed with other values of these is the same run (the
#: global batches of a distributed run do not depend on its number of processes).
IGNORED_CONFIG_FIELDS = frozenset({"output", "checkpoint_dir", "checkpoint_every", "device",
                                   "memmap_dir", "name", "overwrite", "world_size", "threads",
                                   "compile", "channels_last"})

#: Configuration fields added since checkpoints of this format version were first
#: saved, and the value that reproduces what runs computed before them.
ADDED_CONFIG_FIELDS: Dict[str, Any] = {"class_order": None, "blurry": 0.0, "anytime_every": None}


def normalise_config(config: Any) -> Optional[Dict[str, Any]]:
    """The configuration as plain JSON data, without the fields that do not define a run."""
    if config is None:
        return None
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        config = dataclasses.asdict(config)
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a dataclass instance, a mapping or None, got {type(config).__name__}")
    try:
        # A JSON round trip turns tuples into lists and rejects anything that is
        # not plain data, so a saved and a live configuration compare alike.
        plain = json.loads(json.dumps(dict(config), allow_nan=False))
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"config must hold only JSON-like plain data, got {reprlib.repr(dict(config))} ({err})"
        ) from None
    return {k: v for k, v in plain.items() if k not in IGNORED_CONFIG_FIELDS}


def describe_strategy(strategy: BaseStrategy) -> Dict[str, Any]:
    """What a checkpoint must match besides the configuration: tensor shapes and plugin kinds.

    >>> import torch
    >>> from clreplay.training import Naive
    >>> model = torch.nn.Linear(3, 2)
    >>> describe_strategy(Naive(model, torch.optim.SGD(model.parameters(), lr=0.1)))["model"]
    {'weight': 'float32 (2, 3)', 'bias': 'float32 (2,)'}
    """
    model = {
        name: f"{str(t.dtype).removeprefix('torch.')} {tuple(t.shape)}"
        for name, t in strategy.model.state_dict().items()
    }
    groups = [len(g["params"]) for g in strategy.optimizer.param_groups]
    return {
        "model": model,
        "optimizer": f"{type(strategy.optimizer).__name__} {groups}",
        "plugins": [_describe_plugin(p) for p in strategy.plugins],
    }


def _describe_plugin(plugin) -> Dict[str, Any]:
    info: Dict[str, Any] = {"type": type(plugin).__name__}
    if isinstance(getattr(plugin, "mem_size", None), int):
        info["mem_size"] = plugin.mem_size
    # Components describe themselves (name, kind, defining options): one source for
    # the registry, the command line, reports and this check.
    policy = getattr(plugin, "storage_policy", None)
    if policy is not None:
        info["storage_policy"] = policy.describe()
        selection = getattr(policy, "selection_strategy", None)
        if selection is not None:
            info["selection_strategy"] = selection.describe()
    return info


def differences(saved: Any, current: Any, where: str = "") -> List[str]:
    """Every leaf where ``saved`` and ``current`` differ, as ``where: saved X, now Y``."""
    if isinstance(saved, dict) and isinstance(current, dict):
        found = []
        for key in list(saved) + [k for k in current if k not in saved]:
            at = key_path(where, key)
            if key not in current:
                found.append(f"{at}: saved {saved[key]!r}, absent now")
            elif key not in saved:
                found.append(f"{at}: absent from the checkpoint, now {current[key]!r}")
            else:
                found += differences(saved[key], current[key], at)
        return found
    if isinstance(saved, list) and isinstance(current, list) and len(saved) == len(current):
        found = []
        for i, (a, b) in enumerate(zip(saved, current)):
            found += differences(a, b, f"{where}[{i}]")
        return found
    if saved == current and type(saved) is type(current):
        return []
    return [f"{where}: saved {saved!r}, now {current!r}"]


def _check_reachable(payload: Mapping[str, Any], n_experiences: Optional[int], source: str) -> None:
    """Refuse counters no run can produce (before anything is loaded)."""
    def refuse(what: str) -> CheckpointError:
        return CheckpointError(f"checkpoint {source!r} holds a state no run can reach ({what}) "
                               "and was refused")

    nxt = payload["next_experience"]
    if not isinstance(nxt, int) or isinstance(nxt, bool) or nxt < 0:
        raise refuse(f"next_experience must be a non-negative int, got {nxt!r}")
    if n_experiences is not None and nxt > n_experiences:
        raise refuse(f"{nxt} experiences trained, but the stream has {n_experiences}")
    state = payload["strategy"]
    clock = state.get("clock") if isinstance(state, dict) else None
    if not isinstance(clock, dict):
        raise refuse(f"the strategy's clock must be a dict, got {type(clock).__name__}")
    for key, value in clock.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise refuse(f"clock.{key} must be a non-negative int, got {value!r}")
    if clock.get("train_exp_counter") != nxt:
        raise refuse(f"clock.train_exp_counter {clock.get('train_exp_counter')!r} differs from "
                     f"next_experience {nxt}")


def check_checkpoint(
    payload: Mapping[str, Any],
    *,
    config: Any = None,
    n_experiences: Optional[int] = None,
    source: str = "checkpoint",
    structure: Optional[Mapping[str, Any]] = None,
) -> None:
    """The checks :func:`restore_checkpoint` makes before loading anything, for a caller
    that wants to know before it builds a strategy: the configuration (and, when given,
    the ``structure`` of :func:`describe_strategy`) match, the counters are reachable."""
    wanted = normalise_config(config)
    found: List[str] = []
    if wanted is not None:
        if payload["config"] is None:
            raise CheckpointError(
                f"checkpoint {source!r} was saved without a configuration, so it cannot be "
                "matched with this run's; load it without config= or start afresh"
            )
        saved = payload["config"]
        if isinstance(saved, dict):
            saved = {**{k: v for k, v in ADDED_CONFIG_FIELDS.items() if k in wanted}, **saved}
        found += differences(saved, wanted)
    if structure is not None:
        found += differences(payload["structure"], structure)
    if found:
        raise CheckpointError(
            f"checkpoint {source!r} belongs to a different configuration and was refused: "
            + "; ".join(found)
            + " (use another checkpoint folder, or remove the file, to start afresh)"
        )
    _check_reachable(payload, n_experiences, source)


