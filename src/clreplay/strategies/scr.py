"""SCR: supervised contrastive replay, with a nearest-class-mean classifier.

Mai, Li, Kim, Sanner, "Supervised Contrastive Replay: Revisiting the Nearest Class
Mean Classifier in Online Class-Incremental Continual Learning", CVPR Workshops 2021,
Sec. 3. Each step joins the stream batch and a memory draw, ``B = B_n ∪ B_M``, makes a
second, augmented view of it, and trains the network's features through a projection
head with the supervised contrastive loss (Khosla et al. 2020) over the ``2|B|`` views::

    z = normalize(g(f(x))),  x ∈ B ∪ Aug(B)
    L = SupCon(z, y ∪ y)   (temperature τ, the paper's 0.07)

The classifier layer is never trained. Prediction is the nearest class mean (Sec. 3.2,
Eq. 4): the mean of the L2-normalised features ``f(x)`` of each class's memory samples,
normalised, and each test sample goes to the closest mean (iCaRL's rule, computed
whenever the memory or the network changed since the last prediction). The memory is
a reservoir updated after every step.

As in the authors' code, the first view is the batch as it is (the strategy's
forward) and the second its augmentation; with an empty memory the stream alone is
used (their code skips those steps). Augmentation: crop and flip for images, feature
dropout and Gaussian noise for flat vectors (:mod:`clreplay.strategies.contrastive`;
the paper's colour jitter and resized crops have no counterpart on 28x28 grey images
or feature vectors).
"""

from __future__ import annotations

from typing import List, Optional

import torch
from torch import Tensor, nn

from clreplay.data.dataset import ClassificationDataset
from clreplay.options import Option
from clreplay.replay.selection.features import extract_features
from clreplay.strategies.contrastive import (
    DROP,
    NOISE,
    PROJ_DIM,
    ContrastiveReplayPlugin,
    supcon_loss,
)
from clreplay.strategies.der import STORE_EVERY_EPOCH
from clreplay.strategies.icarl import class_means, nearest_mean_scores
from clreplay.strategies.method import Method

SCR_TEMPERATURE = Option("scr_temperature", 0.07, "SCR: temperature τ of the supervised contrastive loss",
                         minimum=0.0, open_minimum=True)


class SCRPlugin(ContrastiveReplayPlugin):
    """SCR (see the module's description).

    Parameters
    ----------
    model: the strategy's model (its features are the output of its embedding layer).
    mem_size: samples in the reservoir memory.
    temperature: τ of the contrastive loss.
    proj_dim: the projection head's output size. noise, drop: the flat benchmarks' view.
    batch_size_mem: memory samples per step; default ``train_mb_size``.
    seed: seeds the draws (None: the run's streams).

    Example
    -------
    >>> from clreplay.benchmarks import split_digits
    >>> from clreplay.models import make_mlp
    >>> from clreplay.training import Naive
    >>> bench, model = split_digits(), make_mlp(64, 10, [32], seed=0)
    >>> scr = SCRPlugin(model, mem_size=100)
    >>> strategy = Naive(model, torch.optim.SGD(model.parameters(), lr=0.1), train_mb_size=10,
    ...                  plugins=[scr], seed=0)
    >>> strategy.train(bench.train_stream[0])
    >>> scores = strategy.predict(torch.zeros(1, 64))   # minus the distance to each class's mean
    >>> sorted(torch.nonzero(scores[0] > float("-inf")).flatten().tolist()) == sorted(bench.class_order[:2])
    True
    """

    seed_name = "scr"
    _state_name = "SCR"
    draws = ("replay",)

    def __init__(self, model: nn.Module, mem_size: int = 200, temperature: float = 0.07, *,
                 proj_dim: int = 128, noise: float = 0.1, drop: float = 0.1,
                 batch_size_mem: Optional[int] = None, seed: Optional[int] = None, memmap_dir=None,
                 store_every_epoch: bool = True) -> None:
        self.temperature = SCR_TEMPERATURE.check(temperature, "temperature")
        super().__init__(model, mem_size, proj_dim=proj_dim, noise=noise, drop=drop,
                         batch_size_mem=batch_size_mem, seed=seed, memmap_dir=memmap_dir,
                         store_every_epoch=store_every_epoch)
        self._means = None  # (means, present), computed when first needed after a change

    def criterion(self, strategy) -> Tensor:
        """The supervised contrastive loss of the batch and its augmented view."""
        mb, out = strategy.mb, strategy.mb_output
        first = self.tap.take()  # the features of the strategy's forward, just taken
        _, second = self.tap(self.model, self.augment(mb.x))
        z = self.project(torch.cat([first, second]))
        loss = supcon_loss(z, torch.cat([mb.y, mb.y]), self.temperature)
        return self.all_parameters_used(loss, out)

    def before_forward(self, strategy, **kwargs):
        super().before_forward(strategy, **kwargs)
        self.tap.on, self.tap.outputs = True, []  # keep the features of the strategy's forward

    def after_forward(self, strategy, **kwargs):
        self.tap.on = False

    def after_training_iteration(self, strategy, **kwargs):
        super().after_training_iteration(strategy, **kwargs)
        self._means = None  # the network and the memory changed

    # ------------------------------------------------------------- prediction
    def _class_means(self, strategy, device):
        groups = [g for g in self.ext_mem.values() if len(g)]
        if not groups:
            return None
        memory = ClassificationDataset.concat(groups)
        features = extract_features(self.model, memory, layer_name=self.feature_layer, device=device,
                                    batch_size=getattr(strategy, "eval_mb_size", None))
        labels = memory.targets.to(features.device)
        return class_means(features, labels, int(labels.max()) + 1)

    def predict(self, strategy, x: Tensor) -> Tensor:
        """Nearest-class-mean scores (minus the squared distance to each class's mean; the
        network's outputs while the memory is empty)."""
        if self._means is None:
            self._means = self._class_means(strategy, x.device)
        out, features = self.tap(strategy.model, x)
        if self._means is None:
            return out
        means, present = self._means
        scores = nearest_mean_scores(features, means.to(features.device), present)
        if scores.shape[1] < out.shape[1]:
            scores = torch.nn.functional.pad(scores, (0, out.shape[1] - scores.shape[1]), value=float("-inf"))
        return scores


def _build(config, model: nn.Module) -> List:
    o = config.method_options
    return [SCRPlugin(model, config.mem_size, o["scr_temperature"], proj_dim=o["proj_dim"], noise=o["noise"],
                      drop=o["drop"], batch_size_mem=config.batch_size_mem, memmap_dir=config.memmap_dir,
                      store_every_epoch=o["store_every_epoch"])]


SCR = Method(
    name="scr",
    summary="SCR: supervised contrastive loss on stream + memory and an augmented view, through a "
            "projection head; nearest-class-mean prediction",
    paper="Mai et al., Supervised Contrastive Replay: Revisiting the Nearest Class Mean Classifier in "
          "Online Class-Incremental Continual Learning, CVPR Workshops 2021",
    build=_build, options=(SCR_TEMPERATURE, PROJ_DIM, NOISE, DROP, STORE_EVERY_EPOCH),
    replay_options=("batch_size_mem", "memmap_dir"),
    protocol="online reservoir, the stream offered after every step of every epoch (mammoth's); "
             "nearest-class-mean prediction from the memory",
)
