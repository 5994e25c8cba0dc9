"""What the contrastive rehearsal methods share (SCR, OnPro): a projection head on the
network's features, its optimiser, augmented views, and the contrastive losses.

:class:`ContrastiveReplayPlugin` is an online reservoir replay plugin that owns

* a **feature tap**: a forward hook on the model's embedding layer
  (:func:`~clreplay.models.feature_layer_name`), so a forward pass of the network gives
  both its outputs and its features;
* a **projection head** ``Linear(d, d) - ReLU - Linear(d, proj_dim)`` on the ``d``
  features, initialised from the run context's stream named after the method, moved
  to the strategy's device, and trained by an optimiser of the strategy's optimiser's
  class and defaults (stepped right after the strategy's; its state is saved);
* an **augmentation** for the second view: crop (padding 4, as the 28x28 literature
  uses 2-4) and horizontal flip of images (``clreplay.data.augment``), or, for flat
  feature vectors, where crops mean nothing, feature dropout and Gaussian noise
  (:class:`~clreplay.data.augment.FeatureNoise`), from the run context's stream.

Every part is in the plugin's state, so a resumed run trains the same weights.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from clreplay.data.augment import FeatureNoise, standard_augmentation
from clreplay.models import feature_layer_name
from clreplay.models._common import seeded_init
from clreplay.options import Option
from clreplay.replay.online import OnlineReplayPlugin
from clreplay.replay.policies.reservoir import ReservoirSamplingStoragePolicy

_EPS = 1e-8
PROJ_DIM = Option("proj_dim", 128, "dimension of the contrastive projection head's output (SCR, OnPro)",
                  minimum=1, maximum=65_536)
NOISE = Option("noise", 0.1, "flat benchmarks' second view: std of the Gaussian noise added to the "
               "features (SCR, OnPro)", minimum=0.0)
DROP = Option("drop", 0.1, "flat benchmarks' second view: probability of zeroing a feature (SCR, OnPro)",
              minimum=0.0, maximum=1.0, open_maximum=True)


def feature_dim(model: nn.Module) -> int:
    """The width of the features the last linear layer reads (the embedding).

    >>> feature_dim(nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3)))
    7
    """
    last = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not last:
        raise TypeError(f"model must end in an nn.Linear classifier (its input is the embedding), "
                        f"got a {type(model).__name__} without one")
    return last[-1].in_features


def projection_head(dim: int, proj_dim: int, seed: int) -> nn.Sequential:
    """SCR's and OnPro's head: ``Linear(dim, dim) - ReLU - Linear(dim, proj_dim)``, seeded."""
    with seeded_init(seed):
        return nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, proj_dim))


def supcon_loss(z: Tensor, labels: Tensor, temperature: float) -> Tensor:
    """Supervised contrastive loss (Khosla et al., NeurIPS 2020, Eq. 2, ``L_out``) of the
    L2-normalised rows ``z``: for each anchor ``i`` with positives ``P(i)`` (the other
    rows of its label),
    ``-1/|P(i)| Σ_{p∈P(i)} log(exp(z_i·z_p/τ) / Σ_{a≠i} exp(z_i·z_a/τ))``, averaged over
    the anchors that have a positive.

    >>> z = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    >>> round(supcon_loss(z, torch.tensor([0, 0, 1]), 1.0).item(), 4)   # log(1 + e^-1), twice, over 2
    0.3133
    """
    n = z.shape[0]
    self_mask = torch.eye(n, dtype=torch.bool, device=z.device)
    logits = (z @ z.T / temperature).masked_fill(self_mask, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    positives = (labels.view(-1, 1) == labels.view(1, -1)) & ~self_mask
    count = positives.sum(dim=1)
    per_anchor = log_prob.masked_fill(~positives, 0.0).sum(dim=1) / count.clamp(min=1)
    # The mean over the anchors with a positive (0 without any), read nowhere on the host.
    anchors = (count > 0).to(per_anchor.dtype)
    return -(per_anchor * anchors).sum() / anchors.sum().clamp(min=1)


def rotations(x: Tensor) -> Tensor:
    """Images rotated by 0, 90, 180 and 270 degrees, stacked in that order (flat vectors:
    themselves, one group).

    >>> rotations(torch.tensor([[[[1, 2], [3, 4]]]])).view(4, 4).tolist()
    [[1, 2, 3, 4], [2, 4, 1, 3], [4, 3, 2, 1], [3, 1, 4, 2]]
    """
    if x.dim() != 4:
        return x
    return torch.cat([torch.rot90(x, r, dims=(2, 3)) for r in range(4)])


def nt_xent(sim: Tensor, labels: Tensor, temperature: float, variant: str) -> Tensor:
    """OCM's supervised NT-Xent (Guo et al., ICML 2022; OnPro's instance-wise contrast), as the
    authors' code computes it, on a similarity matrix of ``2B`` rows (two views of
    ``B`` samples, first views first). Each row's softmax over its similarities (``"n"``:
    without itself) gives ``S = -log p``; the loss is the mean over rows of ``S`` averaged
    over the row's same-label columns (``labels`` of the ``B`` samples, repeated for the
    second view; ``"pre"``: one label per row), and ``"n"`` counts that twice and adds each
    sample's two views' ``S`` (the SimCLR pair).

    >>> sim = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    >>> round(nt_xent(sim, torch.tensor([0]), 1.0, "uni").item(), 4)   # -log(e / (e + 1)) / 2 ... averaged
    0.8133
    """
    if variant not in ("n", "uni", "pre"):
        raise ValueError(f"variant must be one of 'n', 'uni', 'pre', got {variant!r}")
    n = sim.shape[0]
    if n == 0:
        return sim.sum() * 0.0
    half = n // 2
    sim = sim - sim.max(dim=1, keepdim=True).values.detach()
    e = torch.exp(sim / temperature)
    if variant == "n":
        e = e * (1 - torch.eye(n, device=sim.device, dtype=e.dtype))
    s = -torch.log(e / (e.sum(dim=1, keepdim=True) + _EPS) + _EPS)
    lab = labels if variant == "pre" else labels.repeat(2)
    mask = (lab.view(-1, 1) == lab.view(1, -1)).to(s.dtype)
    mask = mask / (mask.sum(dim=1, keepdim=True) + _EPS)
    loss = (mask * s).sum() / n  # the code's 2B rows (B = n // 2; n itself for one "pre" row)
    if variant == "n":
        pairs = s[:half, half:].diagonal().sum() + s[half:, :half].diagonal().sum()
        loss = 2 * loss + pairs / n
    return loss


class _FeatureTap:
    """The output of one submodule, kept while :attr:`on` (a forward hook)."""

    def __init__(self, model: nn.Module, layer: str) -> None:
        modules = dict(model.named_modules())
        if layer not in modules:
            raise ValueError(f"feature layer must name a submodule of the model, got {layer!r}")
        self.on, self.outputs = False, []

        def hook(_module, _inputs, output) -> None:  # a function: a deep copy of the model shares it
            if self.on:
                self.outputs.append(output)

        modules[layer].register_forward_hook(hook)

    def take(self) -> Tensor:
        """The flattened features of the last forward pass taken while on (then forgotten)."""
        features, self.outputs = self.outputs[-1].flatten(start_dim=1), []
        return features

    def __call__(self, model: nn.Module, x: Tensor):
        """``model(x)`` and the flattened features of that forward pass."""
        self.on, self.outputs = True, []
        try:
            out = model(x)
        finally:
            self.on = False
        return out, self.take()


class ContrastiveReplayPlugin(OnlineReplayPlugin):
    """Online reservoir replay with a feature tap, a projection head and its optimiser,
    and a second-view augmentation (see the module's description); SCR and OnPro build on it.

    The head is created when the plugin is handed the run context (its seed is the
    context's stream ``seed_name + "_head"``); ``augment(x)`` gives the second view.

    Over several processes every rank trains on the whole global batch
    (``replicated_batches``: :meth:`~clreplay.training.data_parallel.DataParallel.shard`):
    the contrastive losses compare every row with every other, and the augmentation and
    the head are drawn alike on every rank, so the ranks compute one process's step.
    The result is exact; the processes give no speed-up.
    """

    replicated_batches = True

    def __init__(self, model: nn.Module, mem_size: int = 200, *, proj_dim: int = 128, noise: float = 0.1,
                 drop: float = 0.1, batch_size_mem: Optional[int] = None, seed: Optional[int] = None,
                 memmap_dir=None, store_every_epoch: bool = True) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.proj_dim = PROJ_DIM.check(proj_dim, "proj_dim")
        self.noise, self.drop = NOISE.check(noise, "noise"), DROP.check(drop, "drop")
        policy = ReservoirSamplingStoragePolicy({}, mem_size, memmap_dir=memmap_dir)
        super().__init__(mem_size, policy, batch_size_mem=batch_size_mem, seed=seed,
                         store_every_epoch=store_every_epoch)
        self.model = model
        self.feature_layer = feature_layer_name(model)
        self.dim = feature_dim(model)
        self.tap = _FeatureTap(model, self.feature_layer)
        self.head = projection_head(self.dim, self.proj_dim, 0)
        self.head_optimizer: Optional[torch.optim.Optimizer] = None
        self._pending_optimizer: Optional[dict] = None
        self.image_augment = standard_augmentation()
        self.vector_augment = FeatureNoise(self.noise, self.drop)

    def setup(self, context) -> None:
        super().setup(context)
        self.head = projection_head(self.dim, self.proj_dim, context.seed_for(self.seed_name + "_head"))
        self.image_augment.setup(context.seed_for(self.seed_name + "_augment"))
        self.vector_augment.setup(context.seed_for(self.seed_name + "_augment"))

    def augment(self, x: Tensor) -> Tensor:
        """The second view of a batch: crop and flip for images, feature noise for vectors."""
        if x.dim() == 4:
            return self.image_augment(x)
        return self.vector_augment(x.flatten(start_dim=1).float()).view(x.shape)

    def project(self, features: Tensor) -> Tensor:
        """The head's L2-normalised output."""
        return F.normalize(self.head(features), dim=1)

    # --------------------------------------------------------------- training
    def before_training_exp(self, strategy, **kwargs):
        super().before_training_exp(strategy, **kwargs)
        self.head.to(strategy.device)
        if self.head_optimizer is None:
            self.head_optimizer = type(strategy.optimizer)(self.head.parameters(), **strategy.optimizer.defaults)
            if self._pending_optimizer is not None:
                self.head_optimizer.load_state_dict(self._pending_optimizer)
                self._pending_optimizer = None

    def before_forward(self, strategy, **kwargs):
        if self.head_optimizer is not None:
            self.head_optimizer.zero_grad(set_to_none=True)

    def after_update(self, strategy, **kwargs):
        """The head's step, right after the network's."""
        if self.head_optimizer is not None:
            self.head_optimizer.step()

    @staticmethod
    def all_parameters_used(loss: Tensor, out: Tensor) -> Tensor:
        """``loss`` plus 0 times the network's outputs: every parameter gets a gradient (zero
        for a classifier the loss does not use), as data-parallel training expects."""
        return loss + out.sum() * 0.0

    # ------------------------------------------------------------ persistence
    def _extra_state(self) -> dict:
        optimizer = self.head_optimizer.state_dict() if self.head_optimizer is not None else self._pending_optimizer
        return {"head": self.head.state_dict(), "head_optimizer": optimizer,
                "augment": {"image": self.image_augment.state_dict(), "vector": self.vector_augment.state_dict()}}

    def _load_extra_state(self, state: dict) -> None:
        self.head.load_state_dict(state["head"])
        if state["head_optimizer"] is not None and self.head_optimizer is not None:
            self.head_optimizer.load_state_dict(state["head_optimizer"])
        else:
            self._pending_optimizer = state["head_optimizer"]
        self.image_augment.load_state_dict(state["augment"]["image"])
        self.vector_augment.load_state_dict(state["augment"]["vector"])

