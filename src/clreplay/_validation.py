"""Argument checks shared by the public API.

Every message follows one template: the argument's name, what was expected and
what was received, e.g. ``mem_size must be a positive int, got 0``.
"""

from __future__ import annotations

import math
import numbers
from typing import Any


def _is_int(value: Any) -> bool:
    # bool is an int subclass, but True is never a sensible size.
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_int(name: str, value: Any, *, minimum: int | None = None) -> int:
    """Return ``int(value)`` if it is an integer ``>= minimum``, else raise."""
    if minimum == 1:
        expected = "a positive int"
    elif minimum == 0:
        expected = "a non-negative int"
    elif minimum is not None:
        expected = f"an int >= {minimum}"
    else:
        expected = "an int"
    if not _is_int(value):
        raise TypeError(f"{name} must be {expected}, got {value!r} ({type(value).__name__})")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return int(value)


def check_positive_int(name: str, value: Any) -> int:
    return check_int(name, value, minimum=1)


def check_optional_positive_int(name: str, value: Any) -> int | None:
    return None if value is None else check_positive_int(name, value)


#: The largest seed: seeds are ints in [0, 2**63 - 1] (what a torch generator holds).
MAX_SEED = 2**63 - 1


def check_seed(name: str, value: Any) -> int | None:
    """Seeds are None or ints in [0, 2**63 - 1] (what ``torch.Generator.manual_seed`` takes)."""
    if value is None:
        return None
    value = check_int(name, value, minimum=0)
    if value > MAX_SEED:
        raise ValueError(f"{name} must be an int in [0, 2**63 - 1], got {value}")
    return value


def check_positive_float(name: str, value: Any) -> float:
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(f"{name} must be a positive number, got {value!r} ({type(value).__name__})")
    if not (value > 0 and math.isfinite(value)):  # NaN and inf fail too
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def device_available(location: Any) -> bool:
    """Whether the torch device ``location`` (``"cpu"``, ``"cuda:1"``, ...) exists here.

    >>> device_available("cpu"), device_available("nonsense")
    (True, False)
    """
    import torch

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


def check_choice(name: str, value: Any, choices) -> Any:
    """Raise a ValueError listing the valid choices and the closest matches."""
    choices = list(choices)
    if value in choices:
        return value
    import difflib

    close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=3, cutoff=0.8)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise ValueError(
        f"{name} must be one of {', '.join(repr(c) for c in choices)}, got {value!r}{hint}"
    )
