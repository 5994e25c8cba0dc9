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
    if isinstance(class_order, str) and class_order == "label":
        return list(classes)  # the papers' and mammoth's order
    if class_order is not None:
        if isinstance(class_order, (str, bytes)) or not hasattr(class_order, "__iter__"):
            raise TypeError(f"class_order must be 'label' or a sequence of class labels, got {class_order!r}")
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


def _stream(data: ClassificationDataset, groups, task_labels: bool, name: str,
            members: Optional[List[torch.Tensor]] = None) -> List[Experience]:
    """One experience per class group (``members[i]``: its sample positions, when not
    simply the group's samples)."""
    stream = []
    targets = data.targets.cpu()
    for i, group in enumerate(groups):
        if members is None:
            rows = torch.nonzero(torch.isin(targets, torch.tensor(group, dtype=torch.long))).flatten()
        else:
            rows = members[i]
        ds = data.subset(rows)
        task = i if task_labels else 0
        if task_labels:
            ds = ds.with_task_label(task)
        classes = sorted(group) if members is None else sorted(torch.unique(targets[rows]).tolist())
        stream.append(Experience(ds, i, classes, task, stream_name=name))
    return stream


def blurry_members(targets: torch.Tensor, groups: Sequence[Sequence[int]], blurry: float,
                   seed: Optional[int]) -> List[torch.Tensor]:
    """Sample positions of each experience with blurry class boundaries: of every class, a
    share ``blurry`` of its samples (drawn at random) goes to the other experiences, each
    to one of them uniformly at random; the rest stays in its class's experience (the
    "Blurry-M" streams of Bang et al., CVPR 2021, and Koh et al., ICLR 2022). The draws
    come from the run seed's ``"blurry"`` stream; positions are sorted in each experience.

    >>> members = blurry_members(torch.tensor([0] * 10 + [1] * 10), [[0], [1]], 0.2, seed=0)
    >>> [torch.bincount(torch.tensor([0] * 10 + [1] * 10)[m], minlength=2).tolist() for m in members]
    [[8, 2], [2, 8]]
    """
    g = make_generator(derive_seed(0 if seed is None else seed, "blurry"))
    n = len(groups)
    parts: List[List[torch.Tensor]] = [[] for _ in range(n)]
    for i, group in enumerate(groups):
        for c in group:
            rows = torch.nonzero(targets == c).flatten()
            rows = rows[torch.randperm(len(rows), generator=g)]
            moved = round(blurry * len(rows)) if n > 1 else 0
            parts[i].append(rows[moved:])
            if moved:
                # Each moved sample to one of the other experiences, uniformly.
                other = torch.randint(0, n - 1, (moved,), generator=g)
                other = other + (other >= i).long()
                for j in range(n):
                    parts[j].append(rows[:moved][other == j])
    return [torch.sort(torch.cat(p)).values for p in parts]


def class_incremental(
    train,
    test,
    n_experiences: int,
    *,
    task_labels: bool = False,
    class_order: Optional[Sequence[int] | str] = None,
    seed: Optional[int] = 0,
    blurry: float = 0.0,
) -> Benchmark:
    """Split ``train`` and ``test`` by class into ``n_experiences`` experiences.

    Classes are taken in ``class_order`` if given (``"label"``: ascending, the papers'
    order), else in an order permuted by ``seed`` (sorted when ``seed`` is None), and
    cut into consecutive groups of equal size (the first experiences take one more
    class when the count does not divide). With ``task_labels=True`` every sample of
    experience ``i`` gets task label ``i``. ``blurry`` > 0 blurs the training stream's
    class boundaries: that share of each class's training samples appears in the other
    experiences (see :func:`blurry_members`; ``classes_in_this_experience`` then lists
    every class an experience holds); the test stream stays split by class.

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
    if isinstance(blurry, bool) or not isinstance(blurry, (int, float)) or not 0 <= blurry < 1:
        raise ValueError(f"blurry must be a share in [0, 1), got {blurry!r}")
    members = blurry_members(train.targets.cpu(), groups, float(blurry), seed) if blurry > 0 else None
    n_features = int(train.storage[0].numel()) if train.is_tensor_backed and len(train) else 0
    input_shape = tuple(train.storage.shape[1:]) if train.is_tensor_backed else ()
    return Benchmark(
        train_stream=_stream(train, groups, task_labels, "train", members),
        test_stream=_stream(test, groups, task_labels, "test"),
        class_order=order,
        name="class_incremental",
        n_features=n_features,
        input_shape=input_shape,
    )

