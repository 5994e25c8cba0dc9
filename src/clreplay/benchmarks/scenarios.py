"""Class-incremental splits of a labelled dataset into a stream of experiences."""

from __future__ import annotations

import numbers
from typing import List, Optional, Sequence

import torch

from clreplay._seeding import derive_seed, make_generator
from clreplay._validation import check_positive_int, check_seed
from clreplay.benchmarks.checks import check_finite, check_labels
from clreplay.data.dataset import ClassificationDataset
from clreplay.data.experience import Benchmark, Experience


def _as_classification_dataset(name: str, data) -> ClassificationDataset:
    if isinstance(data, ClassificationDataset):
        return data
    if hasattr(data, "targets") and hasattr(data, "__getitem__"):
        return ClassificationDataset.from_dataset(data)
    raise TypeError(f"{name} must be a ClassificationDataset or a Dataset with targets, "
                    f"got {type(data).__name__}")


def _check_data(split: str, data: ClassificationDataset) -> None:
    """Non-negative labels and finite samples (tensor-backed data), before any training."""
    check_labels(data.targets, split=split)
    if data.is_tensor_backed and data.storage.dtype.is_floating_point:
        check_finite(data.storage if data.is_compact else data.storage[data.indices], split=split)


def _resolve_class_order(classes: List[int], class_order, seed) -> List[int]:
    if class_order is not None:
        if isinstance(class_order, (str, bytes)) or not hasattr(class_order, "__iter__"):
            raise TypeError(f"class_order must be a sequence of class labels, got {class_order!r}")
        order = list(class_order)
        if not all(isinstance(c, numbers.Integral) and not isinstance(c, bool) for c in order):
            raise TypeError(f"class_order must hold int class labels, got {order!r}")
        order = [int(c) for c in order]
        if sorted(order) != classes:
            raise ValueError(
                f"class_order must be a permutation of the classes {classes}, got {list(class_order)}"
            )
        return order
    if seed is None:
        return list(classes)
    # The run seed's "class_order" stream: independent of the shuffles and the initialisation.
    perm = torch.randperm(len(classes), generator=make_generator(derive_seed(seed, "class_order"))).tolist()
    return [classes[i] for i in perm]


def split_classes(class_order: Sequence[int], n_experiences: int) -> List[List[int]]:
    """Consecutive groups of ``class_order``; the first ``len % n`` groups get one more.

    >>> split_classes([3, 1, 0, 2, 4], 2)
    [[3, 1, 0], [2, 4]]
    """
    base, extra = divmod(len(class_order), n_experiences)
    groups, start = [], 0
    for i in range(n_experiences):
        size = base + (1 if i < extra else 0)
        groups.append(list(class_order[start : start + size]))
        start += size
    return groups


def _stream(data: ClassificationDataset, groups, task_labels: bool, name: str) -> List[Experience]:
    stream = []
    targets = data.targets.cpu()
    for i, group in enumerate(groups):
        mask = torch.isin(targets, torch.tensor(group, dtype=torch.long))
        ds = data.subset(torch.nonzero(mask).flatten())
        task = i if task_labels else 0
        if task_labels:
            ds = ds.with_task_label(task)
        stream.append(Experience(ds, i, sorted(group), task, stream_name=name))
    return stream


def class_incremental(
    train,
    test,
    n_experiences: int,
    *,
    task_labels: bool = False,
    class_order: Optional[Sequence[int]] = None,
    seed: Optional[int] = 0,
) -> Benchmark:
    """Split ``train`` and ``test`` by class into ``n_experiences`` experiences.

    Classes are taken in ``class_order`` if given, else in an order permuted by
    ``seed`` (sorted when ``seed`` is None), and cut into consecutive groups of
    equal size (the first experiences take one more class when the count does
    not divide). With ``task_labels=True`` every sample of experience ``i``
    gets task label ``i``.

    >>> x = torch.arange(12.).unsqueeze(1)
    >>> y = torch.tensor([0, 1, 2, 3] * 3)
    >>> ds = ClassificationDataset(x, y)
    >>> bench = class_incremental(ds, ds, 2, class_order=[3, 2, 1, 0])
    >>> [e.classes_in_this_experience for e in bench.train_stream]
    [[2, 3], [0, 1]]
    """
    train = _as_classification_dataset("train", train)
    test = _as_classification_dataset("test", test)
    seed = check_seed("seed", seed)
    if not isinstance(task_labels, bool):
        raise TypeError(f"task_labels must be a bool, got {task_labels!r}")
    if len(train) == 0:
        raise ValueError("train must hold at least one sample, got an empty dataset")
    for split, data in (("train", train), ("test", test)):
        _check_data(split, data)
    classes = sorted(torch.unique(train.targets).tolist())
    unknown = sorted(set(torch.unique(test.targets).tolist()) - set(classes))
    if unknown:
        # Their samples would silently drop out of every test experience.
        raise ValueError(f"test must hold only classes of train {classes}, got also {unknown}")
    n_experiences = check_positive_int("n_experiences", n_experiences)
    if n_experiences > len(classes):
        raise ValueError(
            f"n_experiences must be at most the number of classes ({len(classes)}), "
            f"got {n_experiences}"
        )
    order = _resolve_class_order(classes, class_order, seed)
    groups = split_classes(order, n_experiences)
    n_features = int(train.storage[0].numel()) if train.is_tensor_backed and len(train) else 0
    input_shape = tuple(train.storage.shape[1:]) if train.is_tensor_backed else ()
    return Benchmark(
        train_stream=_stream(train, groups, task_labels, "train"),
        test_stream=_stream(test, groups, task_labels, "test"),
        class_order=order,
        name="class_incremental",
        n_features=n_features,
        input_shape=input_shape,
    )

