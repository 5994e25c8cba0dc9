"""The checkpoint file format: its marker and version, what it may hold, and its digest.

A checkpoint holds tensors and plain data only (it is read with
``torch.load(weights_only=True)``), plus the SHA-256 digest of that content, so a
file whose bytes changed (a flipped bit) is refused.
"""

from __future__ import annotations

import hashlib
import json
import reprlib
from typing import Any, Mapping

import torch
from torch import Tensor

#: Identifies clreplay checkpoints (a file without it is refused).
FORMAT = "clreplay-checkpoint"
#: Version 2 added the SHA-256 digest and ``metadata``. Version 3 came with the method
#: contract: shuffles, class orders and initialisations draw from named seed streams and
#: the memory's storage changed, so a version 2 run cannot be continued exactly; files
#: of any other version are refused, naming it.
VERSION = 3


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: unreadable, unsafe, or from another run."""


def key_path(parent: str, key: Any) -> str:
    """``parent.key`` (or ``parent[key]``): where a value sits in a nested state."""
    if isinstance(key, str) and key.isidentifier():
        return f"{parent}.{key}" if parent else key
    return f"{parent}[{key!r}]"


def plain_json(name: str, value: Any) -> Any:
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be JSON-like plain data, got {reprlib.repr(value)} ({err})") from None


_PLAIN_TYPES = (str, bytes, int, float, bool, type(None), torch.dtype, torch.device, torch.Size)


def check_plain(value: Any, where: str) -> None:
    """Refuse at saving what the safe loader would refuse at loading."""
    if isinstance(value, (Tensor,) + _PLAIN_TYPES):
        return
    if isinstance(value, dict):
        for key, item in value.items():
            check_plain(key, f"{where} key {key!r}")
            check_plain(item, key_path(where, key))
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            check_plain(item, f"{where}[{i}]")
        return
    raise TypeError(
        f"{where} must hold only tensors and plain data (dict, list, tuple, str, int, float, "
        f"bool, None) to be checkpointed, got a {type(value).__name__}"
    )


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


