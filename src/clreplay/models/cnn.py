"""A small convolutional network for 28x28 and 32x32 images."""

from __future__ import annotations

from typing import Optional, Sequence

from torch import Tensor, nn

from clreplay._validation import check_positive_int
from clreplay.data.normalization import InputNormalization
from clreplay.models._common import check_image_shape, seeded_init


class SmallCNN(nn.Module):
    """Two blocks of 3x3 convolution, ReLU and 2x2 max-pooling, a hidden linear
    layer (the embedding) and a linear classifier:
    ``normalize -> features -> embedding -> classifier``.

    ``feature_layer`` names the embedding (what herding and closest-to-centre
    selection read).
    """

    feature_layer = "embedding"

    def __init__(
        self,
        input_shape: Sequence[int],
        n_classes: int,
        *,
        channels: Sequence[int] = (32, 64),
        hidden: int = 256,
        mean: Optional[Sequence[float]] = None,
        std: Optional[Sequence[float]] = None,
    ) -> None:
        super().__init__()
        in_channels, height, width = check_image_shape(input_shape)
        c1, c2 = (check_positive_int("channels", c) for c in channels)
        if height < 4 or width < 4:
            raise ValueError(f"input_shape must be at least 4x4 pixels, got {tuple(input_shape)}")
        self.normalize = InputNormalization(mean, std, channels=in_channels)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        flat = c2 * (height // 4) * (width // 4)
        hidden = check_positive_int("hidden", hidden)
        self.embedding = nn.Sequential(nn.Flatten(), nn.Linear(flat, hidden), nn.ReLU())
        self.classifier = nn.Linear(hidden, check_positive_int("n_classes", n_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.embedding(self.features(self.normalize(x))))


def make_cnn(
    input_shape: Sequence[int],
    n_classes: int,
    *,
    seed: int = 0,
    channels: Sequence[int] = (32, 64),
    hidden: int = 256,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
) -> SmallCNN:
    """A :class:`SmallCNN` initialised from ``seed`` (global random state untouched).

    >>> import torch
    >>> model = make_cnn((3, 32, 32), 10, seed=0)
    >>> model(torch.zeros(2, 3, 32, 32, dtype=torch.uint8)).shape
    torch.Size([2, 10])
    """
    with seeded_init(seed):
        return SmallCNN(input_shape, n_classes, channels=channels, hidden=hidden,
                        mean=mean, std=std)
