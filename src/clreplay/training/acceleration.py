"""How a strategy computes its steps: precision (autocast, a gradient scaler for fp16),
channels-last image batches, and compiled models.

These change how fast a step runs, not what it computes (up to the rounding of the
chosen precision): one :class:`Acceleration` per strategy wraps its forward pass and
loss in autocast, scales the loss for fp16 (and unscales the gradients before any
plugin reads them, so A-GEM's projection and gradient clipping see true values),
keeps image batches in channels-last memory order when asked, and trains through a
``torch.compile``-d copy of the model while ``strategy.model`` (what plugins read and
checkpoints save) stays the original module.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Optional, Union

import torch
from torch import Tensor, nn

from clreplay.options import Option

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune")

PRECISION = Option("precision", "fp32", "forward pass and loss in autocast (fp16 with a gradient scaler)",
                   choices=tuple(PRECISIONS))
COMPILE = Option("compile", "off", "torch.compile the model (reduce-overhead: CUDA graphs)",
                 choices=COMPILE_MODES)
CHANNELS_LAST = Option("channels_last", False, "image models and batches in channels-last order")


class Acceleration:
    """A strategy's precision, memory format and compiled model.

    ``compile`` is a mode of :data:`COMPILE_MODES` (``"off"``: none) or a callable that
    returns the module to train through (e.g. ``functools.partial(torch.compile,
    backend="aot_eager")``).

    >>> acc = Acceleration(nn.Linear(2, 2), torch.device("cpu"), precision="bf16")
    >>> with acc.autocast():
    ...     out = acc.forward(torch.ones(1, 2))
    >>> out.dtype
    torch.bfloat16
    """

    def __init__(self, model: nn.Module, device: torch.device, *, precision: str = "fp32",
                 channels_last: bool = False,
                 compile: Union[str, Callable[[nn.Module], Callable], None] = "off") -> None:
        self.precision = PRECISION.check(precision, "precision")
        self.channels_last = CHANNELS_LAST.check(channels_last, "channels_last")
        self.dtype = PRECISIONS[self.precision]
        self.device = device
        self.scaler = torch.amp.GradScaler(device.type) if self.precision == "fp16" else None
        if compile is None:
            compile = "off"
        if not callable(compile):
            compile = COMPILE.check(compile, "compile")
        self.compile = compile
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        self.model = model
        # The compiled module of the last module trained through (the model, or the wrapper
        # a distributed run trains through, wrapped again each experience).
        self._compiled: Optional[tuple] = None

    @property
    def active(self) -> bool:
        """Whether anything differs from a plain fp32 eager step."""
        return self.dtype is not None or self.channels_last or self.compile != "off"

    def _module(self, module: nn.Module) -> Callable[[Tensor], Tensor]:
        if self.compile == "off":
            return module
        if self._compiled is None or self._compiled[0] is not module:
            compiled = self.compile(module) if callable(self.compile) else \
                torch.compile(module, mode=None if self.compile == "default" else self.compile)
            self._compiled = (module, compiled)
        return self._compiled[1]

    def autocast(self):
        """The context of the forward pass and the loss."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def forward(self, x: Tensor, module: Optional[nn.Module] = None) -> Tensor:
        """``module(x)`` (default: the model), compiled with ``compile``, ``x`` in channels-last
        order with ``channels_last``."""
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return self._module(self.model if module is None else module)(x)

    def backward(self, loss: Tensor, optimizer: torch.optim.Optimizer) -> None:
        """``loss.backward()``; for fp16, of the scaled loss, then the gradients unscaled
        (before the plugins' ``after_backward`` hooks read or change them)."""
        if self.scaler is None:
            loss.backward()
            return
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """The optimiser's step (skipped by the scaler when fp16 gradients overflowed)."""
        if self.scaler is None:
            optimizer.step()
            return
        self.scaler.step(optimizer)
        self.scaler.update()

    def state_dict(self) -> Optional[dict]:
        return None if self.scaler is None else self.scaler.state_dict()

    def load_state_dict(self, state: Optional[dict]) -> None:
        if (state is None) != (self.scaler is None):
            raise ValueError(
                f"the saved state was trained {'with' if state is not None else 'without'} an fp16 "
                f"gradient scaler, this strategy's precision is {self.precision!r}"
            )
        if state is not None:
            self.scaler.load_state_dict(state)
