"""BiC: bias correction of the newest classes' logits, fitted on held-out samples.

Wu et al., "Large Scale Incremental Learning", CVPR 2019. A class-incremental
model trained on few exemplars of the old classes and many samples of the new ones
favours the new classes. BiC trains in two stages per experience:

* **Stage 1** (Sec. 4.1, Eq. 1-3): the network trains on the new samples and the
  exemplars with ``L = λ L_d + (1 - λ) L_c``, ``λ = n / (n + m)`` for ``n`` old and
  ``m`` new classes: ``L_c`` the cross-entropy over the logits of the classes seen so
  far, ``L_d`` the distillation of the previous model's predictions over the old
  classes at temperature ``T`` (``m`` counts the classes the experience holds: the new
  ones in a class-incremental stream, as in the paper; every class in a domain-incremental
  one, where none is new and the paper's ``λ = 1`` would leave no cross-entropy)::

      L_d = - Σ_{k ≤ n} softmax(ô / T)_k · log softmax(o / T)_k      (ô: previous model)

  scaled by ``T²`` (Hinton's scaling, as in mammoth's BiC, so its gradient keeps its
  size at any ``T``).
* **Stage 2** (Sec. 4.2, Eq. 4-5): with the network frozen, a bias correction layer,
  two parameters ``(α, β)`` for the experience, rescales the logits of its new classes,
  ``q_k = α o_k + β`` (the others unchanged), and is fitted by minimising the
  cross-entropy of ``q`` over the classes seen so far on a validation set balanced
  over the classes: samples held out of training.

The held-out samples are part of the memory: of ``mem_size`` samples, a share
``bias_holdout`` is a class-balanced validation memory, the rest the class-balanced
memory that is replayed (ER's balanced batches, or ``batch_size_mem`` memory samples
appended to each batch). Before an experience is trained, a few samples of each of its
new classes are held out of its training data (as many as the validation memory keeps
per class, drawn from the plugin's seeded stream); after it, they join the validation
memory, which then holds, for every class seen, samples the network did not train on
in this experience (the old classes' exemplars there are never replayed). Prediction
applies the latest experience's correction (the network's own outputs otherwise), and
the previous model's distillation targets are its corrected outputs (mammoth's
``distill_after_bic``). Stage 2 runs ``bias_epochs`` full-batch Adam steps at
``bias_lr`` from ``(1, 0)`` (mammoth's 250 at 0.001); every experience's pair is kept
(``corrections``).
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from clreplay._seeding import SeedStream
from clreplay._validation import check_positive_int
from clreplay.data.dataset import ClassificationDataset
from clreplay.data.experience import Experience
from clreplay.options import Option
from clreplay.replay.plugin import ReplayPlugin
from clreplay.replay.policies.class_balanced import ClassBalancedStoragePolicy
from clreplay.replay.selection.features import extract_features
from clreplay.strategies.copies import frozen_copy
from clreplay.strategies.er_ace import mask_logits
from clreplay.strategies.method import Method

HOLDOUT = Option("bias_holdout", 0.1, "BiC: share of the memory held out to fit the bias "
                      "correction (the paper's 1:9 split)", minimum=0.0, maximum=1.0, open_minimum=True,
                      open_maximum=True)
TEMPERATURE = Option("bic_temperature", 2.0, "BiC: temperature T of the distillation", minimum=0.0,
                     open_minimum=True)
BIAS_EPOCHS = Option("bias_epochs", 250, "BiC: Adam steps fitting each experience's bias correction on "
                     "the held-out memory", minimum=0, maximum=1_000_000)
BIAS_LR = Option("bias_lr", 0.001, "BiC: Adam learning rate of the bias correction", minimum=0.0,
                 open_minimum=True)


def correct(logits: Tensor, classes: Tensor, alpha: Tensor, beta: Tensor) -> Tensor:
    """``logits`` whose ``classes`` columns are ``alpha * logit + beta`` (BiC's Eq. 4).

    >>> correct(torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([1, 2]), torch.tensor(0.5),
    ...         torch.tensor(-1.0)).tolist()
    [[1.0, 0.0, 0.5]]
    """
    if not len(classes):
        return logits
    out = logits.clone()
    out[:, classes] = alpha * logits[:, classes] + beta
    return out


def distillation(logits: Tensor, old_logits: Tensor, old_classes: Tensor, temperature: float) -> Tensor:
    """Per row, ``T² · Σ_k -softmax(ô/T)_k log softmax(o/T)_k`` over the ``old_classes``.

    >>> d = distillation(torch.tensor([[0.0, 0.0, 5.0]]), torch.tensor([[2.0, 0.0, 9.0]]),
    ...                  torch.tensor([0, 1]), 2.0)
    >>> round(d.item(), 4)   # 4 · (-(e/(e+1)) log 1/2 - (1/(e+1)) log 1/2) = 4 log 2
    2.7726
    """
    t = temperature
    targets = F.softmax(old_logits[:, old_classes].float() / t, dim=1)
    log_probs = F.log_softmax(logits[:, old_classes].float() / t, dim=1)
    return -(targets * log_probs).sum(dim=1) * (t * t)


def fit_bias(logits: Tensor, y: Tensor, seen: Tensor, new: Tensor, *, steps: int, lr: float) -> Tensor:
    """``(α, β)`` minimising the cross-entropy over the ``seen`` classes of ``logits`` with the
    ``new`` classes' columns corrected (Eq. 5): ``steps`` full-batch Adam steps from (1, 0).

    >>> logits = torch.tensor([[1.0, 3.0], [1.0, 2.0]])   # class 1 (new) always wins
    >>> alpha, beta = fit_bias(logits, torch.tensor([0, 1]), torch.tensor([True, True]),
    ...                        torch.tensor([1]), steps=200, lr=0.05).tolist()
    >>> alpha < 1.0 or beta < 0.0
    True
    """
    params = torch.tensor([1.0, 0.0], device=logits.device, requires_grad=True)
    optimizer = torch.optim.Adam([params], lr=lr)
    logits = logits.detach().float()
    for _ in range(steps):
        optimizer.zero_grad()
        corrected = mask_logits(correct(logits, new, params[0], params[1]), seen)
        F.cross_entropy(corrected, y).backward()
        optimizer.step()
    return params.detach()


class BiCPlugin(ReplayPlugin):
    """BiC (see the module's description): stage-1 loss (:meth:`criterion`), a held-out
    validation memory, the bias correction fitted after each experience and applied in
    :meth:`predict`.

    Parameters
    ----------
    model: the strategy's model (the previous model is a frozen copy of it).
    mem_size: samples in all: replayed and held out.
    holdout: share of ``mem_size`` held out for the bias correction.
    temperature: ``T`` of the distillation.
    bias_epochs, bias_lr: the Adam steps and learning rate of stage 2.
    batch_size_mem: memory samples appended to each batch (default: balanced batches).
    seed: seeds which samples are held out (None: the run's stream).

    Example
    -------
    >>> from clreplay.benchmarks import split_digits
    >>> from clreplay.models import make_mlp
    >>> from clreplay.training import Naive
    >>> model = make_mlp(64, 10, [32], seed=0)
    >>> bic = BiCPlugin(model, mem_size=100)
    >>> Naive(model, torch.optim.SGD(model.parameters(), lr=0.1), train_mb_size=10,
    ...       plugins=[bic], seed=0).train(split_digits().train_stream[:2])
    >>> len(bic.corrections), sum(len(g) for g in bic.validation.ext_mem.values())
    (2, 10)
    """

    seed_name = "bic"
    _state_name = "BiC"

    def __init__(self, model: nn.Module, mem_size: int = 200, holdout: float = 0.1,
                 temperature: float = 2.0, bias_epochs: int = 250, bias_lr: float = 0.001, *,
                 batch_size_mem: Optional[int] = None, seed: Optional[int] = None) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.holdout = HOLDOUT.check(holdout, "holdout")
        self.temperature = TEMPERATURE.check(temperature, "temperature")
        self.bias_epochs = BIAS_EPOCHS.check(bias_epochs, "bias_epochs")
        self.bias_lr = BIAS_LR.check(bias_lr, "bias_lr")
        mem_size = check_positive_int("mem_size", mem_size)
        # At least one sample held out (none when the memory holds one sample: no correction).
        n_val = min(max(1, round(self.holdout * mem_size)), mem_size - 1)
        super().__init__(mem_size - n_val, ClassBalancedStoragePolicy({}, mem_size - n_val),
                         batch_size_mem=batch_size_mem)
        self.rng = SeedStream(self.seed_name, seed)  # which samples are held out
        self.mem_size = mem_size  # replayed and held out
        #: The held-out samples: a class-balanced memory of its own, never replayed (None: no
        #: room for one, with ``mem_size`` 1).
        self.validation = ClassBalancedStoragePolicy({}, n_val) if n_val else None
        self.model = model
        self.seen_classes: List[int] = []
        #: Each experience's new classes and fitted ``(α, β)`` (``(1, 0)`` for the first).
        self.corrections: List[Dict] = []
        self._old_model: Optional[nn.Module] = None
        self._held_out: Optional[Tensor] = None  # positions in the current experience
        self._new: List[int] = []  # the current experience's classes not seen before
        self._current: List[int] = []  # all the current experience's classes

    def setup(self, context) -> None:
        super().setup(context)
        if self.validation is not None:  # its own stream: the two memories' choices are independent
            self.validation.setup(context.with_seed(context.seed_for("bic_validation")))

    # --------------------------------------------------------------- training
    def before_training_exp(self, strategy, **kwargs):
        experience = strategy.experience
        self._current = sorted(experience.classes_in_this_experience)
        self._new = sorted(set(self._current) - set(self.seen_classes))
        if not strategy.resuming_experience:  # else the checkpoint holds the experience's choice
            self._held_out = self._hold_out(experience)
        super().before_training_exp(strategy, **kwargs)

    def _hold_out(self, experience: Experience) -> Tensor:
        """Positions of the samples of the new classes held out for the validation memory:
        per class, as many as the validation memory keeps per class after this experience
        (one sample at least stays for training)."""
        if self.validation is None:
            return torch.zeros(0, dtype=torch.long)
        targets = experience.dataset.targets.cpu()
        per_class = math.ceil(self.validation.mem_size / max(len(self.seen_classes) + len(self._new), 1))
        held = []
        for c in self._new:
            positions = torch.nonzero(targets == c).flatten()
            take = min(per_class, len(positions) - 1)
            if take > 0:
                held.append(positions[torch.randperm(len(positions), generator=self.generator)[:take]])
        return torch.sort(torch.cat(held)).values if held else torch.zeros(0, dtype=torch.long)

    def training_data(self, strategy):
        """The experience without its held-out samples."""
        data = strategy.experience.dataset
        if self._held_out is None or not len(self._held_out):
            return data
        keep = torch.ones(len(data), dtype=torch.bool)
        keep[self._held_out] = False
        return data.subset(torch.nonzero(keep).flatten().to(data.device))

    def criterion(self, strategy) -> Tensor:
        """``(1 - λ)`` CE over the seen classes + ``λ`` distillation over the old ones."""
        out, y = strategy.mb_output, strategy.mb.y
        old = [c for c in self.seen_classes if c < out.shape[1]]
        seen = torch.zeros(out.shape[1], dtype=torch.bool, device=out.device)
        seen[old + [c for c in self._new if c < out.shape[1]]] = True
        seen[y] = True
        ce = F.cross_entropy(mask_logits(out, seen), y)
        if self._old_model is None or not old:
            return ce
        lam = len(old) / (len(old) + len(self._current))
        with torch.no_grad():
            old_logits = self._corrected(self._old_model(strategy.mb.x), -1)
        classes = torch.tensor(old, device=out.device)
        return (1 - lam) * ce + lam * distillation(out, old_logits, classes, self.temperature).mean()

    def after_training_exp(self, strategy, **kwargs):
        """Store the trained samples and the held-out ones, fit the experience's bias
        correction, keep the corrected model as the next experience's teacher."""
        experience = strategy.experience
        trained, held = self.training_data(strategy), self._held_data(experience)
        self.storage_policy(_WithData(strategy, experience, trained))
        if held is not None and self.validation is not None:
            self.validation(_WithData(strategy, experience, held))
        alpha, beta = torch.tensor(1.0), torch.tensor(0.0)
        if self.seen_classes and self._new and self.bias_epochs and self.validation is not None:
            alpha, beta = self._fit(strategy)
        self.corrections.append({"classes": list(self._new), "alpha": alpha.cpu(), "beta": beta.cpu()})
        self.seen_classes = sorted(set(self.seen_classes) | set(self._new))
        self._old_model = frozen_copy(self.model)
        self._held_out = None

    def _held_data(self, experience: Experience):
        if self._held_out is None or not len(self._held_out):
            return None
        return experience.dataset.subset(self._held_out.to(experience.dataset.device))

    def _fit(self, strategy):
        groups = [g for g in self.validation.ext_mem.values() if len(g)]
        if not groups:
            return torch.tensor(1.0), torch.tensor(0.0)
        data = ClassificationDataset.concat(groups)
        logits = extract_features(self.model, data, device=strategy.device, batch_size=strategy.eval_mb_size,
                                  gather=strategy.context.world_size > 1)
        seen = torch.zeros(logits.shape[1], dtype=torch.bool, device=logits.device)
        seen[[c for c in self.seen_classes + self._new if c < logits.shape[1]]] = True
        new = torch.tensor([c for c in self._new if c < logits.shape[1]], dtype=torch.long, device=logits.device)
        params = fit_bias(logits, data.targets.to(logits.device), seen, new, steps=self.bias_epochs,
                          lr=self.bias_lr)
        return params[0], params[1]

    # ------------------------------------------------------------- prediction
    def _corrected(self, logits: Tensor, which: int) -> Tensor:
        """``logits`` with correction ``corrections[which]`` applied to its classes."""
        if not self.corrections:
            return logits
        c = self.corrections[which]
        classes = torch.tensor([k for k in c["classes"] if k < logits.shape[1]], dtype=torch.long,
                               device=logits.device)
        return correct(logits, classes, c["alpha"].to(logits), c["beta"].to(logits))

    def predict(self, strategy, x: Tensor) -> Tensor:
        """The network's outputs with the latest experience's bias correction."""
        return self._corrected(strategy.model(x), -1)

    # ------------------------------------------------------------ persistence
    def _extra_state(self) -> dict:
        return {"validation": None if self.validation is None else self.validation.state_dict(),
                "seen_classes": list(self.seen_classes),
                "corrections": [dict(c) for c in self.corrections],
                "old_model": None if self._old_model is None else self._old_model.state_dict(),
                "held_out": self._held_out}

    def _load_extra_state(self, state: dict) -> None:
        if self.validation is not None:
            self.validation.load_state_dict(state["validation"])
        self.seen_classes = list(state["seen_classes"])
        self.corrections = [dict(c) for c in state["corrections"]]
        self._old_model = None
        if state["old_model"] is not None:
            self._old_model = frozen_copy(self.model)
            self._old_model.load_state_dict(state["old_model"])
        self._held_out = state["held_out"]


class _WithData:
    """The strategy as a storage policy sees it, with ``data`` as its experience's samples."""

    def __init__(self, strategy, experience: Experience, data) -> None:
        self._strategy = strategy
        self.experience = Experience(data, experience.current_experience,
                                     list(experience.classes_in_this_experience), experience.task_label)

    def __getattr__(self, name):
        return getattr(self._strategy, name)


def _build(config, model: nn.Module) -> List:
    o = config.method_options
    return [BiCPlugin(model, config.mem_size, o["bias_holdout"], o["bic_temperature"], o["bias_epochs"], o["bias_lr"],
                      batch_size_mem=config.batch_size_mem)]


BIC = Method(
    name="bic",
    summary="BiC: distillation + CE, then a per-experience bias correction (alpha, beta) of the new classes' "
            "logits fitted on held-out memory samples",
    paper="Wu et al., Large Scale Incremental Learning, CVPR 2019",
    build=_build, options=(HOLDOUT, TEMPERATURE, BIAS_EPOCHS, BIAS_LR), replay_options=("batch_size_mem",),
    protocol="class-balanced memory updated after each experience, a share held out (never replayed) to fit "
             "the bias correction; balanced replay (ER's batches)",
)
