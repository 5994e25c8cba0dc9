"""Multi-layer perceptrons, on flat vectors or (flattened) images."""

from __future__ import annotations

from typing import Optional, Sequence

from torch import nn

from clreplay._validation import check_choice, check_positive_int
from clreplay.data.normalization import InputNormalization
from clreplay.models._common import check_image_shape, seeded_init

#: The MLP's initialisations: name -> what it is (the command line's help).
INITS = {
    "default": "torch's nn.Linear initialisation, weights and biases uniform in +-1/sqrt(fan_in)",
    "xavier": "Glorot/Xavier-uniform weights and zero biases, as the MLP of mammoth, the DER "
    "authors' library and the methods table's reference",
}


class XavierLinear(nn.Linear):
    """A linear layer initialised with Glorot/Xavier-uniform weights and zero biases, also
    when re-initialised (``reset_parameters``, e.g. by GDumb)."""

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)


def make_mlp(
    in_features: int, n_classes: int, hidden: Sequence[int] = (256,), *, seed: int = 0,
    init: str = "default",
) -> nn.Sequential:
    """A ReLU MLP ``in_features -> hidden... -> n_classes`` initialised from ``seed``.

    The initialisation draws from torch's global generator inside ``fork_rng``,
    so it is reproducible and leaves the caller's global random state untouched.
    ``init`` is one of :data:`INITS`: ``"xavier"`` builds :class:`XavierLinear` layers,
    whose weights are uniform in ``+-sqrt(6 / (fan_in + fan_out))`` and biases zero.

    >>> model = make_mlp(64, 10, (32,), seed=0)
    >>> [tuple(p.shape) for p in model.parameters()]
    [(32, 64), (32,), (10, 32), (10,)]
    >>> bool(make_mlp(64, 10, (32,), init="xavier")[0].bias.eq(0).all())
    True
    """
    check_choice("init", init, list(INITS))
    sizes = [check_positive_int("in_features", in_features)]
    sizes += [check_positive_int("hidden", h) for h in hidden]
    linear = XavierLinear if init == "xavier" else nn.Linear
    layers: list[nn.Module] = []
    with seeded_init(seed):
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [linear(a, b), nn.ReLU()]
        layers.append(linear(sizes[-1], check_positive_int("n_classes", n_classes)))
    return nn.Sequential(*layers)


def make_image_mlp(
    input_shape: Sequence[int],
    n_classes: int,
    hidden: Sequence[int] = (256,),
    *,
    seed: int = 0,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
    init: str = "default",
) -> nn.Sequential:
    """:func:`make_mlp` behind :class:`InputNormalization` and a flatten: it takes raw
    ``uint8`` image batches ``(N, C, H, W)``. Its linear layers get the same initial
    weights as ``make_mlp(C * H * W, n_classes, hidden, seed=seed, init=init)``.

    >>> import torch
    >>> model = make_image_mlp((1, 28, 28), 10, (100, 100), seed=0)
    >>> model(torch.zeros(2, 1, 28, 28, dtype=torch.uint8)).shape
    torch.Size([2, 10])
    """
    channels, height, width = check_image_shape(input_shape)
    body = make_mlp(channels * height * width, n_classes, hidden, seed=seed, init=init)
    norm = InputNormalization(mean, std, channels=channels)
    return nn.Sequential(norm, nn.Flatten(), *body)
