"""A pickle reader for the CIFAR batch files that runs no code from the file.

The CIFAR "python version" archives hold pickled dicts of byte-string keys to numpy
arrays, lists, byte strings and ints. ``pickle.load`` would call whatever the file
names; this reader's ``find_class`` hands out inert stand-ins for exactly the names
a pickled numpy array uses (``numpy.core.multiarray._reconstruct``, ``numpy.ndarray``,
``numpy.dtype``; ``_codecs.encode``, ``__builtin__.bytes`` (for ``b""``) and
``numpy._core.numeric._frombuffer`` as written by Python 3 at any protocol) and
refuses every other name. The stand-ins only record their arguments;
arrays are then built with ``np.frombuffer`` from a dtype checked against a short
list of plain numeric types, and a shape checked against the data's length.
"""

from __future__ import annotations

import io
import math
import pickle
from typing import Any, Dict

import numpy as np

#: Plain numeric dtypes an array in a CIFAR file may have.
ALLOWED_DTYPES = ("u1", "i1", "u2", "i2", "u4", "i4", "u8", "i8", "f4", "f8", "b1")


class UnsafePickleError(ValueError):
    """The file holds something other than the documented dict of arrays."""


class _NDArrayName:
    """Stands for ``numpy.ndarray`` (only ever passed to ``_reconstruct``)."""


class _PickledArray:
    """Stands for an array: what ``_reconstruct`` returns and ``BUILD`` fills in."""

    def __init__(self) -> None:
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _PickledDtype:
    """Stands for ``numpy.dtype(name, align, copy)`` and its ``BUILD`` state."""

    def __init__(self, name: Any, align: Any = False, copy: Any = False) -> None:
        self.name, self.state = name, None

    def __setstate__(self, state: Any) -> None:
        self.state = state


def _reconstruct(cls: Any, shape: Any, typecode: Any) -> _PickledArray:
    if cls is not _NDArrayName:
        raise UnsafePickleError(f"_reconstruct must rebuild a numpy.ndarray, got {cls!r}")
    return _PickledArray()


def _codecs_encode(text: Any, encoding: Any = "utf-8") -> bytes:
    # Python 3 writes bytes at protocol 2 as _codecs.encode(text, "latin1").
    if not isinstance(text, str) or encoding != "latin1":
        raise UnsafePickleError(f"_codecs.encode is accepted for (str, 'latin1') only, got {encoding!r}")
    return text.encode("latin1")


def _empty_bytes(*args: Any) -> bytes:
    # Python 3 writes b"" at protocols 0-2 as a call of bytes() with no argument.
    if args:
        raise UnsafePickleError(f"bytes is accepted without arguments only (b''), got {len(args)}")
    return b""


def _frombuffer(buffer: Any, dtype: Any, shape: Any, order: Any) -> _PickledArray:
    # numpy's protocol-5 pickles: _frombuffer(buffer, dtype, shape, order).
    array = _PickledArray()
    array.state = (1, shape, dtype, order == "F", buffer)
    return array


_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): _NDArrayName,
    ("numpy", "dtype"): _PickledDtype,
    ("_codecs", "encode"): _codecs_encode,
    ("__builtin__", "bytes"): _empty_bytes,
    ("builtins", "bytes"): _empty_bytes,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, source: str) -> None:
        super().__init__(file, encoding="bytes")
        self.source = source

    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"{self.source} refers to {module}.{name}, which this reader refuses: a CIFAR "
                "file holds only a dict of numpy arrays, lists, byte strings and ints "
                "(the file was not loaded and nothing in it was run)"
            ) from None

    def persistent_load(self, pid):
        raise UnsafePickleError(f"{self.source} holds a persistent reference, which this reader refuses")


def _text(value: Any) -> str:
    return value.decode("ascii") if isinstance(value, (bytes, bytearray)) else value


def _dtype(value: Any, source: str) -> np.dtype:
    if not isinstance(value, _PickledDtype):
        raise UnsafePickleError(f"{source}: an array's dtype must be a numpy dtype, got {value!r}")
    name = _text(value.name)
    order = _text(value.state[1]) if isinstance(value.state, tuple) and len(value.state) > 1 else "|"
    if name not in ALLOWED_DTYPES or order not in ("|", "<", ">", "="):
        raise UnsafePickleError(
            f"{source}: array dtype must be one of {list(ALLOWED_DTYPES)}, got {name!r} (order {order!r})"
        )
    dtype = np.dtype(name)
    return dtype if order in ("|", "=") else dtype.newbyteorder(order)


def _array(value: _PickledArray, source: str) -> np.ndarray:
    state = value.state
    if not (isinstance(state, tuple) and len(state) == 5):
        raise UnsafePickleError(f"{source}: an array's state must be a 5-tuple, got {type(state).__name__}")
    _, shape, dtype, fortran, raw = state
    dtype = _dtype(dtype, source)
    if not (isinstance(shape, tuple) and all(isinstance(d, int) and d >= 0 for d in shape)):
        raise UnsafePickleError(f"{source}: an array's shape must be a tuple of sizes, got {shape!r}")
    if isinstance(raw, pickle.PickleBuffer):
        raw = raw.raw()
    if isinstance(raw, str):  # Python 2 data loaded as text
        raw = raw.encode("latin1")
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        raise UnsafePickleError(f"{source}: an array's data must be bytes, got {type(raw).__name__}")
    expected = math.prod(shape) * dtype.itemsize
    if len(raw) != expected:
        raise UnsafePickleError(
            f"{source}: an array of shape {shape} and dtype {dtype} needs {expected} bytes, got {len(raw)}"
        )
    return np.frombuffer(bytes(raw), dtype=dtype).reshape(shape, order="F" if fortran else "C")


def _plain(value: Any, source: str, key: str) -> Any:
    if isinstance(value, _PickledArray):
        return _array(value, source)
    if isinstance(value, (bytes, str, int, float)) or value is None:
        return value
    if isinstance(value, list):
        for item in value:
            if not isinstance(item, (bytes, str, int, float)):
                raise UnsafePickleError(
                    f"{source}: list {key!r} must hold ints or strings, got a {type(item).__name__}"
                )
        return value
    raise UnsafePickleError(f"{source}: entry {key!r} must be an array, a list, bytes or a number, "
                            f"got {type(value).__name__}")


def read_cifar_pickle(data: bytes, *, source: str = "the file") -> Dict[str, Any]:
    """The dict stored in one CIFAR batch file, with ``str`` keys (``b'data'`` becomes
    ``'data'``), numpy arrays, lists, byte strings and numbers; anything else is an
    :class:`UnsafePickleError` (a ValueError) naming ``source``.

    >>> import pickle
    >>> read_cifar_pickle(pickle.dumps({b"labels": [3, 1]}, protocol=2))
    {'labels': [3, 1]}
    >>> read_cifar_pickle(pickle.dumps(print), source="evil")
    Traceback (most recent call last):
    ...
    clreplay.benchmarks.safe_pickle.UnsafePickleError: evil refers to builtins.print, which this reader refuses: a CIFAR file holds only a dict of numpy arrays, lists, byte strings and ints (the file was not loaded and nothing in it was run)
    """
    try:
        loaded = _RestrictedUnpickler(io.BytesIO(data), source).load()
    except UnsafePickleError:
        raise
    except Exception as err:  # a truncated or garbled file
        raise UnsafePickleError(f"{source} is not a readable pickle: {type(err).__name__}: {err}") from None
    if not isinstance(loaded, dict):
        raise UnsafePickleError(f"{source} must hold a dict, got {type(loaded).__name__}")
    out: Dict[str, Any] = {}
    for key, value in loaded.items():
        if not isinstance(key, (bytes, str)):
            raise UnsafePickleError(f"{source}: keys must be strings, got {key!r}")
        try:
            name = _text(key)
        except UnicodeDecodeError:
            raise UnsafePickleError(f"{source}: keys must be ASCII, got {key!r}") from None
        out[name] = _plain(value, source, name)
    return out
