"""AugmentationPlugin: augment every training mini-batch on its device."""

from __future__ import annotations

from typing import Callable

from torch import Tensor

from clreplay.training.plugin import StrategyPlugin


class AugmentationPlugin(StrategyPlugin):
    """Replace ``strategy.mb_x`` with ``transform(strategy.mb_x)`` before each training
    forward pass: current and replayed samples alike, on the device the batch is on.
    Evaluation is never augmented. For a transform of replayed samples only, use
    ``ReplayPlugin(memory_transform=...)``.

    The transform's ``state_dict()`` (its generators) is the plugin's, so a resumed
    run draws the same crops and flips as an uninterrupted one.

    >>> import torch
    >>> from clreplay.benchmarks import Experience
    >>> from clreplay.data import ClassificationDataset
    >>> from clreplay.data.augment import standard_augmentation
    >>> from clreplay.models import make_model
    >>> from clreplay.training import Naive
    >>> images = torch.randint(0, 256, (8, 3, 8, 8), dtype=torch.uint8)
    >>> data = ClassificationDataset(images, torch.arange(8) % 2)
    >>> model = make_model("cnn", (3, 8, 8), 2, width=4)
    >>> strategy = Naive(model, torch.optim.SGD(model.parameters(), lr=0.1), train_mb_size=4,
    ...                  plugins=[AugmentationPlugin(standard_augmentation(seed=0))], seed=0)
    >>> strategy.train(Experience(data, 0, [0, 1]))
    """

    def __init__(self, transform: Callable[[Tensor], Tensor]) -> None:
        if not callable(transform):
            raise TypeError(f"transform must be callable, got {type(transform).__name__}")
        self.transform = transform

    def before_forward(self, strategy, **kwargs) -> None:
        x = self.transform(strategy.mb_x)
        if not isinstance(x, Tensor) or x.shape[0] != strategy.mb_x.shape[0]:
            raise ValueError(
                f"transform must return one row per sample ({strategy.mb_x.shape[0]}), got "
                f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}"
            )
        strategy.mb_x = x

    def state_dict(self) -> dict:
        state = getattr(self.transform, "state_dict", None)
        return {"transform": state() if callable(state) else {}}

    def load_state_dict(self, state: dict) -> None:
        if not isinstance(state, dict) or set(state) != {"transform"}:
            raise KeyError(f"augmentation plugin state must have the key 'transform', got {state!r}")
        load = getattr(self.transform, "load_state_dict", None)
        if callable(load):
            load(state["transform"])
