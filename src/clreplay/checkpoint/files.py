"""Saving a whole run to one file, reading it back safely, and resuming from it exactly
(what a checkpoint holds: see :mod:`clreplay.checkpoint`)."""

from __future__ import annotations

import os
import pickle
import re
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional

import torch
from torch import Tensor

from clreplay import distributed as idist
from clreplay._validation import check_optional_positive_int, device_available
from clreplay.checkpoint.atomic import PathLike, atomic_save, check_path
from clreplay.checkpoint.compat import (
    IGNORED_CONFIG_FIELDS,  # noqa: F401  (named in the docstrings)
    check_checkpoint,
    describe_strategy,
    normalise_config,
)
from clreplay.checkpoint.format import (
    FORMAT,
    VERSION,
    CheckpointError,
    check_plain,
    payload_digest,
    plain_json,
)
from clreplay.input_files import check_regular_file, unreadable
from clreplay.training.strategy import BaseStrategy

#: The file name used inside a checkpoint folder (``clreplay run --checkpoint-dir``).
CHECKPOINT_FILENAME = "checkpoint.pt"


def _check_strategy(strategy: Any) -> BaseStrategy:
    if not isinstance(strategy, BaseStrategy):
        raise TypeError(f"strategy must be a BaseStrategy, got {type(strategy).__name__}")
    return strategy


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
    path = check_path(path)
    plain_config = normalise_config(config)
    plain_metadata = plain_json("metadata", metadata)
    state = strategy.state_dict()
    check_plain(state, "strategy.state_dict()")
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
        idist.run_on_main(atomic_save, payload, path)
    else:
        atomic_save(payload, path)
    return path


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
    path = check_path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    check_regular_file(path, what="checkpoint")  # a FIFO would block torch.load forever
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
    except PermissionError as err:
        raise unreadable(path, "checkpoint", err) from None
    except (FileNotFoundError, KeyboardInterrupt, MemoryError):
        raise
    except Exception as err:  # a corrupt file fails anywhere in the zip reader or unpickler
        raise CheckpointError(
            f"checkpoint {str(path)!r} is not a readable checkpoint file (empty, truncated or "
            f"corrupt): {str(err).splitlines()[0] if str(err) else type(err).__name__}"
        ) from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {str(path)!r} is not a clreplay checkpoint (no {FORMAT!r} marker)")
    if payload.get("version") != VERSION:
        version = payload.get("version")
        why = (" (saved before the method contract changed how runs draw their random numbers and "
               "store their memory, so it cannot be continued exactly)"
               if isinstance(version, int) and version < VERSION else "")
        raise CheckpointError(
            f"checkpoint {str(path)!r} has format version {version!r}{why}; this clreplay reads "
            f"version {VERSION}: start afresh (remove the file or use another checkpoint folder)"
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
    path = check_path(path)
    n_experiences = check_optional_positive_int("n_experiences", n_experiences)
    if map_location is None and idist.is_distributed(strategy) and strategy.device.type == "cuda":
        map_location = _to_device_of(strategy)
    payload = read_checkpoint(path, map_location=map_location)
    return restore_checkpoint(strategy, payload, config=config, n_experiences=n_experiences,
                              source=str(path))


def _oversized_memory(strategy: BaseStrategy) -> Optional[str]:
    for i, plugin in enumerate(strategy.plugins):
        ext_mem, mem_size = getattr(plugin, "ext_mem", None), getattr(plugin, "mem_size", None)
        if isinstance(ext_mem, dict) and isinstance(mem_size, int):
            size = sum(len(group) for group in ext_mem.values())
            if size > mem_size:
                return (f"plugins[{i}] ({type(plugin).__name__}) holds a memory of {size} samples, "
                        f"more than its mem_size {mem_size}")
    return None


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
