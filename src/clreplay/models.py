"""Small reference models for the benchmarks and the command line."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from clreplay._validation import check_positive_int


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
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        layers.append(nn.Linear(sizes[-1], check_positive_int("n_classes", n_classes)))
    return nn.Sequential(*layers)


def feature_layer_name(model: nn.Sequential) -> str:
    """Name of the last hidden activation of an MLP from :func:`make_mlp` (the embedding)."""
    return str(len(model) - 2)
