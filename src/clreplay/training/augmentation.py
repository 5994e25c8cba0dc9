"""AugmentationPlugin: augment every training mini-batch on its device."""

from __future__ import annotations

from typing import Callable

from torch import Tensor

from clreplay import distributed as idist
from clreplay.data.batching import BatchSource, MappedBatchSource
from clreplay.data.minibatch import MiniBatch
from clreplay.training.plugin import StrategyPlugin


class AugmentationPlugin(StrategyPlugin):
    """Replace ``strategy.mb_x`` with ``transform(strategy.mb_x)`` before each training
    forward pass: current and replayed samples alike, on the device the batch is on.
    Evaluation is never augmented. For a transform of replayed samples only, use
    ``ReplayPlugin(memory_transform=...)``.

    The transform's ``state_dict()`` (its generators) is the plugin's, so a resumed
    run draws the same crops and flips as an uninterrupted one.

    Over several processes (``BaseStrategy(distributed=True)``) every rank augments
    the whole global batch, on the strategy's device, before taking its slice
    (:class:`AugmentedBatchSource`): the draws are those of one process training on
    the global batch, and every rank's generator stays the same.

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

    def setup(self, context) -> None:
        """Hand the run's ``"augment"`` stream to a transform without a seed of its own."""
        setup = getattr(self.transform, "setup", None)
        if setup is not None:
            setup(context.seed_for("augment"))

    def before_training_exp(self, strategy, **kwargs) -> None:
        if idist.is_distributed(strategy):
            strategy.batch_source = AugmentedBatchSource(strategy.batch_source, self, strategy.device)

    def before_forward(self, strategy, **kwargs) -> None:
        if not idist.is_distributed(strategy):
            strategy.mb_x = self.augment(strategy.mb_x)

    def augment(self, x: Tensor) -> Tensor:
        """``transform(x)``, checked to keep one row per sample."""
        out = self.transform(x)
        if not isinstance(out, Tensor) or out.shape[0] != x.shape[0]:
            raise ValueError(
                f"transform must return one row per sample ({x.shape[0]}), got "
                f"{tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__}"
            )
        return out

    def state_dict(self) -> dict:
        state = getattr(self.transform, "state_dict", None)
        return {"transform": state() if callable(state) else {}}

    def load_state_dict(self, state: dict) -> None:
        if not isinstance(state, dict) or set(state) != {"transform"}:
            raise KeyError(f"augmentation plugin state must have the key 'transform', got {state!r}")
        load = getattr(self.transform, "load_state_dict", None)
        if callable(load):
            load(state["transform"])


class AugmentedBatchSource(MappedBatchSource):
    """The batches of ``wraps`` moved to ``device`` with their samples augmented by
    ``plugin`` (a distributed run: the global batch, before each rank's slice). The
    batches a resume skips were augmented before the checkpoint, whose generator
    state the plugin holds: they are not augmented again."""

    def __init__(self, wraps: BatchSource, plugin: AugmentationPlugin, device) -> None:
        super().__init__(wraps)
        self.plugin, self.device = plugin, device

    def map(self, batch) -> MiniBatch:
        mb = MiniBatch.of(batch).to(self.device)  # a new record: the source's is untouched
        mb.x = self.plugin.augment(mb.x)
        return mb
