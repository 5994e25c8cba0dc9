"""Checkpoints: save a whole run to one file and resume it exactly.

A checkpoint is built from ``strategy.state_dict()`` (model, optimiser with its
momentum buffers, clock, the strategy's generator, and every plugin's state: the
replay memory with its keys, order and generators, the evaluation history) plus
a description of the run it belongs to: the run's configuration and the shapes of
the model's tensors and the plugins' kinds. Resuming from it continues the run
bit for bit as if it had never stopped.

Files are written atomically (a temporary file in the same folder, flushed and
fsynced, then renamed over the old one), so a kill at any instant leaves either
the previous checkpoint or the new one. They are read with
``torch.load(weights_only=True)`` only: tensors and plain data, never code; a
file that carries pickled objects is refused.

>>> import tempfile, torch
>>> from clreplay.training import Naive
>>> def make():
...     model = torch.nn.Linear(4, 2)
...     return Naive(model, torch.optim.SGD(model.parameters(), lr=0.1), seed=0)
>>> with tempfile.TemporaryDirectory() as folder:
...     path = save_checkpoint(make(), f"{folder}/run.pt", config={"lr": 0.1})
...     load_checkpoint(make(), path, config={"lr": 0.1})
0
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import pickle
import re
import reprlib
import tempfile
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Union

import torch
from torch import Tensor

from clreplay.training import distributed as idist
from clreplay.training.strategy import BaseStrategy

#: Identifies clreplay checkpoints (a file without it is refused).
FORMAT = "clreplay-checkpoint"
VERSION = 1
#: The file name used inside a checkpoint folder (``clreplay run --checkpoint-dir``).
CHECKPOINT_FILENAME = "checkpoint.pt"
#: Configuration fields that say where a run writes or computes, not what it
#: computes: a run resumed with other values of these is the same run (the
#: global batches of a distributed run do not depend on its number of processes).
IGNORED_CONFIG_FIELDS = frozenset({"output", "checkpoint_dir", "device", "memmap_dir", "world_size"})

PathLike = Union[str, "os.PathLike[str]"]


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: unreadable, unsafe, or from another run."""


# ----------------------------------------------------------------- arguments
def _check_strategy(strategy: Any) -> BaseStrategy:
    if not isinstance(strategy, BaseStrategy):
        raise TypeError(f"strategy must be a BaseStrategy, got {type(strategy).__name__}")
    return strategy


def _check_path(path: Any) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    path = Path(path)
    if str(path) in ("", "."):
        raise ValueError(f"path must name a file, got {str(path)!r}")
    if path.is_dir():
        raise ValueError(f"path must name a file, got the folder {str(path)!r}")
    return path


def _normalise_config(config: Any) -> Optional[Dict[str, Any]]:
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


# --------------------------------------------------------- what a run is
def describe_strategy(strategy: BaseStrategy) -> Dict[str, Any]:
    """What a checkpoint must match besides the configuration: tensor shapes and plugin kinds.

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
    policy = getattr(plugin, "storage_policy", None)
    if policy is not None:
        info["storage_policy"] = type(policy).__name__
        selection = getattr(policy, "selection_strategy", None)
        if selection is not None:
            info["selection_strategy"] = type(selection).__name__
    return info


def _where(parent: str, key: Any) -> str:
    if isinstance(key, str) and key.isidentifier():
        return f"{parent}.{key}" if parent else key
    return f"{parent}[{key!r}]"


def _differences(saved: Any, current: Any, where: str = "") -> List[str]:
    """Every leaf where ``saved`` and ``current`` differ, as ``where: saved X, now Y``."""
    if isinstance(saved, dict) and isinstance(current, dict):
        found = []
        for key in list(saved) + [k for k in current if k not in saved]:
            at = _where(where, key)
            if key not in current:
                found.append(f"{at}: saved {saved[key]!r}, absent now")
            elif key not in saved:
                found.append(f"{at}: absent from the checkpoint, now {current[key]!r}")
            else:
                found += _differences(saved[key], current[key], at)
        return found
    if isinstance(saved, list) and isinstance(current, list) and len(saved) == len(current):
        found = []
        for i, (a, b) in enumerate(zip(saved, current)):
            found += _differences(a, b, f"{where}[{i}]")
        return found
    if saved == current and type(saved) is type(current):
        return []
    return [f"{where}: saved {saved!r}, now {current!r}"]


# -------------------------------------------------------------------- saving
_PLAIN_TYPES = (str, bytes, int, float, bool, type(None), torch.dtype, torch.device, torch.Size)


def _check_plain(value: Any, where: str) -> None:
    """Refuse at saving what the safe loader would refuse at loading."""
    if isinstance(value, (Tensor,) + _PLAIN_TYPES):
        return
    if isinstance(value, dict):
        for key, item in value.items():
            _check_plain(key, f"{where} key {key!r}")
            _check_plain(item, _where(where, key))
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
        return
    raise TypeError(
        f"{where} must hold only tensors and plain data (dict, list, tuple, str, int, float, "
        f"bool, None) to be checkpointed, got a {type(value).__name__}"
    )


def _fsync_folder(folder: Path) -> None:
    # Makes the rename itself durable; not possible (nor needed) on every platform.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic_save(payload: dict, path: Path) -> None:
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    prefix = f".{path.name}."
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_folder(folder)
    # Temporary files of saves that were killed mid-write: the new file supersedes them.
    for stale in folder.glob(f"{glob.escape(prefix)}*.tmp"):
        stale.unlink(missing_ok=True)


def save_checkpoint(strategy: BaseStrategy, path: PathLike, *, config: Any = None) -> Path:
    """Write the whole state of ``strategy`` to ``path``, atomically; return the path.

    ``config`` (a dataclass such as :class:`~clreplay.run.RunConfig`, or a mapping of
    plain data) is stored with it so that :func:`load_checkpoint` can refuse a run
    configured differently; the fields in :data:`IGNORED_CONFIG_FIELDS` are left out.
    The folder is created if needed. Call it between experiences (after
    ``strategy.train()`` returns); a state holding anything but tensors and plain
    data is a ``TypeError`` naming where, before anything is written.

    In a distributed run (``strategy`` over several processes) every rank calls it
    and rank 0 alone writes the file; the others wait for it and raise if it fails.
    """
    strategy = _check_strategy(strategy)
    if strategy.is_training:
        # The clock counts finished experiences only: a resume would train the
        # one in progress again, from weights already part-trained on it.
        raise ValueError(
            "strategy must be between experiences to be checkpointed, got one inside "
            "strategy.train(); save after train() returns"
        )
    path = _check_path(path)
    plain_config = _normalise_config(config)
    state = strategy.state_dict()
    _check_plain(state, "strategy.state_dict()")
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "config": plain_config,
        "structure": describe_strategy(strategy),
        "next_experience": strategy.clock.train_exp_counter,
        "strategy": state,
    }
    if idist.is_distributed(strategy):
        idist.run_on_main(_atomic_save, payload, path)
    else:
        _atomic_save(payload, path)
    return path


# ------------------------------------------------------------------- loading
def _device_available(location: str) -> bool:
    try:
        device = torch.device(location)
    except (RuntimeError, TypeError):
        return False
    if device.type == "cpu":
        return True
    if device.type == "cuda":
        return torch.cuda.is_available() and (device.index or 0) < torch.cuda.device_count()
    backend = getattr(torch, device.type, None)
    is_available = getattr(backend, "is_available", None)
    return bool(is_available and is_available())


def _saved_device_or_cpu(storage, location: str):
    # None lets torch restore the storage where it was saved; returning the
    # (CPU) storage keeps it on the CPU when that device is absent here.
    return None if _device_available(location) else storage


def read_checkpoint(path: PathLike, *, map_location: Any = None) -> Dict[str, Any]:
    """The raw contents of a checkpoint file, read safely (tensors and plain data only).

    ``map_location`` is passed to ``torch.load``; None restores each tensor to the
    device it was saved from when that device exists here, else to the CPU.
    Raises :class:`CheckpointError` for a file that holds pickled objects, is not a
    clreplay checkpoint, or is unreadable.
    """
    path = _check_path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    location: Callable | Any = _saved_device_or_cpu if map_location is None else map_location
    try:
        with warnings.catch_warnings():
            # torch warns about unusual pickle protocols; such files are refused anyway.
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            payload = torch.load(path, map_location=location, weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL\s+(\S+)", str(err))
        if found:
            what = f"non-tensor objects (a pickled {found.group(1)})"
        else:  # e.g. pickle opcodes the safe unpickler does not implement
            what = "non-tensor objects or data the safe loader does not accept"
        raise CheckpointError(
            f"checkpoint {str(path)!r} holds {what} and was refused: "
            "checkpoints are loaded with weights_only=True, so only tensors and plain data "
            "are accepted and no code from the file is ever run"
        ) from None
    except (RuntimeError, EOFError, ValueError, OSError) as err:
        if isinstance(err, (FileNotFoundError, PermissionError)):
            raise
        raise CheckpointError(
            f"checkpoint {str(path)!r} is not a readable checkpoint file (empty, truncated or "
            f"corrupt): {str(err).splitlines()[0] if str(err) else type(err).__name__}"
        ) from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {str(path)!r} is not a clreplay checkpoint (no {FORMAT!r} marker)")
    if payload.get("version") != VERSION:
        raise CheckpointError(
            f"checkpoint {str(path)!r} has format version {payload.get('version')!r}; "
            f"this clreplay reads version {VERSION}"
        )
    missing = {"config", "structure", "next_experience", "strategy"} - set(payload)
    if missing:
        raise CheckpointError(f"checkpoint {str(path)!r} is incomplete: missing {sorted(missing)}")
    return payload


def _to_device_of(strategy: BaseStrategy) -> Callable:
    """A ``map_location`` restoring CUDA tensors to ``strategy``'s GPU (each rank its own)."""
    index = strategy.device.index if strategy.device.index is not None else torch.cuda.current_device()

    def restore(storage, location: str):
        if location.startswith("cuda"):
            return storage.cuda(index)
        return _saved_device_or_cpu(storage, location)

    return restore


def _clone(value: Any) -> Any:
    if isinstance(value, Tensor):
        return value.detach().clone()
    if isinstance(value, dict):
        copy = OrderedDict((k, _clone(v)) for k, v in value.items())
        if hasattr(value, "_metadata"):  # module state dicts carry version metadata
            copy._metadata = value._metadata
        return copy
    if isinstance(value, list):
        return [_clone(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_clone(v) for v in value)
    return value


def load_checkpoint(
    strategy: BaseStrategy, path: PathLike, *, config: Any = None, map_location: Any = None
) -> int:
    """Restore ``strategy`` from ``path``; return the index of the next experience to train.

    Before anything is loaded, the saved configuration is compared with ``config``
    (when given; the fields in :data:`IGNORED_CONFIG_FIELDS` do not count) and the
    saved tensor shapes and plugin kinds with ``strategy``'s: any difference is a
    :class:`CheckpointError` listing each one (``mem_size: saved 200, now 100``). If
    the state still does not fit, the strategy is put back as it was before the
    error is raised. See :func:`read_checkpoint` for ``map_location``; in a distributed
    run on GPUs, tensors saved on any GPU are restored to the strategy's GPU.
    """
    strategy = _check_strategy(strategy)
    path = _check_path(path)
    wanted = _normalise_config(config)
    if map_location is None and idist.is_distributed(strategy) and strategy.device.type == "cuda":
        map_location = _to_device_of(strategy)
    payload = read_checkpoint(path, map_location=map_location)
    differences: List[str] = []
    if wanted is not None:
        if payload["config"] is None:
            raise CheckpointError(
                f"checkpoint {str(path)!r} was saved without a configuration, so it cannot be "
                "matched with this run's; load it without config= or start afresh"
            )
        differences += _differences(payload["config"], wanted)
    differences += _differences(payload["structure"], describe_strategy(strategy))
    if differences:
        raise CheckpointError(
            f"checkpoint {str(path)!r} belongs to a different configuration and was refused: "
            + "; ".join(differences)
            + " (use another checkpoint folder, or remove the file, to start afresh)"
        )
    backup = _clone(strategy.state_dict())
    try:
        strategy.load_state_dict(payload["strategy"])
    except Exception as err:
        strategy.load_state_dict(backup)
        raise CheckpointError(
            f"checkpoint {str(path)!r} does not fit this strategy ({type(err).__name__}: {err}); "
            "the strategy was left as it was"
        ) from err
    return strategy.clock.train_exp_counter


def checkpoint_path(folder: PathLike) -> Path:
    """The checkpoint file inside ``folder`` (what ``clreplay run --checkpoint-dir`` uses)."""
    if not isinstance(folder, (str, os.PathLike)):
        raise TypeError(f"folder must be a str or os.PathLike, got {type(folder).__name__}")
    return Path(folder) / CHECKPOINT_FILENAME


def resume_if_saved(strategy: BaseStrategy, folder: Optional[PathLike], *, config: Any = None) -> int:
    """Load the checkpoint in ``folder`` if there is one: the next experience's index, else 0."""
    if folder is None:
        return 0
    path = checkpoint_path(folder)
    if not path.exists():
        return 0
    return load_checkpoint(strategy, path, config=config)
