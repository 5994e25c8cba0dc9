"""iCaRL: herding exemplars, distillation with binary cross-entropy, nearest-mean classifier.

Rebuffi et al., "iCaRL: Incremental Classifier and Representation Learning",
CVPR 2017.

* Memory (Algorithms 4-5): class-balanced, ``mem_size // classes seen`` exemplars
  per class, chosen by herding in feature space and trimmed from the end of that
  order: the spec's :class:`~clreplay.ClassBalancedStoragePolicy` with
  :class:`~clreplay.HerdingSelectionStrategy`. Mini-batches join current samples
  and exemplars (Algorithm 3's training set ``D``), as :class:`~clreplay.ReplayPlugin` does.
* Loss (Algorithm 3): binary cross-entropy on the sigmoid of each output of the
  classes seen so far; the target of a class seen in an earlier experience is the
  previous model's sigmoid output ``q`` (distillation), that of a class of the
  current experience is one-hot::

      L = - sum_{y new}  [d(y = y_i) log g_y(x_i) + d(y != y_i) log(1 - g_y(x_i))]
          - sum_{y old}  [q_i^y log g_y(x_i) + (1 - q_i^y) log(1 - g_y(x_i))]

  averaged over samples and classes. The previous model is a frozen copy taken
  after each experience.
* Classification (Algorithm 1): nearest mean of exemplars. Features ``phi`` (the
  output of ``feature_layer``) are L2-normalised; the mean of a class's
  normalised exemplar features is normalised again; a sample goes to the class
  whose mean is closest. Before the first experience ends there is no exemplar,
  and the network's own outputs are used.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from clreplay.distributed import is_distributed
from clreplay.replay.plugin import ReplayPlugin
from clreplay.replay.policies.class_balanced import ClassBalancedStoragePolicy
from clreplay.replay.selection.feature_based import HerdingSelectionStrategy
from clreplay.replay.selection.features import extract_features
from clreplay.strategies.copies import frozen_copy
from clreplay.strategies.method import Method


def class_means(features: Tensor, labels: Tensor, n_classes: int) -> Tuple[Tensor, Tensor]:
    """Per class, the normalised mean of the L2-normalised ``features`` of its samples,
    and which classes have samples.

    >>> means, present = class_means(torch.tensor([[3.0, 4.0], [0.0, 2.0], [5.0, 0.0]]),
    ...                              torch.tensor([0, 0, 2]), 3)
    >>> [[round(v, 4) for v in row] for row in means.tolist()], present.tolist()
    ([[0.3162, 0.9487], [0.0, 0.0], [1.0, 0.0]], [True, False, True])
    """
    normalised = F.normalize(features.float(), dim=1)
    sums = torch.zeros(n_classes, features.shape[1], dtype=normalised.dtype, device=features.device)
    sums.index_add_(0, labels.to(features.device), normalised)
    present = torch.bincount(labels.cpu(), minlength=n_classes)[:n_classes] > 0
    return F.normalize(sums, dim=1), present.to(features.device)


def nearest_mean_scores(features: Tensor, means: Tensor, present: Tensor) -> Tensor:
    """Class scores of the nearest-mean classifier: minus the squared distance between
    each L2-normalised feature row and each class mean; ``-inf`` for a class without
    exemplars. The predicted class (the argmax) is the nearest mean.

    >>> means = torch.tensor([[1.0], [-1.0], [0.0]])
    >>> nearest_mean_scores(torch.tensor([[0.5], [-3.0]]), means, torch.tensor([True, True, False])).tolist()
    [[0.0, -4.0, -inf], [-4.0, 0.0, -inf]]
    """
    normalised = F.normalize(features.float(), dim=1)
    distances = torch.cdist(normalised, means.to(normalised), compute_mode="donot_use_mm_for_euclid_dist")
    scores = 0.0 - distances**2  # (not -d**2: a distance of 0 would score -0.0)
    return scores.masked_fill(~present.to(scores.device), float("-inf"))


def distillation_targets(y: Tensor, columns: Tensor, n_old: int, old_probabilities: Optional[Tensor]) -> Tensor:
    """iCaRL's BCE targets over the class ``columns`` (the old classes first, ``n_old`` of
    them, then the current experience's): the previous model's sigmoid outputs for the
    old classes, one-hot labels for the new ones.

    >>> distillation_targets(torch.tensor([2, 0]), torch.tensor([0, 1, 2, 3]), 2,
    ...                      torch.tensor([[0.9, 0.2, 0.5, 0.5], [0.6, 0.1, 0.5, 0.5]]))
    tensor([[0.9000, 0.2000, 1.0000, 0.0000],
            [0.6000, 0.1000, 0.0000, 0.0000]])
    """
    targets = (y.unsqueeze(1) == columns.unsqueeze(0)).to(torch.float32)
    if n_old and old_probabilities is not None:
        targets[:, :n_old] = old_probabilities[:, columns[:n_old]].to(targets.dtype)
    return targets


def default_feature_layer(model: nn.Module) -> str:
    """The submodule before the last of an ``nn.Sequential`` (e.g. the last hidden
    activation of :func:`~clreplay.models.make_mlp`)."""
    if isinstance(model, nn.Sequential) and len(model) >= 2:
        return str(len(model) - 2)
    raise ValueError(
        "feature_layer must name the submodule whose output is the feature vector for a model "
        f"that is not an nn.Sequential of at least 2 modules, got None for a {type(model).__name__}"
    )


class ICaRLPlugin(ReplayPlugin):
    """iCaRL (see the module's description): herding memory, BCE distillation loss
    (:meth:`criterion`) and nearest-mean-of-exemplars prediction (:meth:`predict`).

    Parameters
    ----------
    model: the strategy's model (herding and the class means read its features).
    mem_size: exemplars in all (iCaRL's ``K``).
    feature_layer: the submodule whose flattened output is the feature vector;
        default: the one before the last of an ``nn.Sequential``.
    batch_size_mem: if set, each mini-batch is ``train_mb_size`` current samples plus
        this many exemplars (else balanced over experiences: see :class:`~clreplay.ReplayPlugin`).

    Example
    -------
    >>> from clreplay.benchmarks import split_digits
    >>> from clreplay.models import make_mlp
    >>> from clreplay.training import Naive
    >>> bench = split_digits()
    >>> model = make_mlp(64, 10, [32], seed=0)
    >>> icarl = ICaRLPlugin(model, mem_size=100)
    >>> strategy = Naive(model, torch.optim.SGD(model.parameters(), lr=0.1),
    ...                  train_mb_size=10, plugins=[icarl], seed=0)
    >>> strategy.train(bench.train_stream[:2])
    >>> sorted(icarl.old_classes) == sorted(bench.class_order[:4]), len(icarl.ext_mem)
    (True, 4)
    >>> strategy.eval(bench.test_stream[:2])[0] > 0.8
    True
    """

    def __init__(self, model: nn.Module, mem_size: int = 200, *, feature_layer: Optional[str] = None,
                 batch_size_mem: Optional[int] = None) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.feature_layer = default_feature_layer(model) if feature_layer is None else feature_layer
        herding = HerdingSelectionStrategy(model, self.feature_layer)
        policy = ClassBalancedStoragePolicy({}, mem_size, selection_strategy=herding)
        super().__init__(mem_size, policy, batch_size_mem=batch_size_mem)
        self.old_classes: List[int] = []  # classes of the experiences before the current one
        self._old_model: Optional[nn.Module] = None
        self._columns: Optional[Tensor] = None  # old classes, then the current experience's
        self._means: Optional[Tensor] = None
        self._present: Optional[Tensor] = None

    def _check_model(self, strategy) -> None:
        if strategy.model is not self.model:
            raise ValueError("model of ICaRLPlugin must be the strategy's model, got another module")

    # --------------------------------------------------------------- training
    def before_training_exp(self, strategy, **kwargs):
        self._check_model(strategy)
        super().before_training_exp(strategy, **kwargs)
        current = torch.unique(strategy.experience.dataset.targets.cpu()).tolist()
        new = [c for c in current if c not in set(self.old_classes)]
        self._columns = torch.tensor(self.old_classes + new, dtype=torch.long, device=strategy.device)

    def criterion(self, strategy) -> Tensor:
        """Binary cross-entropy over the classes seen so far, with distillation targets."""
        out, y, columns = strategy.mb_output, strategy.mb.y, self._columns
        old_probabilities = None
        if self._old_model is not None and self.old_classes:
            with torch.no_grad():
                old_probabilities = torch.sigmoid(self._old_model(strategy.mb.x))
        targets = distillation_targets(y, columns, len(self.old_classes), old_probabilities)
        return F.binary_cross_entropy_with_logits(out[:, columns], targets.to(out.dtype))

    def after_training_exp(self, strategy, **kwargs):
        """Update the exemplars (herding with the trained model), keep a frozen copy of the
        model for the next experience's distillation, and compute the class means."""
        super().after_training_exp(strategy, **kwargs)
        self._old_model = frozen_copy(strategy.model)
        self.old_classes = self._columns.tolist()
        self._update_means(strategy)

    def _update_means(self, strategy) -> None:
        labels, features = [], []
        for cls, group in self.ext_mem.items():
            if len(group):
                features.append(extract_features(strategy.model, group, layer_name=self.feature_layer,
                                                  device=strategy.device, batch_size=strategy.eval_mb_size,
                                                  gather=is_distributed(strategy)))
                labels.append(torch.full((len(group),), cls, dtype=torch.long, device=strategy.device))
        if not features:
            self._means = self._present = None
            return
        labels_all = torch.cat(labels)
        self._means, self._present = class_means(torch.cat(features), labels_all, int(labels_all.max()) + 1)

    # ------------------------------------------------------------- prediction
    def predict(self, strategy, x: Tensor) -> Tensor:
        """Nearest-mean-of-exemplars scores (the network's outputs before any exemplar)."""
        if self._means is None:
            return strategy.model(x)
        captured = []
        layer = dict(strategy.model.named_modules())[self.feature_layer]
        handle = layer.register_forward_hook(lambda _m, _i, output: captured.append(output))
        try:
            width = strategy.model(x).shape[1]
        finally:
            handle.remove()
        scores = nearest_mean_scores(captured[-1].flatten(start_dim=1), self._means, self._present)
        if scores.shape[1] < width:  # one score per output of the network, as without iCaRL
            scores = F.pad(scores, (0, width - scores.shape[1]), value=float("-inf"))
        return scores

    # ------------------------------------------------------------ persistence
    def state_dict(self) -> dict:
        return {
            **super().state_dict(),
            "old_classes": list(self.old_classes),
            "old_model": None if self._old_model is None else self._old_model.state_dict(),
            "means": self._means,
            "present": self._present,
        }

    def load_state_dict(self, state: dict) -> None:
        keys = {"old_classes", "old_model", "means", "present"}
        if not isinstance(state, dict) or not keys <= set(state):
            raise KeyError(f"iCaRL state must have keys {sorted(keys)} besides the memory's")
        state = dict(state)
        extra = {key: state.pop(key) for key in keys}
        super().load_state_dict(state)
        self.old_classes = list(extra["old_classes"])
        self._old_model = None
        if extra["old_model"] is not None:
            self._old_model = frozen_copy(self.model)
            self._old_model.load_state_dict(extra["old_model"])
        self._means, self._present = extra["means"], extra["present"]


def _build(config, model: nn.Module) -> List:
    return [ICaRLPlugin(model, config.mem_size, batch_size_mem=config.batch_size_mem)]


ICARL = Method(
    name="icarl",
    summary="iCaRL: herding exemplars, BCE with distillation, nearest-mean-of-exemplars classifier",
    paper="Rebuffi et al., iCaRL: Incremental Classifier and Representation Learning, CVPR 2017",
    build=_build,
    replay_options=("batch_size_mem",),
    protocol="class-balanced memory by herding, updated after each experience; balanced replay (ER's batches)",
)
