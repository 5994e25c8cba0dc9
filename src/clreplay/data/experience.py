"""Experiences and benchmarks: the stream a continual learner sees (every layer reads them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import torch

from clreplay._validation import check_int
from clreplay.data.dataset import ClassificationDataset


@dataclass(frozen=True)
class Experience:
    """One step of a stream: a dataset and what it is.

    Attributes
    ----------
    dataset: the experience's samples.
    current_experience: its index in the stream.
    classes_in_this_experience: the sorted class labels it holds.
    task_label: the task label of its samples (0 unless the benchmark has task labels).
    stream_name: the stream it belongs to (``"train"``, ``"test"``; None when built by hand),
        as metric names spell it (``Top1_Acc_Exp/eval_phase/test_stream/...``).
    """

    dataset: ClassificationDataset
    current_experience: int
    classes_in_this_experience: List[int]
    task_label: int = 0
    stream_name: Optional[str] = None

    def __post_init__(self) -> None:
        if not isinstance(self.dataset, ClassificationDataset):
            raise TypeError(f"dataset must be a ClassificationDataset, got {type(self.dataset).__name__}")
        check_int("current_experience", self.current_experience, minimum=0)
        check_int("task_label", self.task_label)

    def __len__(self) -> int:
        return len(self.dataset)


@dataclass
class Benchmark:
    """Matching train and test streams of experiences.

    ``input_shape`` is the shape of one sample: ``(D,)`` for flat vectors,
    ``(C, H, W)`` for images (kept as ``uint8``: :attr:`input_dtype` says which, and a
    float model needs :class:`~clreplay.data.InputNormalization` first); ``mean`` and ``std`` are the
    per-channel statistics an image model normalises with (in [0, 1] units), None
    for flat benchmarks.
    ``original_labels[c]`` is the label class ``c`` had in the data when a loader
    mapped sparse or 1-based labels to ``0..C-1``; None when labels were kept.
    """

    train_stream: List[Experience]
    test_stream: List[Experience]
    class_order: List[int]
    name: str = "benchmark"
    n_features: int = field(default=0)
    input_shape: Tuple[int, ...] = ()
    mean: Optional[Tuple[float, ...]] = None
    std: Optional[Tuple[float, ...]] = None
    original_labels: Optional[List[int]] = None

    @property
    def is_image(self) -> bool:
        """True when samples are images ``(C, H, W)``."""
        return len(self.input_shape) == 3

    @property
    def input_dtype(self) -> torch.dtype:
        """The dtype of the samples as batches hold them: ``torch.uint8`` for image
        benchmarks (a quarter of float32's bytes; the model converts them), ``torch.float32``
        for flat ones."""
        for experience in self.train_stream:
            if len(experience.dataset):
                return experience.dataset.get_batch(torch.arange(1))[0].dtype
        return torch.get_default_dtype()

    @property
    def n_experiences(self) -> int:
        return len(self.train_stream)

    @property
    def n_classes(self) -> int:
        return len(self.class_order)
