"""Multi-layer perceptrons, on flat vectors or (flattened) images."""

from __future__ import annotations

from typing import Optional, Sequence

from torch import nn

from clreplay._validation import check_positive_int
from clreplay.models._common import check_image_shape, seeded_init
from clreplay.models.normalization import InputNormalization


def make_mlp(
    in_features: int, n_classes: int, hidden: Sequence[int] = (256,), *, seed: int = 0
) -> nn.Sequential:
    """A ReLU MLP ``in_features -> hidden... -> n_classes`` initialised from ``seed``.

    The initialisation draws from torch's global generator inside ``fork_rng``,
    so it is reproducible and leaves the caller's global random state untouched.

    >>> model = make_mlp(64, 10, (32,), seed=0)
    >>> [tuple(p.shape) for p in model.parameters()]
    [(32, 64), (32,), (10, 32), (10,)]
    """
    sizes = [check_positive_int("in_features", in_features)]
    sizes += [check_positive_int("hidden", h) for h in hidden]
    layers: list[nn.Module] = []
    with seeded_init(seed):
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        layers.append(nn.Linear(sizes[-1], check_positive_int("n_classes", n_classes)))
    return nn.Sequential(*layers)


def make_image_mlp(
    input_shape: Sequence[int],
    n_classes: int,
    hidden: Sequence[int] = (256,),
    *,
    seed: int = 0,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
) -> nn.Sequential:
    """:func:`make_mlp` behind :class:`InputNormalization` and a flatten: it takes raw
    ``uint8`` image batches ``(N, C, H, W)``. Its linear layers get the same initial
    weights as ``make_mlp(C * H * W, n_classes, hidden, seed=seed)``.

    >>> import torch
    >>> model = make_image_mlp((1, 28, 28), 10, (100, 100), seed=0)
    >>> model(torch.zeros(2, 1, 28, 28, dtype=torch.uint8)).shape
    torch.Size([2, 10])
    """
    channels, height, width = check_image_shape(input_shape)
    body = make_mlp(channels * height * width, n_classes, hidden, seed=seed)
    norm = InputNormalization(mean, std, channels=channels)
    return nn.Sequential(norm, nn.Flatten(), *body)
