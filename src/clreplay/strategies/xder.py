"""X-DER: eXtended DER, whose stored logits learn about the classes that came later.

Boschini et al., "Class-Incremental Continual Learning into the eXtended DER-verse",
TPAMI 2022. DER keeps the logits a sample got when it was stored; the model knew
nothing then of the classes still to come, and DER pulls it back to that ignorance.
X-DER updates the stored logits (Sec. 4.1) and adds margin constraints (Sec. 4.3):

* **Memory.** Class-balanced (an equal share per class seen), filled at the end of
  each experience with the trained model's logits, whose past classes are scaled so
  that the sample's own class keeps the largest logit.
* **Logit update of stored rows.** A stored row of an earlier experience takes the
  current model's logits for the classes not seen before the current experience,
  scaled by ``gamma * z_y / max`` where they exceed its own class's stored logit
  ``z_y``: when a step first replays it (``"replay"`` draw), and for every stored row
  at the end of the experience (``store.update``: the samples stay, the logits move).
* **Loss** on the stream ``x`` and two memory draws ``x'`` (``"replay"``), ``x''``
  (``"replay_ce"``)::

      CE over the current classes(h(x), y) + alpha * MSE(h(x'), z')
      + beta * CE over the past classes(h(x''), y'')
      + eta * mean of the positive [max past prob - max current prob + m](x)     (past constraint)
      + eta * mean of the positive [max future logit - max own-experience logit + m](x, x', x'')

The paper's future-preparation term (a supervised-contrastive loss on the future
heads over two augmented views, ``lambda``) is not included: it needs image
augmentations, and flat benchmarks have none.
"""

from __future__ import annotations

from typing import List, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from clreplay.options import Option
from clreplay.replay.memory_plugin import MemoryPlugin
from clreplay.replay.mixing.online import OnlineReplayBatchSource
from clreplay.replay.policies.class_balanced import ClassBalancedStoragePolicy
from clreplay.replay.selection.features import extract_features
from clreplay.strategies.der import ALPHA, BETA  # noqa: F401  (the family)
from clreplay.strategies.er_ace import mask_logits
from clreplay.strategies.losses import hinge_mean, logit_mse, segment_mean
from clreplay.strategies.method import Method

GAMMA = Option("gamma", 0.85, "X-DER: the transplanted logits' cap, as a share of the own class's", minimum=0.0)
ETA = Option("eta", 0.1, "X-DER: weight of the past and future margin constraints", minimum=0.0)
MARGIN = Option("margin", 0.3, "X-DER: margin m of the constraints", minimum=0.0)
XDER_ALPHA = Option("alpha", 0.3, ALPHA.help, minimum=0.0)
XDER_BETA = Option("beta", 0.8, BETA.help, minimum=0.0)


def transplant(stored: Tensor, new: Tensor, y: Tensor, columns: Tensor, gamma: float) -> Tensor:
    """``stored`` logits with the ``columns`` (a class mask) taken from ``new``, scaled by
    ``gamma * stored[y] / max`` in the rows where their largest value exceeds the row's
    own class's stored logit (X-DER's update: the own class keeps the lead). Computed
    over whole rows with masks, so nothing waits for the device.

    >>> transplant(torch.tensor([[4.0, 0.0, 0.0]]), torch.tensor([[9.0, 8.0, 2.0]]), torch.tensor([0]),
    ...            torch.tensor([False, True, True]), 0.5).tolist()
    [[4.0, 2.0, 0.5]]
    """
    own = stored.gather(1, y.view(-1, 1)).squeeze(1)
    top = new.masked_fill(~columns, float("-inf")).max(dim=1).values  # -inf: no column moves
    scale = torch.where(top > own, gamma * own / top, torch.ones_like(own))
    return torch.where(columns, new * scale.unsqueeze(1), stored)


class XDERPlugin(MemoryPlugin):
    """X-DER (see the module's description) on a class-balanced memory storing logits.

    Parameters
    ----------
    mem_size: samples in the memory. alpha, beta: the DER and label-replay weights.
    gamma: cap of transplanted logits. eta, margin: weight and margin ``m`` of the constraints.
    batch_size_mem: memory samples per draw; default ``train_mb_size``.
    seed: seeds the memory draws (None: the run's stream).

    Example
    -------
    >>> from clreplay.benchmarks import split_digits
    >>> from clreplay.training import Naive
    >>> model, xder = torch.nn.Linear(64, 10), XDERPlugin(mem_size=100)
    >>> Naive(model, torch.optim.SGD(model.parameters(), lr=0.1), train_mb_size=10,
    ...       plugins=[xder], seed=0).train(split_digits().train_stream[:2])
    >>> len(xder.storage_policy), xder.past_classes == sorted(split_digits().class_order[:4])
    (100, True)
    """

    seed_name = "xder"
    _state_name = "X-DER"
    draws = ("replay", "replay_ce")

    def __init__(self, mem_size: int = 200, alpha: float = 0.3, beta: float = 0.8, gamma: float = 0.85,
                 eta: float = 0.1, margin: float = 0.3, *, batch_size_mem: Optional[int] = None,
                 seed: Optional[int] = None) -> None:
        self.alpha, self.beta = XDER_ALPHA.check(alpha, "alpha"), XDER_BETA.check(beta, "beta")
        self.gamma, self.eta = GAMMA.check(gamma, "gamma"), ETA.check(eta, "eta")
        self.margin = MARGIN.check(margin, "margin")
        super().__init__(mem_size, None, batch_size_mem=batch_size_mem, seed=seed,
                         default_policy=lambda size: ClassBalancedStoragePolicy({}, size))
        self.storage_policy.store.register_column("updated_in", (), torch.long, fill=-1)
        self.experience_classes: List[List[int]] = []  # the new classes of each experience trained
        self._current: List[int] = []
        self._brings_new = True
        self._experience = 0

    @property
    def past_classes(self) -> List[int]:
        """The classes of the experiences before the current one."""
        return sorted({c for classes in self.experience_classes for c in classes})

    def _mask(self, classes, width: int, device) -> Tensor:
        mask = torch.zeros(width, dtype=torch.bool, device=device)
        mask[[c for c in classes if c < width]] = True
        return mask

    # --------------------------------------------------------------- training
    def before_training_exp(self, strategy, **kwargs):
        self._experience = strategy.experience.current_experience
        classes = sorted(strategy.experience.classes_in_this_experience)
        new = sorted(set(classes) - set(self.past_classes))
        # A domain-incremental experience brings no new class: its stream's cross-entropy is
        # over its own classes, and the past constraint (new classes above old) has no terms.
        self._current, self._brings_new = new or classes, bool(new)
        strategy.batch_source = OnlineReplayBatchSource(
            strategy.batch_source, self.storage_policy, self.batch_size_mem or strategy.train_mb_size,
            memory_generator=self.generator, draws=self.draws)

    def criterion(self, strategy) -> Tensor:
        mb, out = strategy.mb, strategy.mb_output
        width, device = out.shape[1], out.device
        past, current = self._mask(self.past_classes, width, device), self._mask(self._current, width, device)
        stream = mb.stream.slice
        loss = segment_mean(F.cross_entropy(mask_logits(out[stream], current), mb.y[stream], reduction="none"),
                            mb, "stream")
        if self.experience_classes and self._brings_new:  # past constraint: the new classes lead
            probs = F.softmax(mask_logits(out[stream], past | current), dim=1)
            bad = mask_logits(probs, past).max(dim=1).values.detach()
            loss = loss + self.eta * hinge_mean(bad, mask_logits(probs, current).max(dim=1).values, self.margin,
                                               mb)
        # Future constraint: the classes not seen yet stay below each row's own experience's.
        has_future = width > len(set(self.past_classes) | set(self._current))
        if "replay" not in mb:
            if has_future:
                loss = loss + self._future_constraint(out[stream], current, past | current, mb)
            return loss
        replay, second = mb.segment("replay"), mb.segment("replay_ce")
        loss = loss + self.alpha * logit_mse(out, mb, "replay")
        loss = loss + self.beta * segment_mean(
            F.cross_entropy(mask_logits(out[second.slice], past), mb.y[second.slice], reduction="none"), mb,
            "replay_ce")
        if has_future:
            memory = slice(replay.start, second.stop)  # consecutive draws: each row's own classes lead
            good = torch.cat([current.expand(stream.stop - stream.start, -1),
                              self._own_experience_mask(mb.y[memory], width, device)])
            loss = loss + self._future_constraint(torch.cat([out[stream], out[memory]]), good, past | current,
                                                  mb)
        self._update_replayed(strategy, replay, out[replay.slice].detach(), ~past)
        return loss

    def _future_constraint(self, logits: Tensor, good: Tensor, seen: Tensor, mb) -> Tensor:
        bad = mask_logits(logits, ~seen).max(dim=1).values
        return self.eta * hinge_mean(bad, mask_logits(logits, good).max(dim=1).values, self.margin, mb)

    def _own_experience_mask(self, y: Tensor, width: int, device) -> Tensor:
        """Per row, the classes of the experience its class came from."""
        experience_of = torch.full((width,), -1, dtype=torch.long, device=device)
        for index, classes in enumerate(self.experience_classes):
            experience_of[[c for c in classes if c < width]] = index
        return experience_of.unsqueeze(0) == experience_of[y].unsqueeze(1)

    def _update_replayed(self, strategy, segment, outputs: Tensor, future: Tensor) -> None:
        """Rows of earlier experiences replayed for the first time in this one take the
        current logits of the classes not seen before it."""
        stored = segment.columns["logits"].to(outputs.device)
        updated_in = segment.columns["updated_in"].to(outputs.device)
        y = strategy.mb.y[segment.slice]
        values = {"logits": transplant(stored, outputs, y, future, self.gamma),
                  "updated_in": torch.full_like(updated_in, self._experience)}
        self.update_rows(strategy, segment, values, updated_in < self._experience)

    def after_forward(self, strategy, **kwargs):
        width = strategy.mb_output.shape[1]
        spec = self.storage_policy.store.extras.get("logits")
        if spec is None or spec.shape[0] < width:
            self.storage_policy.store.ensure_column("logits", (width,), torch.float32, fill=float("nan"))

    def after_training_exp(self, strategy, **kwargs):
        """Store the experience's samples with the trained model's logits, then update the
        stored rows of earlier experiences with the logits of the classes new to them."""
        data, store = strategy.experience.dataset, self.storage_policy.store
        gather = strategy.context.world_size > 1
        logits = extract_features(strategy.model, data, device=strategy.device,
                                  batch_size=strategy.eval_mb_size, gather=gather)
        width = logits.shape[1]
        store.ensure_column("logits", (width,), torch.float32, fill=float("nan"))
        past = self._mask(self.past_classes, width, logits.device)
        logits = transplant(logits, logits, data.targets.to(logits.device), past, self.gamma)
        self.storage_policy(strategy, columns={"logits": logits, "updated_in": torch.full(
            (len(data),), self._experience, dtype=torch.long)})
        self.experience_classes.append(self._current)
        older = [g for g in self.storage_policy.ext_mem.values() if len(g)]
        if older:
            rows = torch.cat([g.indices.cpu() for g in older])
            rows = rows[store.read("updated_in", rows) < self._experience]
            if len(rows):
                view = store.view(rows)
                outputs = extract_features(strategy.model, view, device=strategy.device,
                                           batch_size=strategy.eval_mb_size, gather=gather)
                new = ~past  # the classes not seen before this experience: its own and later
                stored = store.read("logits", rows).to(outputs.device)
                store.update(rows, {"logits": transplant(stored, outputs, view.targets.to(outputs.device),
                                                         new, self.gamma),
                                    "updated_in": torch.full((len(rows),), self._experience)})
        self.check_replicated(strategy, f"experience {self._experience}")

    # ------------------------------------------------------------ persistence
    def _extra_state(self) -> dict:
        return {"experience_classes": [list(g) for g in self.experience_classes]}

    def _load_extra_state(self, state: dict) -> None:
        self.experience_classes = [list(g) for g in state["experience_classes"]]


def _build(config, model: nn.Module) -> List:
    o = config.method_options
    return [XDERPlugin(config.mem_size, o["alpha"], o["beta"], o["gamma"], o["eta"], o["margin"],
                       batch_size_mem=config.batch_size_mem)]


XDER = Method(
    name="xder",
    summary="X-DER: DER whose stored logits take the classes learnt later; past and future margin constraints",
    paper="Boschini et al., Class-Incremental Continual Learning into the eXtended DER-verse, TPAMI 2022",
    build=_build, options=(XDER_ALPHA, XDER_BETA, GAMMA, ETA, MARGIN), replay_options=("batch_size_mem",),
    protocol="class-balanced memory filled after each experience with the trained model's logits; "
             "stored logits updated when replayed and after each experience",
)
