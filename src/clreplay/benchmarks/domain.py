"""Domain-incremental streams: every experience holds every class, seen through a new input
transformation (a pixel permutation, a rotation), as Permuted and Rotated MNIST.

The transformations are drawn from the run seed's own streams (``"permutation"``,
``"rotation"``), and applied once, when the benchmark is built: the experiences hold
the transformed images (``uint8``), train and test alike.
"""

from __future__ import annotations

import math
import os
from typing import Callable, List, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from clreplay._seeding import derive_seed, make_generator
from clreplay._validation import check_positive_int, check_seed
from clreplay.benchmarks.fashion_mnist import load_fashion_mnist_datasets
from clreplay.data.dataset import ClassificationDataset
from clreplay.data.experience import Benchmark, Experience


def _images(data: ClassificationDataset) -> Tensor:
    x, _, _ = data.get_batch(torch.arange(len(data)))
    return x


def domain_incremental(train: ClassificationDataset, test: ClassificationDataset,
                       transforms: List[Callable[[Tensor], Tensor]], *, task_labels: bool = False,
                       name: str = "domain_incremental") -> Benchmark:
    """One experience per transform: all of ``train`` (and ``test``) passed through it.
    Every experience holds every class (domain-incremental learning); with ``task_labels``
    experience ``i``'s samples get task label ``i``.

    >>> data = ClassificationDataset(torch.arange(6.).view(3, 2), torch.tensor([0, 1, 0]))
    >>> bench = domain_incremental(data, data, [lambda x: x, lambda x: -x])
    >>> [e.classes_in_this_experience for e in bench.train_stream], bench.train_stream[1].dataset.get_batch(
    ...     torch.tensor([2]))[0].tolist()
    ([[0, 1], [0, 1]], [[-4.0, -5.0]])
    """
    if not transforms:
        raise ValueError("transforms must hold one transformation per experience, got none")
    classes = sorted(torch.unique(train.targets).tolist())
    streams = []
    for stream_name, data in (("train", train), ("test", test)):
        x, stream = _images(data), []
        for i, transform in enumerate(transforms):
            task = i if task_labels else 0
            ds = ClassificationDataset(transform(x), data.targets.clone(), task)
            stream.append(Experience(ds, i, list(classes), task, stream_name=stream_name))
        streams.append(stream)
    return Benchmark(train_stream=streams[0], test_stream=streams[1], class_order=list(classes), name=name,
                     n_features=int(train.storage[0].numel()), input_shape=tuple(train.storage.shape[1:]))


def pixel_permutations(n: int, n_pixels: int, seed: Optional[int]) -> List[Tensor]:
    """``n`` permutations of ``n_pixels`` pixels from the run seed's ``"permutation"`` stream.

    >>> [p.tolist() for p in pixel_permutations(2, 3, seed=0)] == [p.tolist() for p in pixel_permutations(2, 3, 0)]
    True
    """
    g = make_generator(derive_seed(0 if seed is None else seed, "permutation"))
    return [torch.randperm(n_pixels, generator=g) for _ in range(n)]


def rotation_angles(n: int, seed: Optional[int], max_degrees: float = 180.0) -> List[float]:
    """``n`` angles uniform in ``[0, max_degrees)`` from the run seed's ``"rotation"`` stream
    (mammoth's Rotated MNIST draws each task's angle in [0, 180))."""
    g = make_generator(derive_seed(0 if seed is None else seed, "rotation"))
    return (torch.rand(n, generator=g, dtype=torch.float64) * max_degrees).tolist()


def permute_pixels(x: Tensor, permutation: Tensor) -> Tensor:
    """Images ``(N, C, H, W)`` with their flattened pixels reordered by ``permutation``.

    >>> permute_pixels(torch.tensor([[[[1, 2], [3, 4]]]]), torch.tensor([3, 2, 1, 0])).tolist()
    [[[[4, 3], [2, 1]]]]
    """
    flat = x.reshape(x.shape[0], -1)
    return flat[:, permutation.to(x.device)].view(x.shape)


def rotate(x: Tensor, degrees: float) -> Tensor:
    """Images ``(N, C, H, W)`` rotated counter-clockwise by ``degrees`` about their centre
    (bilinear, zero outside the image), in the input's dtype (``uint8`` rounded).

    >>> rotate(torch.tensor([[[[0, 9], [0, 0]]]], dtype=torch.uint8), 90.0).tolist()
    [[[[9, 0], [0, 0]]]]
    """
    t = math.radians(degrees)
    theta = torch.tensor([[math.cos(t), -math.sin(t), 0.0], [math.sin(t), math.cos(t), 0.0]],
                         dtype=torch.float32).expand(x.shape[0], 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if x.dtype == torch.uint8:
        return out.round().clamp(0, 255).to(torch.uint8)
    return out.to(x.dtype)


def _check(n_experiences, seed):
    return check_positive_int("n_experiences", n_experiences), check_seed("seed", seed)


def permuted_fashion_mnist(root: Optional[str | os.PathLike] = None, n_experiences: int = 5, *,
                           task_labels: bool = False, seed: Optional[int] = 0) -> Benchmark:
    """Domain-incremental Fashion-MNIST: every experience holds the ten classes with the
    pixels of every image reordered by the experience's own random permutation."""
    n, seed = _check(n_experiences, seed)
    train, test = load_fashion_mnist_datasets(root)
    n_pixels = int(train.storage[0].numel())
    transforms = [lambda x, p=p: permute_pixels(x, p) for p in pixel_permutations(n, n_pixels, seed)]
    return domain_incremental(train, test, transforms, task_labels=task_labels, name="permuted_fashion_mnist")


def rotated_fashion_mnist(root: Optional[str | os.PathLike] = None, n_experiences: int = 5, *,
                          task_labels: bool = False, seed: Optional[int] = 0) -> Benchmark:
    """Domain-incremental Fashion-MNIST: every experience holds the ten classes with every
    image rotated by the experience's own random angle in [0, 180) degrees."""
    n, seed = _check(n_experiences, seed)
    train, test = load_fashion_mnist_datasets(root)
    transforms = [lambda x, a=a: rotate(x, a) for a in rotation_angles(n, seed)]
    return domain_incremental(train, test, transforms, task_labels=task_labels, name="rotated_fashion_mnist")
