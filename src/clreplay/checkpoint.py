"""Checkpoints: save a whole run to one file and resume it exactly.

A checkpoint is built from ``strategy.state_dict()`` (model, optimiser with its
momentum buffers, clock, the strategy's generator, and every plugin's state: the
replay memory with its keys, order and generators, the evaluation history) plus
a description of the run it belongs to: the run's configuration and the shapes of
the model's tensors and the plugins' kinds. Resuming from it continues the run
bit for bit as if it had never stopped.

Files are written atomically (a temporary file in the same folder, flushed and
fsynced, then renamed over the old one), so a kill at any instant leaves either
the previous checkpoint or the new one; saves to one path from several processes
take turns (a lock file beside it), so none deletes another's file in flight.
They are read with ``torch.load(weights_only=True)`` only: tensors and plain
data, never code; a file that carries pickled objects is refused. Each file
holds the SHA-256 digest of its content (every tensor's bytes and every plain
value), and a file whose content does not match it (a flipped bit) is refused,
as is a state no run can reach (a negative experience counter, one beyond the
stream, a replay memory larger than its ``mem_size``).

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
import hashlib
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

from clreplay._validation import check_optional_positive_int, device_available
from clreplay.locking import lock_file
from clreplay.training import distributed as idist
from clreplay.training.plugin import StrategyPlugin
from clreplay.training.strategy import BaseStrategy

#: Identifies clreplay checkpoints (a file without it is refused).
FORMAT = "clreplay-checkpoint"
#: Version 2 added the SHA-256 digest and ``metadata``; version 1 files are refused.
VERSION = 2
#: The file name used inside a checkpoint folder (``clreplay run --checkpoint-dir``).
CHECKPOINT_FILENAME = "checkpoint.pt"
#: Configuration fields that say where a run writes or computes, not what it
#: computes: a run resumed with other values of these is the same run (the
#: global batches of a distributed run do not depend on its number of processes).
IGNORED_CONFIG_FIELDS = frozenset({"output", "checkpoint_dir", "checkpoint_every", "device",
                                   "memmap_dir", "name", "overwrite", "world_size"})

#: Configuration fields added since checkpoints were first saved, and the value that
#: reproduces what runs computed before them: a checkpoint without one saved it.
ADDED_CONFIG_FIELDS = {"init": "default"}

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


def _plain_json(name: str, value: Any) -> Any:
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be JSON-like plain data, got {reprlib.repr(value)} ({err})") from None


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
    # Components describe themselves (name, kind, defining options): one source for
    # the registry, the command line, reports and this check.
    policy = getattr(plugin, "storage_policy", None)
    if policy is not None:
        info["storage_policy"] = policy.describe()
        selection = getattr(policy, "selection_strategy", None)
        if selection is not None:
            info["selection_strategy"] = selection.describe()
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


def _feed(h, value: Any) -> None:
    """Feed ``value`` to the hash ``h`` unambiguously: a type tag, a length, the bytes."""
    if isinstance(value, Tensor):
        t = value.detach()
        if t.layout != torch.strided:
            t = t.to_dense()
        t = t.resolve_conj().resolve_neg().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}:".encode())
        if t.numel():
            h.update(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
    elif value is None:
        h.update(b"N;")
    elif isinstance(value, bool):
        h.update(b"B1;" if value else b"B0;")
    elif isinstance(value, int):
        h.update(f"I{value};".encode())
    elif isinstance(value, float):
        h.update(f"F{value.hex()};".encode())
    elif isinstance(value, (str, bytes)):
        data = value.encode("utf-8", "surrogatepass") if isinstance(value, str) else value
        h.update(f"{'S' if isinstance(value, str) else 'Y'}{len(data)}:".encode())
        h.update(data)
    elif isinstance(value, torch.Size):
        h.update(f"Z{tuple(value)};".encode())
    elif isinstance(value, (torch.dtype, torch.device)):
        h.update(f"D{value};".encode())
    elif isinstance(value, Mapping):
        h.update(f"M{len(value)}:".encode())
        for key, item in value.items():
            _feed(h, key)
            _feed(h, item)
    elif isinstance(value, (list, tuple)):
        h.update(f"{'L' if isinstance(value, list) else 'U'}{len(value)}:".encode())
        for item in value:
            _feed(h, item)
    else:
        raise TypeError(f"cannot digest a {type(value).__name__} (only tensors and plain data)")


def payload_digest(payload: Mapping[str, Any]) -> str:
    """The SHA-256 of a checkpoint's content: every entry but ``sha256``, in order.

    Tensors count by dtype, shape and bytes (wherever they live), plain values by
    type and value, so the digest of a loaded file equals the one computed at saving.
    """
    h = hashlib.sha256()
    _feed(h, {key: value for key, value in payload.items() if key != "sha256"})
    return h.hexdigest()


def _atomic_save(payload: dict, path: Path) -> None:
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    prefix = f".{path.name}."
    # Saves to one path take turns: the stale-file cleanup below may then delete every
    # temporary file it finds, since no other save can have one in flight.
    with lock_file(folder / f".{path.name}.lock", blocking=True):
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


def remove_stale_temporaries(path: PathLike) -> None:
    """Remove what saves to ``path`` killed mid-write left beside it (temporary files, and
    their lock file, whose lock died with them), waiting for a save in flight to end."""
    path = _check_path(path)
    if not path.parent.is_dir():
        return
    prefix = f".{path.name}."
    with lock_file(path.parent / f".{path.name}.lock", blocking=True):
        for stale in path.parent.glob(f"{glob.escape(prefix)}*.tmp"):
            stale.unlink(missing_ok=True)


def save_checkpoint(
    strategy: BaseStrategy, path: PathLike, *, config: Any = None, metadata: Any = None
) -> Path:
    """Write the whole state of ``strategy`` to ``path``, atomically; return the path.

    ``config`` (a dataclass such as :class:`~clreplay.run.RunConfig`, or a mapping of
    plain data) is stored with it so that :func:`load_checkpoint` can refuse a run
    configured differently; the fields in :data:`IGNORED_CONFIG_FIELDS` are left out.
    ``metadata`` (plain JSON data) is stored as is and read back by
    :func:`read_checkpoint` (``clreplay run`` keeps the sizes of its log files there).
    The folder is created if needed. Call it between experiences (after
    ``strategy.train()`` returns) or at the end of a training iteration (from an
    ``after_training_iteration`` hook): a checkpoint taken inside an experience
    resumes at the next iteration, exactly. A state holding anything but tensors and
    plain data is a ``TypeError`` naming where, before anything is written.

    In a distributed run (``strategy`` over several processes) every rank calls it
    and rank 0 alone writes the file; the others wait for it and raise if it fails.
    """
    strategy = _check_strategy(strategy)
    if not strategy.can_checkpoint:
        raise ValueError(
            "strategy must be between experiences or at the end of a training iteration "
            "(after_training_iteration) to be checkpointed, got one elsewhere inside "
            "strategy.train()"
        )
    path = _check_path(path)
    plain_config = _normalise_config(config)
    plain_metadata = _plain_json("metadata", metadata)
    state = strategy.state_dict()
    _check_plain(state, "strategy.state_dict()")
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "config": plain_config,
        "structure": describe_strategy(strategy),
        "next_experience": strategy.clock.train_exp_counter,
        "strategy": state,
        "metadata": plain_metadata,
    }
    payload["sha256"] = payload_digest(payload)
    if idist.is_distributed(strategy):
        idist.run_on_main(_atomic_save, payload, path)
    else:
        _atomic_save(payload, path)
    return path


# ------------------------------------------------------------------- loading
def _saved_device_or_cpu(storage, location: str):
    # None lets torch restore the storage where it was saved; returning the
    # (CPU) storage keeps it on the CPU when that device is absent here.
    return None if device_available(location) else storage


def read_checkpoint(path: PathLike, *, map_location: Any = None) -> Dict[str, Any]:
    """The raw contents of a checkpoint file, read safely (tensors and plain data only).

    ``map_location`` is passed to ``torch.load``; None restores each tensor to the
    device it was saved from when that device exists here, else to the CPU.
    Raises :class:`CheckpointError` for a file that holds pickled objects, is not a
    clreplay checkpoint, is unreadable, or whose content does not match its digest.
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
    except (FileNotFoundError, PermissionError, KeyboardInterrupt, MemoryError):
        raise
    except Exception as err:  # a corrupt file fails anywhere in the zip reader or unpickler
        raise CheckpointError(
            f"checkpoint {str(path)!r} is not a readable checkpoint file (empty, truncated or "
            f"corrupt): {str(err).splitlines()[0] if str(err) else type(err).__name__}"
        ) from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {str(path)!r} is not a clreplay checkpoint (no {FORMAT!r} marker)")
    if payload.get("version") != VERSION:
        raise CheckpointError(
            f"checkpoint {str(path)!r} has format version {payload.get('version')!r}; "
            f"this clreplay reads version {VERSION} (files with a SHA-256 digest): start afresh"
        )
    stored = payload.get("sha256")
    try:
        computed = payload_digest(payload)
    except TypeError as err:
        raise CheckpointError(f"checkpoint {str(path)!r} is corrupt: {err}") from None
    if not isinstance(stored, str) or stored != computed:
        raise CheckpointError(
            f"checkpoint {str(path)!r} is corrupt: its content does not match the SHA-256 digest "
            f"stored in it (stored {str(stored)[:16]!r}..., computed {computed[:16]!r}...), so it "
            "was refused; resume from an intact copy, or remove it to start afresh"
        )
    missing = {"config", "structure", "next_experience", "strategy", "metadata"} - set(payload)
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
    strategy: BaseStrategy,
    path: PathLike,
    *,
    config: Any = None,
    map_location: Any = None,
    n_experiences: Optional[int] = None,
) -> int:
    """Restore ``strategy`` from ``path``; return the index of the next experience to train.

    Before anything is loaded, the saved configuration is compared with ``config``
    (when given; the fields in :data:`IGNORED_CONFIG_FIELDS` do not count) and the
    saved tensor shapes and plugin kinds with ``strategy``'s: any difference is a
    :class:`CheckpointError` listing each one (``mem_size: saved 200, now 100``). A
    state no run can reach is refused too: an experience counter that is negative or
    beyond ``n_experiences`` (the stream's length, when given), or a replay memory
    larger than its ``mem_size``. If the state does not fit, the strategy is put back
    as it was before the error is raised. See :func:`read_checkpoint` for
    ``map_location``; in a distributed run on GPUs, tensors saved on any GPU are
    restored to the strategy's GPU.
    """
    strategy = _check_strategy(strategy)
    path = _check_path(path)
    n_experiences = check_optional_positive_int("n_experiences", n_experiences)
    if map_location is None and idist.is_distributed(strategy) and strategy.device.type == "cuda":
        map_location = _to_device_of(strategy)
    payload = read_checkpoint(path, map_location=map_location)
    return restore_checkpoint(strategy, payload, config=config, n_experiences=n_experiences,
                              source=str(path))


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


def _oversized_memory(strategy: BaseStrategy) -> Optional[str]:
    for i, plugin in enumerate(strategy.plugins):
        ext_mem, mem_size = getattr(plugin, "ext_mem", None), getattr(plugin, "mem_size", None)
        if isinstance(ext_mem, dict) and isinstance(mem_size, int):
            size = sum(len(group) for group in ext_mem.values())
            if size > mem_size:
                return (f"plugins[{i}] ({type(plugin).__name__}) holds a memory of {size} samples, "
                        f"more than its mem_size {mem_size}")
    return None


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
    wanted = _normalise_config(config)
    differences: List[str] = []
    if wanted is not None:
        if payload["config"] is None:
            raise CheckpointError(
                f"checkpoint {source!r} was saved without a configuration, so it cannot be "
                "matched with this run's; load it without config= or start afresh"
            )
        saved = payload["config"]
        if isinstance(saved, dict):
            saved = {**{k: v for k, v in ADDED_CONFIG_FIELDS.items() if k in wanted}, **saved}
        differences += _differences(saved, wanted)
    if structure is not None:
        differences += _differences(payload["structure"], structure)
    if differences:
        raise CheckpointError(
            f"checkpoint {source!r} belongs to a different configuration and was refused: "
            + "; ".join(differences)
            + " (use another checkpoint folder, or remove the file, to start afresh)"
        )
    _check_reachable(payload, n_experiences, source)


def restore_checkpoint(
    strategy: BaseStrategy,
    payload: Mapping[str, Any],
    *,
    config: Any = None,
    n_experiences: Optional[int] = None,
    source: str = "checkpoint",
) -> int:
    """Load a payload returned by :func:`read_checkpoint` into ``strategy`` (with every
    check of :func:`load_checkpoint`); return the index of the next experience."""
    strategy = _check_strategy(strategy)
    check_checkpoint(payload, config=config, n_experiences=n_experiences, source=source,
                     structure=describe_strategy(strategy))
    backup = _clone(strategy.state_dict())
    try:
        strategy.load_state_dict(payload["strategy"])
    except Exception as err:
        strategy.load_state_dict(backup)
        raise CheckpointError(
            f"checkpoint {source!r} does not fit this strategy ({type(err).__name__}: {err}); "
            "the strategy was left as it was"
        ) from err
    oversized = _oversized_memory(strategy)
    if oversized:
        strategy.load_state_dict(backup)
        raise CheckpointError(
            f"checkpoint {source!r} holds a state no run can reach ({oversized}) and was refused; "
            "the strategy was left as it was"
        )
    return strategy.clock.train_exp_counter


class CheckpointEvery(StrategyPlugin):
    """Saves the whole run to ``path`` every ``every`` training iterations of an experience.

    Put it after the plugins whose state it must hold (the strategy calls plugins in
    order; the evaluator, always last, keeps nothing per iteration). A run killed
    mid-experience then resumes at the iteration after the last save, with the same
    batches, draws and weights as a run that never stopped (``clreplay run
    --checkpoint-every N``).
    """

    def __init__(self, path: PathLike, every: int, *, config: Any = None,
                 metadata: Optional[Callable[[BaseStrategy], dict]] = None) -> None:
        from clreplay._validation import check_positive_int

        self.path = _check_path(path)
        self.every = check_positive_int("every", every)
        self.config = config
        self.metadata = metadata  # metadata(strategy): plain data saved with each checkpoint

    def after_training_iteration(self, strategy, **kwargs) -> None:
        if strategy.clock.train_exp_iterations % self.every == 0:
            metadata = None if self.metadata is None else self.metadata(strategy)
            save_checkpoint(strategy, self.path, config=self.config, metadata=metadata)


def checkpoint_path(folder: PathLike) -> Path:
    """The checkpoint file inside ``folder`` (what ``clreplay run --checkpoint-dir`` uses)."""
    if not isinstance(folder, (str, os.PathLike)):
        raise TypeError(f"folder must be a str or os.PathLike, got {type(folder).__name__}")
    return Path(folder) / CHECKPOINT_FILENAME


def resume_if_saved(
    strategy: BaseStrategy,
    folder: Optional[PathLike],
    *,
    config: Any = None,
    n_experiences: Optional[int] = None,
) -> int:
    """Load the checkpoint in ``folder`` if there is one: the next experience's index, else 0."""
    if folder is None:
        return 0
    path = checkpoint_path(folder)
    if not path.exists():
        return 0
    return load_checkpoint(strategy, path, config=config, n_experiences=n_experiences)
