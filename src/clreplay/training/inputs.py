"""What the loop says when a model cannot take the batches it is given."""

from __future__ import annotations

from torch import Tensor

#: Words of torch's errors about operands of mismatched dtypes (Linear, Conv, matmul, ...).
_DTYPE_WORDS = ("dtype", "scalar type", "input type", "not implemented for")


def explain_input_dtype(err: RuntimeError, x: Tensor) -> None:
    """Raise a TypeError saying how to fix it when ``err``, raised by the model on the
    batch ``x``, comes from integer inputs (``uint8`` images) reaching float layers;
    return otherwise (the caller re-raises ``err``).

    >>> import torch
    >>> try:
    ...     torch.nn.Linear(4, 2)(torch.zeros(3, 4, dtype=torch.uint8))
    ... except RuntimeError as err:
    ...     explain_input_dtype(err, torch.zeros(3, 4, dtype=torch.uint8))
    Traceback (most recent call last):
    ...
    TypeError: the model got a batch of torch.uint8 samples, shape (3, 4), and failed on them: ...
    """
    if not isinstance(x, Tensor) or x.dtype.is_floating_point or x.dtype.is_complex:
        return
    if not any(word in str(err).lower() for word in _DTYPE_WORDS):
        return
    raise TypeError(
        f"the model got a batch of {x.dtype} samples, shape {tuple(x.shape)}, and failed on them: "
        f"{str(err).strip()}. Image benchmarks keep their images as uint8 (benchmark.input_dtype), "
        "a quarter of float32's bytes, and the model converts them: start yours with "
        "clreplay.data.InputNormalization, e.g. torch.nn.Sequential(InputNormalization("
        "benchmark.mean, benchmark.std), model) (uint8 to float, /255, normalised per channel), "
        "or build it with clreplay.models.make_model, whose image models do"
    ) from err
