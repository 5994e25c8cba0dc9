"""The reduced ResNet-18 of the continual-learning literature, in plain torch.

GEM (Lopez-Paz & Ranzato, 2017) and DER (Buzzega et al., 2020; the ``mammoth``
code base's ``resnet18(nclasses, nf)``) use a CIFAR-style ResNet-18: BasicBlocks in
stages of [2, 2, 2, 2] with ``nf, 2nf, 4nf, 8nf`` filters, a first 3x3 convolution
of stride 1 (no max-pooling), global average pooling and one linear layer.
``nf=20`` is the reduced network (1.09 M parameters for 10 classes), ``nf=64`` the
full-width one.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from clreplay._validation import check_positive_int
from clreplay.data.normalization import InputNormalization
from clreplay.models._common import check_image_shape, seeded_init


def _conv3x3(in_planes: int, planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and a shortcut (a 1x1 convolution when
    the shape changes)."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_planes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """``normalize -> conv1/bn1/relu -> layer1..layer4 -> pool -> classifier``.

    ``pool`` (global average pooling, flattened: ``8 * nf`` features) is the
    embedding named by ``feature_layer``.
    """

    feature_layer = "pool"

    def __init__(self, input_shape: Sequence[int], n_classes: int, *, nf: int = 20,
                 mean: Optional[Sequence[float]] = None, std: Optional[Sequence[float]] = None) -> None:
        super().__init__()
        in_channels, _, _ = check_image_shape(input_shape)
        nf = check_positive_int("nf", nf)
        self.normalize = InputNormalization(mean, std, channels=in_channels)
        self.conv1 = _conv3x3(in_channels, nf)
        self.bn1 = nn.BatchNorm2d(nf)
        planes = nf
        stages = []
        for i, stride in enumerate((1, 2, 2, 2)):
            width = nf * 2**i
            stages.append(nn.Sequential(BasicBlock(planes, width, stride), BasicBlock(width, width)))
            planes = width
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(planes, check_positive_int("n_classes", n_classes))

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(self.normalize(x))))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.classifier(self.pool(out))


def make_resnet18(input_shape: Sequence[int], n_classes: int, *, seed: int = 0, nf: int = 20,
                  mean: Optional[Sequence[float]] = None,
                  std: Optional[Sequence[float]] = None) -> ResNet18:
    """A :class:`ResNet18` with ``nf`` base filters, initialised from ``seed``.

    >>> import torch
    >>> model = make_resnet18((3, 32, 32), 10, seed=0)
    >>> sum(p.numel() for p in model.parameters())
    1094750
    >>> model(torch.zeros(2, 3, 32, 32, dtype=torch.uint8)).shape
    torch.Size([2, 10])
    """
    with seeded_init(seed):
        return ResNet18(input_shape, n_classes, nf=nf, mean=mean, std=std)
