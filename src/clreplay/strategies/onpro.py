"""OnPro: online prototype learning, for single-pass continual learning with a small memory.

Wei, Ye, Huang, Zhang, Li, "Online Prototype Learning for Online Continual Learning",
ICCV 2023. The network learns features that hold every class apart while the
stream's classes keep arriving, through three losses on top of a classifier:

* **Instance-wise contrast** (OCM's, Guo et al. 2022, which OnPro keeps): every sample
  rotated by 0, 90, 180 and 270 degrees, each rotation a class of its own (label
  ``y + C·r``), and paired with an augmentation of it; a supervised NT-Xent over the
  normalised projections ``z`` of the views (:func:`~clreplay.strategies.contrastive.nt_xent`),
  on the stream's views and on the memory draw's.
* **Online prototype equilibrium** (Sec. 3.2, Eq. 3-5, :func:`ope_loss`): the
  prototypes of a batch's classes (the mean projection of each class's samples, in
  each of the two views) are contrasted with one another (the other view's prototype
  of a class is its positive, temperature 0.5), on the stream's samples (the new
  classes) and on the memory draw's (every class seen): the classes are kept apart and
  balanced.
* **Adaptive prototypical feedback** (Sec. 3.3, :func:`mix_memory`): the memory draw
  the classifier trains on is mixed up, a base share of it with random partners and
  the rest in pairs of classes drawn with probability ``softmax(1 / distance)`` of their
  prototypes: the classes the network confuses are mixed most.

Loss: ``CE + L_ins + L_OPE``, the CE on the stream in the first experience (before any
memory class is old) and on the mixed memory draw after it; prediction is the
classifier's. The memory is a reservoir updated after every step.

Adapted where the authors' code relies on images or on a wide backbone: flat feature
vectors have no rotations (one view group, the second view by feature dropout and
noise); the code also rotates image halves (16 groups) and adds a similarity to a
random slice of the backbone's features, which a network whose embedding is narrower
than the projection cannot have: the similarity here is the projections' alone
(``z zᵀ``, without the code's 0.5 scaling of its two terms). The prototypes of seen
classes come from the step's memory draw (the code samples the memory again).
"""

from __future__ import annotations

import itertools
from typing import List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from clreplay._seeding import SeedStream
from clreplay.data.dataset import ClassificationDataset
from clreplay.options import Option
from clreplay.strategies.contrastive import (
    DROP,
    NOISE,
    PROJ_DIM,
    ContrastiveReplayPlugin,
    nt_xent,
    rotations,
)
from clreplay.strategies.der import STORE_EVERY_EPOCH
from clreplay.strategies.method import Method

INS_TEMPERATURE = Option("ins_temperature", 0.07, "OnPro: temperature of the instance-wise contrast",
                         minimum=0.0, open_minimum=True)
PROTO_TEMPERATURE = Option("proto_temperature", 0.5, "OnPro: temperature of the prototype equilibrium",
                           minimum=0.0, open_minimum=True)
MIXUP_BASE = Option("mixup_base", 0.75, "OnPro: share of the memory draw mixed with random partners (the "
                    "rest by class pairs of close prototypes)", minimum=0.0, maximum=1.0)
MIXUP_P = Option("mixup_p", 0.6, "OnPro: probability of mixing a sample (a class pair's batch)",
                 minimum=0.0, maximum=1.0)


def ope_loss(z1: Tensor, z2: Tensor, y: Tensor, temperature: float) -> Tuple[Tensor, Tensor]:
    """Online prototype equilibrium: the prototypes of the classes in ``y`` (the normalised
    means of their rows of ``z1`` and of ``z2``, two views) contrasted with each other: each
    prototype's positive is its class's prototype in the other view (a softmax over the
    other ``2K - 1`` prototypes). Returns the loss and the ``(K, d)`` class means of the
    two views' prototypes (before normalisation), rows in the order of ``y``'s classes.

    >>> z = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    >>> loss, _ = ope_loss(z, z, torch.tensor([0, 1]), 1.0)   # -log(e / (e + 2)) for each of 4 anchors
    >>> round(loss.item(), 4)
    0.5514
    """
    classes = torch.unique(y)
    onehot = (y.view(-1, 1) == classes.view(1, -1)).to(z1.dtype)
    counts = onehot.sum(dim=0, keepdim=True).T
    p1, p2 = onehot.T @ z1 / counts, onehot.T @ z2 / counts
    k = len(classes)
    z = F.normalize(torch.cat([p1, p2]), dim=1)
    logits = z @ z.T / temperature
    logits = logits - logits.max(dim=1, keepdim=True).values.detach()
    self_mask = torch.eye(2 * k, dtype=torch.bool, device=z.device)
    log_prob = logits - torch.log((torch.exp(logits) * ~self_mask).sum(dim=1, keepdim=True))
    positive = torch.cat([torch.arange(k, 2 * k), torch.arange(0, k)]).to(z.device)
    loss = -log_prob.gather(1, positive.view(-1, 1)).mean()
    return loss, (p1 + p2) / 2


def pair_probabilities(means: Tensor) -> Tensor:
    """APF's probability of each pair of classes ``(i < j)``, in ``itertools.combinations``
    order: ``softmax(1 / ||mean_i - mean_j||)``: the closer two classes' prototypes, the more
    of their mixtures.

    >>> [round(p, 4) for p in pair_probabilities(torch.tensor([[0.0], [1.0], [3.0]])).tolist()]  # 1/d: 1, 1/3, 1/2
    [0.4717, 0.2422, 0.2861]
    """
    return F.softmax(1.0 / torch.pdist(means).clamp(min=1e-12), dim=0)


class OnProPlugin(ContrastiveReplayPlugin):
    """OnPro (see the module's description).

    Parameters
    ----------
    model: the strategy's model. mem_size: samples in the reservoir memory.
    ins_temperature, proto_temperature: the two contrasts' temperatures.
    mixup_base, mixup_p: APF's share of random mixing and its mixing probability.
    proj_dim: the projection head's output size. noise, drop: the flat benchmarks' second view.
    batch_size_mem: memory samples per step; default ``train_mb_size``.
    seed: seeds the draws (None: the run's streams).

    Example
    -------
    >>> from clreplay.benchmarks import split_digits
    >>> from clreplay.models import make_mlp
    >>> from clreplay.training import Naive
    >>> model = make_mlp(64, 10, [32], seed=0)
    >>> onpro = OnProPlugin(model, mem_size=100)
    >>> Naive(model, torch.optim.SGD(model.parameters(), lr=0.05), train_mb_size=10,
    ...       plugins=[onpro], seed=0).train(split_digits().train_stream[:2])
    >>> len(onpro.seen_before), onpro.prototypes.shape[1], len(onpro.prototype_classes) == len(onpro.prototypes)
    (4, 128, True)
    """

    seed_name = "onpro"
    _state_name = "OnPro"
    draws = ("replay",)

    def __init__(self, model: nn.Module, mem_size: int = 200, ins_temperature: float = 0.07,
                 proto_temperature: float = 0.5, mixup_base: float = 0.75, mixup_p: float = 0.6, *,
                 proj_dim: int = 128, noise: float = 0.1, drop: float = 0.1,
                 batch_size_mem: Optional[int] = None, seed: Optional[int] = None, memmap_dir=None,
                 store_every_epoch: bool = True) -> None:
        self.ins_temperature = INS_TEMPERATURE.check(ins_temperature, "ins_temperature")
        self.proto_temperature = PROTO_TEMPERATURE.check(proto_temperature, "proto_temperature")
        self.mixup_base = MIXUP_BASE.check(mixup_base, "mixup_base")
        self.mixup_p = MIXUP_P.check(mixup_p, "mixup_p")
        super().__init__(model, mem_size, proj_dim=proj_dim, noise=noise, drop=drop,
                         batch_size_mem=batch_size_mem, seed=seed, memmap_dir=memmap_dir,
                         store_every_epoch=store_every_epoch)
        self.apf_rng = SeedStream("onpro_apf", None)  # the mixing draws (not the memory draws')
        self.seen_before: List[int] = []  # the classes of the experiences before the current one
        self._present: set = set()
        #: The latest prototypes of the memory's classes (rows: ``prototype_classes``).
        self.prototypes: Optional[Tensor] = None
        self.prototype_classes: List[int] = []

    def setup(self, context) -> None:
        super().setup(context)
        self.apf_rng.setup(context)

    # ----------------------------------------------------------------- views
    def _instance(self, x: Tensor, y: Tensor, classes: int, variant: str):
        """Rotated views and their augmentation through the network: the NT-Xent and the
        projections of the unrotated views (for the prototypes)."""
        first = rotations(x)
        groups = first.shape[0] // max(x.shape[0], 1)
        labels = torch.cat([y + classes * r for r in range(groups)]) if len(x) else y
        _, features = self.tap(self.model, torch.cat([first, self.augment(first)]))
        z = self.project(features)
        n = first.shape[0]
        loss = nt_xent(z @ z.T, labels, self.ins_temperature, variant)
        return loss, z[: len(x)], z[n:n + len(x)]

    # -------------------------------------------------------------------- APF
    def mix_memory(self, x: Tensor, y: Tensor, memory: ClassificationDataset):
        """APF (Sec. 3.3): a ``mixup_base`` share of the draw mixed with random partners of the
        draw (``λ ~ U(0, 0.6)`` per sample, with probability ``mixup_p``), the rest made of
        pairs of classes drawn by :func:`pair_probabilities` of the prototypes, each pair's
        samples drawn from the whole memory and mixed with ``λ ~ Beta(0.4, 0.4)`` (the whole
        pair with probability ``mixup_p``). Returns the mixed samples and ``(y_a, y_b, λ)``."""
        g = self.apf_rng.generator
        n = len(y)
        base = int(n * self.mixup_base)
        rows = torch.randperm(n, generator=g)[:base].to(y.device)
        xb, yb = x[rows].float(), y[rows]
        partner = torch.randperm(base, generator=g).to(y.device)
        apply = (torch.rand(base, generator=g) < self.mixup_p).to(y.device)
        lam = torch.where(apply, torch.rand(base, generator=g).to(y.device) * 0.6, torch.zeros(base, device=y.device))
        shape = (-1,) + (1,) * (x.dim() - 1)
        mixed = [(1 - lam.view(shape)) * xb + lam.view(shape) * xb[partner]]
        ya, yb2, lams = [yb], [yb[partner]], [lam]
        rest = n - base
        known = [c for c in self.prototype_classes]
        if rest and self.prototypes is not None and len(known) > 1:
            probs = pair_probabilities(self.prototypes.cpu())
            counts = torch.multinomial(probs, rest, replacement=True, generator=g).bincount(minlength=len(probs))
            targets = memory.targets.cpu()
            pool = {c: torch.nonzero(targets == c).flatten() for c in known}
            for (i, j), count in zip(itertools.combinations(range(len(known)), 2), counts.tolist()):
                a, b = known[i], known[j]
                if not count or not len(pool[a]) or not len(pool[b]):
                    continue
                ra = pool[a][torch.randint(len(pool[a]), (count,), generator=g)]
                rb = pool[b][torch.randint(len(pool[b]), (count,), generator=g)]
                xa = memory.get_batch(ra)[0].to(x.device).float()
                xb2 = memory.get_batch(rb)[0].to(x.device).float()
                use = bool(torch.rand((), generator=g) < self.mixup_p)
                pair_lam = (_beta(count, g) if use else torch.zeros(count)).to(x.device)
                mixed.append((1 - pair_lam.view(shape)) * xa + pair_lam.view(shape) * xb2)
                ya.append(torch.full((count,), a, device=y.device))
                yb2.append(torch.full((count,), b, device=y.device))
                lams.append(pair_lam)
        return torch.cat(mixed), torch.cat(ya), torch.cat(yb2), torch.cat(lams)

    # --------------------------------------------------------------- training
    def criterion(self, strategy) -> Tensor:
        mb, out = strategy.mb, strategy.mb_output
        classes = out.shape[1]
        stream = mb.stream.slice
        x_s, y_s = mb.x[stream], mb.y[stream]
        self._present.update(y_s.tolist())
        ins, z_s1, z_s2 = self._instance(x_s, y_s, classes, "n")
        loss = ins + ope_loss(z_s1, z_s2, y_s, self.proto_temperature)[0]  # the new classes' prototypes
        replay = mb.segment("replay") if "replay" in mb and len(mb.segment("replay")) else None
        if replay is not None:  # the seen classes' prototypes, from the memory draw
            x_m, y_m = mb.x[replay.slice], mb.y[replay.slice]
            _, features = self.tap(self.model, torch.cat([x_m, self.augment(x_m)]))
            z = self.project(features)
            seen_loss, means = ope_loss(z[: len(y_m)], z[len(y_m):], y_m, self.proto_temperature)
            loss = loss + seen_loss
            self.prototypes, self.prototype_classes = means.detach(), torch.unique(y_m).tolist()
        if not self.seen_before or replay is None:  # the first experience: the classifier on the stream
            logits, _ = self.tap(self.model, self.augment(x_s))
            return self.all_parameters_used(loss + F.cross_entropy(logits, y_s), out)
        memory = ClassificationDataset.concat([g for g in self.ext_mem.values() if len(g)])
        x_mix, ya, yb, lam = self.mix_memory(x_m, y_m, memory)
        if not len(x_mix):  # a draw of one sample and no class pair to mix: nothing for the classifier
            return self.all_parameters_used(loss, out)
        # The mixed memory's instance-wise contrast: labels interpolated as the authors' code does.
        soft = (1 - lam) * ya.to(lam.dtype) + lam * yb.to(lam.dtype)
        ins_m, _, _ = self._instance(x_mix, soft, classes, "uni")
        logits, _ = self.tap(self.model, self.augment(x_mix))
        ce = ((1 - lam) * F.cross_entropy(logits, ya, reduction="none")
              + lam * F.cross_entropy(logits, yb, reduction="none")).mean()
        return self.all_parameters_used(loss + ins_m + ce, out)

    def after_training_exp(self, strategy, **kwargs):
        super().after_training_exp(strategy, **kwargs)
        self.seen_before = sorted(set(self.seen_before) | self._present)
        self._present = set()

    # ------------------------------------------------------------ persistence
    def _extra_state(self) -> dict:
        return {**super()._extra_state(), "apf_rng": self.apf_rng.state_dict(),
                "seen_before": list(self.seen_before), "present": sorted(self._present),
                "prototypes": self.prototypes, "prototype_classes": list(self.prototype_classes)}

    def _load_extra_state(self, state: dict) -> None:
        super()._load_extra_state(state)
        self.apf_rng.load_state_dict(state["apf_rng"])
        self.seen_before = list(state["seen_before"])
        self._present = set(state["present"])
        self.prototypes, self.prototype_classes = state["prototypes"], list(state["prototype_classes"])


def _beta(n: int, g: torch.Generator, alpha: float = 0.4) -> Tensor:
    """``n`` draws of Beta(α, α): numpy's sampler, seeded from ``g`` (torch's Beta takes no generator)."""
    seed = int(torch.randint(0, 2**62, (1,), generator=g))
    return torch.from_numpy(np.random.default_rng(seed).beta(alpha, alpha, n)).float()


def _build(config, model: nn.Module) -> List:
    o = config.method_options
    return [OnProPlugin(model, config.mem_size, o["ins_temperature"], o["proto_temperature"], o["mixup_base"],
                        o["mixup_p"], proj_dim=o["proj_dim"], noise=o["noise"], drop=o["drop"],
                        batch_size_mem=config.batch_size_mem, memmap_dir=config.memmap_dir,
                        store_every_epoch=o["store_every_epoch"])]


ONPRO = Method(
    name="onpro",
    summary="OnPro: instance-wise and prototype contrast (online prototype equilibrium) through a projection "
            "head, memory mixed up by prototype distances (adaptive prototypical feedback)",
    paper="Wei et al., Online Prototype Learning for Online Continual Learning, ICCV 2023",
    build=_build, options=(INS_TEMPERATURE, PROTO_TEMPERATURE, MIXUP_BASE, MIXUP_P, PROJ_DIM, NOISE, DROP,
                           STORE_EVERY_EPOCH),
    replay_options=("batch_size_mem", "memmap_dir"),
    protocol="online reservoir, the stream offered after every step of every epoch (mammoth's); "
             "the classifier trains on the mixed memory after the first experience",
)
