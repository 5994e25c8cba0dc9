"""InputNormalization: images converted and normalised on their device (the image models' first layer).

Images stay ``uint8`` in datasets and in the replay memory (a quarter of the bytes of
float32); the model converts and normalises each batch on the device it runs on.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from clreplay._validation import check_positive_float


def _channel_values(name: str, values: Optional[Sequence[float]], n: int, default: float):
    if values is None:
        return [default] * n
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
        raise TypeError(f"{name} must be a sequence of {n} numbers (one per channel), got {values!r}")
    values = [float(v) for v in values]
    if len(values) != n:
        raise ValueError(f"{name} must hold {n} numbers (one per channel), got {len(values)}: {values}")
    return values


class InputNormalization(nn.Module):
    """``(x * scale - mean) / std`` per channel, computed in the default float dtype.

    ``x`` is a batch ``(N, C, H, W)`` of any dtype (``uint8`` images, typically);
    ``scale`` is applied whatever the dtype, so a batch mixing ``uint8`` current
    samples with float replayed ones (``torch.cat`` promotes them) is normalised
    alike. ``mean`` and ``std`` are in units of the scaled input (``[0, 1]`` for
    images with the default ``scale=1/255``). They are construction arguments, not
    part of the ``state_dict``.

    >>> norm = InputNormalization(mean=[0.5], std=[0.25])
    >>> norm(torch.tensor([[[[0, 255]]]], dtype=torch.uint8)).tolist()
    [[[[-2.0, 2.0]]]]
    """

    def __init__(
        self,
        mean: Optional[Sequence[float]] = None,
        std: Optional[Sequence[float]] = None,
        *,
        channels: Optional[int] = None,
        scale: float = 1 / 255,
    ) -> None:
        super().__init__()
        if channels is None:
            channels = len(mean) if mean is not None else len(std) if std is not None else 1
        mean_values = _channel_values("mean", mean, channels, 0.0)
        std_values = _channel_values("std", std, channels, 1.0)
        for s in std_values:
            check_positive_float("std", s)
        self.scale = check_positive_float("scale", scale)
        dtype = torch.get_default_dtype()
        shape = (1, channels, 1, 1)
        self.register_buffer("mean", torch.tensor(mean_values, dtype=dtype).view(shape),
                             persistent=False)
        self.register_buffer("std", torch.tensor(std_values, dtype=dtype).view(shape),
                             persistent=False)

    @property
    def channels(self) -> int:
        return self.mean.shape[1]

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(
                f"x must be a batch of images (N, {self.channels}, H, W), got shape {tuple(x.shape)}"
            )
        return (x.to(self.mean.dtype) * self.scale - self.mean) / self.std

    def extra_repr(self) -> str:
        return (f"mean={[round(v, 4) for v in self.mean.flatten().tolist()]}, "
                f"std={[round(v, 4) for v in self.std.flatten().tolist()]}, scale={self.scale:.6g}")
