"""results.json: what a run leaves behind, written and read back.

A results file is one JSON object. The main job writes at least these keys:

- ``accuracy_matrix``: ``R[i][j]``, accuracy on test experience ``j`` after training
  on experience ``i`` (class-incremental: argmax over every output);
- ``task_accuracy_matrix`` and the same metrics prefixed ``task_``: task-incremental
  accuracy, the logits restricted to the classes of test experience ``j`` (files
  written before it existed lack these keys; readers treat them as optional);
- ``average_accuracy``, ``average_incremental_accuracy``, ``forgetting``,
  ``backward_transfer``, ``forward_transfer`` (see :mod:`clreplay.evaluation.metrics`;
  ``null`` where undefined);
- ``config``: the run's configuration;
- ``timing``: ``total_s`` and, per experience, ``train_s``, ``eval_s``,
  ``train_samples`` and ``samples_per_s``;
- ``memory``: ``mem_size``, ``policy`` and, per experience, the memory's ``size``
  and its composition by ``groups`` and by ``classes``.

Non-finite numbers are written as ``null``, so any JSON reader can parse the file.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from clreplay.evaluation.metrics import check_matrix

RESULTS_FILE = "results.json"
FORMAT_VERSION = 1
REQUIRED_KEYS = (
    "accuracy_matrix",
    "average_accuracy",
    "forgetting",
    "backward_transfer",
    "config",
    "timing",
    "memory",
)


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON data: dict keys as strings, tuples as lists,
    tensors and arrays as lists, paths as strings, NaN and infinities as None.

    >>> jsonable({1: (0.5, float("nan")), "p": [float("inf")]})
    {'1': [0.5, None], 'p': [None]}
    """
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "tolist"):  # tensors, numpy arrays and numpy scalars
        return jsonable(value.tolist())
    raise TypeError(f"value must be JSON data, tensors or paths, got {type(value).__name__}")


def results_path(path: str | os.PathLike) -> Path:
    """The results file of ``path``: the path itself if it is a file, else ``path/results.json``."""
    path = Path(path)
    return path if path.is_file() else path / RESULTS_FILE


def write_results(results: dict, folder: str | os.PathLike) -> Path:
    """Write ``results`` to ``folder/results.json`` (creating the folder) and return its path.

    The file is replaced atomically, so a reader never sees half a file.
    """
    if not isinstance(results, dict):
        raise TypeError(f"results must be a dict, got {type(results).__name__}")
    missing = [key for key in REQUIRED_KEYS if key not in results]
    if missing:
        raise ValueError(f"results must have the keys {list(REQUIRED_KEYS)}; missing {missing}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / RESULTS_FILE
    tmp = target.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(jsonable(results), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    os.replace(tmp, target)
    return target


def read_results(path: str | os.PathLike) -> dict:
    """Read a results file (or the ``results.json`` of a folder) and check its keys
    and its accuracy matrix."""
    file = results_path(path)
    if not file.exists():
        raise FileNotFoundError(
            f"path must be a results folder or file, got {os.fspath(path)!r}: no {file} "
            f"(write one with: clreplay run --output DIR)"
        )
    try:
        results = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{file} must hold JSON, got a parse error: {err}") from None
    if not isinstance(results, dict):
        raise ValueError(f"{file} must hold a JSON object, got {type(results).__name__}")
    missing = [key for key in REQUIRED_KEYS if key not in results]
    if missing:
        raise ValueError(f"{file} must have the keys {list(REQUIRED_KEYS)}; missing {missing}")
    try:
        check_matrix(results["accuracy_matrix"])
    except (TypeError, ValueError) as err:
        raise ValueError(f"{file}: accuracy_matrix is not valid: {err}") from None
    return results
