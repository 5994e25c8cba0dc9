"""Batched, seeded augmentation of image batches ``(N, C, H, W)`` on their own device.

Every transform works on the whole batch at once (index arithmetic and one gather,
no loop over samples) and keeps the batch's dtype, so ``uint8`` images stay
``uint8`` until the model normalises them. A random transform owns a
``torch.Generator`` on the batch's device, seeded from its explicit ``seed``, with
``state_dict()`` / ``load_state_dict()``: the same seed gives the same crops and
flips, and a resumed run continues the same random stream.

>>> x = torch.arange(16, dtype=torch.uint8).view(1, 1, 4, 4)
>>> augment = standard_augmentation(seed=0)
>>> y = augment(x)
>>> y.shape, y.dtype
(torch.Size([1, 1, 4, 4]), torch.uint8)
>>> torch.equal(standard_augmentation(seed=0)(x), y)
True
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable, Dict, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from clreplay._seeding import derive_seed
from clreplay._validation import check_int, check_seed
from clreplay.data.normalization import InputNormalization


def _check_images(x: Tensor, name: str = "x") -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a Tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"{name} must be a batch of images (N, C, H, W), got shape {tuple(x.shape)}")
    return x


class BatchTransform(ABC):
    """A transform of a whole batch of images; stateless unless it is random."""

    @abstractmethod
    def __call__(self, x: Tensor) -> Tensor: ...

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        if state:
            raise KeyError(f"{type(self).__name__} has no state, got keys {sorted(state)}")


class RandomBatchTransform(BatchTransform):
    """A transform drawing from its own generator, created on the first batch's
    device and seeded with ``seed``; with ``seed=None``, from the seed :meth:`setup`
    hands it (the run's ``"augment"`` stream, through
    :class:`~clreplay.training.AugmentationPlugin`; 0 if it is never set up)."""

    #: Its name in the streams derived from a parent seed (see :func:`standard_augmentation`).
    stream = "random"

    def __init__(self, *, seed: Optional[int] = None) -> None:
        seed = check_seed("seed", seed)
        self._explicit = seed is not None
        self.seed = 0 if seed is None else seed
        self._generator: Optional[torch.Generator] = None
        self._pending: Optional[dict] = None

    def setup(self, seed: int) -> None:
        """Take the seed ``seed`` if none was given and no batch was drawn yet."""
        if not self._explicit and self._generator is None:
            self.seed = derive_seed(seed, self.stream)

    def generator(self, device: torch.device) -> torch.Generator:
        """The generator on ``device`` (a new one, from ``seed``, if the batches moved)."""
        g = self._generator
        if g is None or g.device.type != device.type:
            g = torch.Generator(device=device)
            g.manual_seed(self.seed)
            pending, self._pending = self._pending, None
            if pending is not None and torch.device(pending["device"]).type == device.type:
                g.set_state(pending["state"])
            self._generator = g
        return g

    def state_dict(self) -> dict:
        if self._generator is None:
            return {"seed": self.seed, **(self._pending or {"device": None, "state": None})}
        return {"seed": self.seed, "device": str(self._generator.device),
                "state": self._generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        if set(state) != {"seed", "device", "state"}:
            raise KeyError(f"{type(self).__name__} state must have keys ['device', 'seed', 'state'], "
                           f"got {sorted(state)}")
        self.seed = state["seed"]
        self._generator = None
        # Applied when the first batch shows the device (the generator lives there).
        self._pending = None if state["state"] is None else {"device": state["device"],
                                                             "state": state["state"]}


def crop_with_offsets(x: Tensor, top: Tensor, left: Tensor, padding: int) -> Tensor:
    """Windows of ``x``'s size cut from ``x`` zero-padded by ``padding`` on each side;
    sample ``i``'s window starts at row ``top[i]``, column ``left[i]`` of the padded
    image (``padding, padding`` is the original image). One gather for the batch.

    >>> x = torch.tensor([[[[1, 2], [3, 4]]]])
    >>> crop_with_offsets(x, torch.tensor([0]), torch.tensor([2]), 1).tolist()
    [[[[0, 0], [2, 0]]]]
    """
    _check_images(x)
    n, c, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding)) if padding else x
    width = w + 2 * padding
    rows = top.view(n, 1, 1) + torch.arange(h, device=x.device).view(1, h, 1)
    cols = left.view(n, 1, 1) + torch.arange(w, device=x.device).view(1, 1, w)
    index = (rows * width + cols).view(n, 1, h * w).expand(n, c, h * w)
    return padded.reshape(n, c, -1).gather(2, index).view(n, c, h, w)


class RandomCrop(RandomBatchTransform):
    """Random crop of each image's size from the image zero-padded by ``padding``
    (``torchvision.transforms.RandomCrop(size, padding)``, batched).

    Offsets are ``torch.randint(0, 2 * padding + 1, (2, N))`` from the generator:
    row 0 the top, row 1 the left of each window in the padded image.
    """

    stream = "crop"

    def __init__(self, padding: int = 4, *, seed: Optional[int] = None) -> None:
        super().__init__(seed=seed)
        self.padding = check_int("padding", padding, minimum=0)

    def __call__(self, x: Tensor) -> Tensor:
        _check_images(x)
        offsets = torch.randint(0, 2 * self.padding + 1, (2, x.shape[0]),
                                generator=self.generator(x.device), device=x.device)
        return crop_with_offsets(x, offsets[0], offsets[1], self.padding)


class RandomHorizontalFlip(RandomBatchTransform):
    """Mirror each image left-right with probability ``p``: image ``i`` is flipped when
    ``torch.rand(N)[i] < p`` (drawn from the generator)."""

    stream = "flip"

    def __init__(self, p: float = 0.5, *, seed: Optional[int] = None) -> None:
        super().__init__(seed=seed)
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
            raise ValueError(f"p must be a probability in [0, 1], got {p!r}")
        self.p = float(p)

    def __call__(self, x: Tensor) -> Tensor:
        _check_images(x)
        flip = torch.rand(x.shape[0], generator=self.generator(x.device), device=x.device) < self.p
        return torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)


class FeatureNoise(RandomBatchTransform):
    """An augmentation for flat feature vectors ``(N, D)``, where crops and flips mean
    nothing: each feature is zeroed with probability ``drop`` (feature dropout, unscaled),
    then Gaussian noise of standard deviation ``std`` is added (both drawn from the
    generator). The input's dtype must be floating point.

    >>> x = torch.ones(2, 3)
    >>> y = FeatureNoise(std=0.0, drop=0.5, seed=0)(x)
    >>> sorted(set(y.flatten().tolist())) <= [0.0, 1.0], torch.equal(FeatureNoise(seed=1)(x), FeatureNoise(seed=1)(x))
    (True, True)
    """

    stream = "feature_noise"

    def __init__(self, std: float = 0.1, drop: float = 0.1, *, seed: Optional[int] = None) -> None:
        super().__init__(seed=seed)
        if isinstance(std, bool) or not isinstance(std, (int, float)) or not std >= 0:
            raise ValueError(f"std must be a number >= 0, got {std!r}")
        if isinstance(drop, bool) or not isinstance(drop, (int, float)) or not 0 <= drop < 1:
            raise ValueError(f"drop must be a probability in [0, 1), got {drop!r}")
        self.std, self.drop = float(std), float(drop)

    def __call__(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor) or x.dim() != 2 or not x.dtype.is_floating_point:
            raise ValueError(f"x must be a float batch of vectors (N, D), got {getattr(x, 'shape', x)!r}")
        g = self.generator(x.device)
        keep = torch.rand(x.shape, generator=g, device=x.device) >= self.drop
        return x * keep + self.std * torch.randn(x.shape, generator=g, device=x.device, dtype=x.dtype)


class Normalize(BatchTransform):
    """``(x * scale - mean) / std`` per channel, as float: for models that do not
    start with :class:`~clreplay.data.normalization.InputNormalization` (the library's models do,
    so their batches stay ``uint8`` and need no ``Normalize``)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], *, scale: float = 1 / 255) -> None:
        self._norm = InputNormalization(mean, std, scale=scale)
        self._on: Dict[torch.device, Callable[[Tensor], Tensor]] = {}

    def __call__(self, x: Tensor) -> Tensor:
        _check_images(x)
        norm = self._on.get(x.device)
        if norm is None:
            norm = self._on[x.device] = self._norm.to(x.device)
        return norm(x)


class Compose(BatchTransform):
    """Transforms applied in order; the state is the list of their states."""

    def __init__(self, transforms: Sequence[BatchTransform]) -> None:
        self.transforms = list(transforms)
        for i, t in enumerate(self.transforms):
            if not callable(t):
                raise TypeError(f"transforms[{i}] must be callable, got {type(t).__name__}")

    def __call__(self, x: Tensor) -> Tensor:
        for t in self.transforms:
            x = t(x)
        return x

    def setup(self, seed: int) -> None:
        """Hand ``seed`` to the random transforms without a seed of their own."""
        for t in self.transforms:
            if hasattr(t, "setup"):
                t.setup(seed)

    def state_dict(self) -> dict:
        return {"transforms": [getattr(t, "state_dict", dict)() for t in self.transforms]}

    def load_state_dict(self, state: dict) -> None:
        states = state.get("transforms") if isinstance(state, dict) else None
        if not isinstance(states, list) or len(states) != len(self.transforms):
            raise KeyError(f"Compose state must hold {len(self.transforms)} transform states, got {state!r}")
        for t, s in zip(self.transforms, states):
            if hasattr(t, "load_state_dict"):
                t.load_state_dict(s)


def standard_augmentation(*, seed: Optional[int] = None, padding: int = 4, flip: bool = True) -> Compose:
    """The augmentation of the split-CIFAR literature: random crop with ``padding``
    zero pixels, then a horizontal flip with probability 1/2 (each from its own stream,
    ``"crop"`` and ``"flip"``, of ``seed``; None: of the seed the run hands it, its
    ``"augment"`` stream)."""
    seed = check_seed("seed", seed)
    transforms: list[BatchTransform] = [RandomCrop(padding), RandomHorizontalFlip() if flip else None]
    compose = Compose([t for t in transforms if t is not None])
    if seed is not None:
        for t in compose.transforms:
            t._explicit, t.seed = True, derive_seed(seed, t.stream)
    return compose
