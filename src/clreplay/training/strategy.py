"""BaseStrategy: the training loop over a stream of experiences, with plugin hooks."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable, List, Mapping, Optional, Sequence

import torch
from torch import Tensor, nn

from clreplay._seeding import make_generator
from clreplay._validation import (
    check_int,
    check_optional_positive_int,
    check_positive_int,
)
from clreplay.data.batching import BatchSource, DatasetBatchSource
from clreplay.data.experience import Experience
from clreplay.data.minibatch import MiniBatch
from clreplay.training.acceleration import Acceleration
from clreplay.training.context import RunContext, resolve_context
from clreplay.training.data_parallel import DataParallel
from clreplay.training.eval_results import EvalResults
from clreplay.training.evaluate import check_experience, evaluate, indexed
from clreplay.training.fields import Alias, BatchField
from clreplay.training.inputs import explain_input_dtype
from clreplay.training.plugin import StrategyPlugin, build_dispatch, check_plugins, seam_owner
from clreplay.training.resume import begin_epoch, in_progress_state, resume_epoch


@dataclass
class Clock:
    """Counters of the run, in one place (saved in checkpoints)."""

    train_exp_counter: int = 0  # experiences whose training has finished
    train_exp_epochs: int = 0  # epochs finished in the current experience
    train_exp_iterations: int = 0  # iterations done in the current experience
    train_epoch_iterations: int = 0  # iterations done in the current epoch
    train_iterations: int = 0  # iterations done since the strategy was created
    train_samples: int = 0  # samples forwarded in training since the strategy was created


class BaseStrategy:
    """Trains ``model`` one experience at a time, firing plugin hooks around each step.

    Parameters
    ----------
    model, optimizer: the network and its optimiser.
    criterion: the loss function ``criterion(output, y)``, kept as ``loss_fn``;
        ``nn.CrossEntropyLoss()`` when None. (The method :meth:`criterion` is the
        loss of the current batch: the seam a method overrides.)
    train_mb_size: mini-batch size in training (>= 1).
    train_epochs: epochs per experience (>= 0; 0 trains nothing but still fires the
        experience hooks, so replay memories are filled).
    eval_mb_size: mini-batch size in evaluation; ``train_mb_size`` when None.
    device: where the model and the mini-batches live.
    plugins: :class:`StrategyPlugin` instances, called in this order.
    evaluator: a plugin that gathers metrics; it is called after the other plugins.
    seed: the run's seed (None means 0): the data is shuffled by its ``"shuffle"``
        stream, and every plugin draws from streams of its own (see
        :class:`RunContext`); the same seed gives the same batches and, with the same
        initial model, the same weights.
    context: the run context (seed, rank, world size) handed to every plugin once,
        through ``plugin.setup(context)``; by default ``RunContext(seed=seed)``, or
        with ``distributed`` the rank and world size of the process group.
    precision: ``"fp32"``, or ``"bf16"``/``"fp16"``: the forward pass and the loss run in
        autocast (fp16 with a gradient scaler, saved with the strategy); ``channels_last``:
        image models and batches in channels-last memory order; ``compile``: train through
        ``torch.compile(model, mode=...)`` (``"default"``, ``"reduce-overhead"``,
        ``"max-autotune"``, or a callable returning the module to train through), while
        ``model`` stays the module plugins read and checkpoints save (see
        :mod:`clreplay.training.acceleration`).
    distributed: train on every process of the initialized process group (see
        :mod:`clreplay.training.data_parallel`): each step's global batch of
        ``train_mb_size`` samples is split over the ranks (``train_mb_size`` must be
        a multiple of the world size), the model trains through
        ``DistributedDataParallel`` (:attr:`train_model`), so the weights
        follow those of one process training on the global batches. Without a
        process group it changes nothing. A ``context`` whose ``world_size`` is
        above 1 means the same. A dict means True, with options for DDP (e.g.
        ``{"find_unused_parameters": True}`` for a model whose steps leave some
        parameters unused).

    During training ``experience``, ``model``, ``optimizer``, ``device``, ``clock`` and,
    inside an iteration, ``mb`` (the :class:`~clreplay.data.MiniBatch`: ``x``, ``y``,
    ``t``, which rows came from a memory, their store rows and extra columns; also
    read as ``mb_x``, ``mb_y``, ``mb_task_id``), ``mb_output`` and ``loss`` describe
    where the loop is (over several processes, ``mb`` is this rank's slice of the
    global batch). ``batch_source`` is the :class:`BatchSource` iterated by each
    epoch of the current experience; one plugin may replace it in
    ``before_training_exp`` (replay mixes its memory in that way): a second
    replacement in the same experience is an error unless the new source extends
    the current one (its ``wraps`` attribute is the current source).

    The seams a method overrides: :meth:`criterion` (the loss of the current batch),
    :meth:`forward` (the model's output in training), :meth:`predict` (the class
    scores every evaluation and uncertainty-based selection use) and
    :meth:`make_train_batch_source`. A plugin may own :meth:`criterion` or
    :meth:`predict` instead, by defining a method of that name (see
    :class:`StrategyPlugin`): that is how the rehearsal methods of
    :mod:`clreplay.strategies` plug in without a strategy of their own.

    Example
    -------
    >>> from clreplay.benchmarks import split_digits
    >>> bench = split_digits()
    >>> model = nn.Linear(64, 10)
    >>> strategy = BaseStrategy(model, torch.optim.SGD(model.parameters(), lr=0.1),
    ...                         train_mb_size=32, train_epochs=3, seed=0)
    >>> strategy.train(bench.train_stream[0])
    >>> accuracies = strategy.eval(bench.test_stream[:1])
    >>> accuracies[0] > 0.9
    True
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        criterion: Optional[nn.Module] = None,
        *,
        train_mb_size: int = 1,
        train_epochs: int = 1,
        eval_mb_size: Optional[int] = None,
        device: str | torch.device = "cpu",
        plugins: Optional[Sequence[StrategyPlugin]] = None,
        evaluator: Optional[StrategyPlugin] = None,
        seed: Optional[int] = None,
        context: Optional[RunContext] = None,
        distributed: bool | Mapping = False,
        precision: str = "fp32",
        channels_last: bool = False,
        compile="off",
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
        if criterion is not None and not callable(criterion):
            raise TypeError(f"criterion must be callable or None, got {type(criterion).__name__}")
        self.train_mb_size = check_positive_int("train_mb_size", train_mb_size)
        self.train_epochs = check_int("train_epochs", train_epochs, minimum=0)
        self.eval_mb_size = check_optional_positive_int("eval_mb_size", eval_mb_size)
        if self.eval_mb_size is None:
            self.eval_mb_size = self.train_mb_size
        try:
            self.device = torch.device(device)
        except (RuntimeError, TypeError) as err:
            raise ValueError(f"device must name a torch device, got {device!r}") from err
        context, ddp_options = resolve_context(seed, context, distributed)
        self.seed, self.context = context.seed, context
        if context.world_size > 1 and self.train_mb_size % context.world_size:
            raise ValueError(
                f"train_mb_size must be a multiple of the world size ({context.world_size}): each "
                f"process trains on train_mb_size / world_size samples of every batch, got "
                f"{self.train_mb_size}"
            )
        plugins = check_plugins(plugins, evaluator)
        self.plugins: List[StrategyPlugin] = plugins
        self.evaluator = evaluator
        self._hooks = build_dispatch(plugins)
        # A plugin may own the loss or the prediction rule (DER, ER-ACE, iCaRL, ...).
        self._criterion_owner = seam_owner(plugins, "criterion")
        self._predict_owner = seam_owner(plugins, "predict")

        self.model = model.to(self.device)
        # Precision, memory format, compiled model: how the steps compute (training/acceleration.py).
        self.acceleration = Acceleration(self.model, self.device, precision=precision,
                                         channels_last=channels_last, compile=compile)
        # Over several processes: global batches sliced over the ranks, gradients summed.
        self._parallel = DataParallel(self.model, context, ddp_options) if context.world_size > 1 else None
        self.optimizer = optimizer
        self.loss_fn = nn.CrossEntropyLoss() if criterion is None else criterion
        # The training batches' shuffles: the run's "shuffle" stream (one seeding path).
        self.generator = make_generator(context.seed_for("shuffle"))
        self.clock = Clock()
        self.is_training = False
        self.experience: Optional[Experience] = None
        self._batch_source: Optional[BatchSource] = None
        self._batch_source_replaced = False
        self.mb: Optional[MiniBatch] = None
        self.mb_output: Optional[Tensor] = None
        self.loss: Optional[Tensor] = None
        self.eval_results: Optional[EvalResults] = None  # the last eval's, from after_eval on
        # Sum of the epoch's detached losses, kept on the device: reading it
        # every iteration would force a host sync.
        self.epoch_loss_sum: Tensor = torch.zeros((), device=self.device)
        # Where a checkpoint taken inside an experience resumes: the generator's and the
        # batch source's states at the start of the epoch (the epoch's draws come from them),
        # whether the loop is at the end of an iteration, and a pending resume.
        self._epoch_start: Optional[tuple] = None
        self._at_iteration_end = False
        self._resume: Optional[dict] = None
        #: True while the ``before_training_exp`` hooks of an experience resumed from a
        #: checkpoint taken inside it run: model, optimiser and plugins hold that state.
        self.resuming_experience = False

        for plugin in plugins:
            plugin.setup(self.context)

    # -------------------------------------------------------- the mini-batch
    mb_x = BatchField("x", "The samples of the current mini-batch (``mb.x``).")
    mb_y = BatchField("y", "The class labels of the current mini-batch (``mb.y``).")
    mb_task_id = BatchField("t", "The task labels of the current mini-batch (``mb.t``).")
    _criterion = Alias("loss_fn", "``loss_fn`` under the name Avalanche's plugins read and set.")

    def _mb(self) -> MiniBatch:
        if self.mb is None:
            raise ValueError("there is no current mini-batch outside an iteration; set strategy.mb first")
        return self.mb

    # ----------------------------------------------------------- batch source
    @property
    def batch_source(self) -> Optional[BatchSource]:
        """What each epoch of the current experience iterates over."""
        return self._batch_source

    @batch_source.setter
    def batch_source(self, source: BatchSource) -> None:
        if not isinstance(source, BatchSource):
            raise TypeError(f"batch_source must be a BatchSource, got {type(source).__name__}")
        current = self._batch_source
        if self._batch_source_replaced and getattr(source, "wraps", None) is not current:
            raise ValueError(
                f"batch_source was already replaced in this experience by a {type(current).__name__}; "
                f"got a {type(source).__name__} that does not extend it: two plugins cannot both "
                "replace the batch source (give the new source a 'wraps' attribute holding the "
                "current one to compose them)"
            )
        self._batch_source = source
        self._batch_source_replaced = True

    @property
    def batch_source_replaced(self) -> bool:
        """Whether a plugin replaced or extended the batch source in this experience."""
        return self._batch_source_replaced

    def uses_default_batch_source(self) -> bool:
        """True unless a subclass overrides :meth:`make_train_batch_source` (replay then
        extends the strategy's own batches instead of building its own)."""
        return type(self).make_train_batch_source is BaseStrategy.make_train_batch_source

    # ------------------------------------------------------------------ hooks
    def _fire(self, hook: str, **kwargs) -> None:
        for method in self._hooks[hook]:
            method(self, **kwargs)

    # --------------------------------------------------------------- training
    def train(self, experiences: Experience | Iterable[Experience], **kwargs) -> None:
        """Train on one experience, or on each of a sequence of experiences in turn."""
        if "eval_streams" in kwargs:  # Avalanche's periodic evaluation: never silently ignored
            raise TypeError("train() got eval_streams, which clreplay does not take: call "
                            "strategy.eval(stream) after train(), or give EvaluationPlugin a "
                            "test_stream (evaluated after every experience)")
        if isinstance(experiences, Experience):
            experiences = [experiences]
        else:
            try:
                experiences = [check_experience(e) for e in experiences]
            except TypeError as err:
                if "experience must be" in str(err):
                    raise
                raise TypeError(
                    f"experiences must be an Experience or an iterable of them, "
                    f"got {type(experiences).__name__}"
                ) from None
        self.is_training = True
        try:
            self.model.train()
            self._fire("before_training", **kwargs)
            for experience in experiences:
                self._train_experience(experience, **kwargs)
            self._fire("after_training", **kwargs)
        finally:
            # An error must not leave the strategy looking mid-experience (checkpoints refuse that).
            self.is_training = False

    def make_train_batch_source(self, experience: Experience) -> BatchSource:
        """The default batch source: the experience's data, shuffled with ``generator``."""
        return DatasetBatchSource(
            experience.dataset, self.train_mb_size, shuffle=True, generator=self.generator
        )

    def _train_experience(self, experience: Experience, **kwargs) -> None:
        self.experience = experience
        resume, self._resume = self._resume, None
        if resume is None:
            self.clock.train_exp_epochs = 0
            self.clock.train_exp_iterations = 0
        self._batch_source = self.make_train_batch_source(experience)
        self._batch_source_replaced = False
        # Plugins that change the model or their state once per experience (GDumb's
        # re-initialisation) skip that when it was done before the checkpoint.
        self.resuming_experience = resume is not None
        try:
            self._fire("before_training_exp", **kwargs)
        finally:
            self.resuming_experience = False
        if self._parallel is not None:  # after the plugins: each rank trains on its slice
            replicate = any(getattr(p, "replicated_batches", False) for p in self.plugins)
            self._batch_source = self._parallel.shard(self._batch_source, replicate=replicate)
        for _ in range(self.clock.train_exp_epochs, self.train_epochs):
            self._train_epoch(resume, **kwargs)
            resume = None
        self._fire("after_training_exp", **kwargs)
        self.clock.train_exp_counter += 1
        self._batch_source_replaced = False  # the guard holds within one experience

    def _train_epoch(self, resume: Optional[dict] = None, **kwargs) -> None:
        begin_epoch(self, resume)
        self._fire("before_training_epoch", **kwargs)
        start = 0 if resume is None else resume_epoch(self, resume)
        device, parallel = indexed(self.device), self._parallel
        batches = iter(self._batch_source) if not start else self._batch_source.iterate_from(start)
        for batch in batches:
            mb = batch if type(batch) is MiniBatch else MiniBatch.of(batch)
            # Batch sources over data on the device yield it there: skip the no-op moves.
            if mb.x.device != device or mb.y.device != device or mb.t.device != device:
                mb = mb.to(device)
            self.mb = mb
            self.training_step(**kwargs)
        if parallel is not None:  # the sum of the global batches' losses
            self.epoch_loss_sum = parallel.sum(self.epoch_loss_sum)
        self.clock.train_exp_epochs += 1
        self._fire("after_training_epoch", **kwargs)

    def training_step(self, **kwargs) -> None:
        """One iteration on ``mb_x``/``mb_y``: forward, loss, backward, update, with hooks."""
        # The hook loops are inlined: a hook no plugin overrides is an empty list,
        # and looping over it costs far less than a call (this runs every step).
        hooks = self._hooks
        for hook in hooks["before_training_iteration"]:
            hook(self, **kwargs)
        self.optimizer.zero_grad(set_to_none=True)
        for hook in hooks["before_forward"]:
            hook(self, **kwargs)
        acceleration = self.acceleration
        with acceleration.autocast():
            try:
                self.mb_output = self.forward()
            except RuntimeError as err:  # uint8 images into a float model: say how to fix it
                explain_input_dtype(err, self.mb.x)
                raise
            for hook in hooks["after_forward"]:
                hook(self, **kwargs)
            self.loss = self.criterion()
        for hook in hooks["before_backward"]:
            hook(self, **kwargs)
        parallel = self._parallel
        if parallel is None:
            loss = self.loss
            acceleration.backward(loss, self.optimizer)
        else:  # this rank's share of the global batch's loss; DDP sums the gradients
            loss = parallel.loss_share(self.loss, self.mb_output)
            parallel.backward(loss, lambda scaled: acceleration.backward(scaled, self.optimizer))
        for hook in hooks["after_backward"]:
            hook(self, **kwargs)
        for hook in hooks["before_update"]:
            hook(self, **kwargs)
        acceleration.step(self.optimizer)
        for hook in hooks["after_update"]:
            hook(self, **kwargs)
        self.epoch_loss_sum += loss.detach()
        clock = self.clock
        clock.train_iterations += 1
        clock.train_exp_iterations += 1
        clock.train_epoch_iterations += 1
        clock.train_samples += self.mb.y.shape[0] if parallel is None else parallel.samples
        # A checkpoint may be taken here (the iteration is complete: see state_dict).
        self._at_iteration_end = True
        for hook in hooks["after_training_iteration"]:
            hook(self, **kwargs)
        self._at_iteration_end = False

    @property
    def train_model(self) -> nn.Module:
        """What the training forward calls: ``model``, or over several processes its
        :class:`~torch.nn.parallel.DistributedDataParallel` wrapper (``model`` stays the
        plain module: plugins read its layers, evaluation calls it)."""
        return self.model if self._parallel is None else self._parallel.module()

    def forward(self) -> Tensor:
        """The output of :attr:`train_model` on the mini-batch (override for multi-head models);
        through the compiled model with ``compile``, in channels-last order with
        ``channels_last``."""
        return self.acceleration.forward(self.mb.x, self.train_model)

    def criterion(self) -> Tensor:
        """The loss of the current mini-batch: ``loss_fn(mb_output, mb_y)``.

        The seam a rehearsal method overrides or extends (e.g. DER adds a term on
        the replayed rows, ``self.mb.from_memory``). A plugin that defines
        ``criterion(strategy)`` owns it: its value is the loss.
        """
        if self._criterion_owner is not None:
            return self._criterion_owner.criterion(self)
        return self.loss_fn(self.mb_output, self.mb.y)

    def predict(self, x: Tensor) -> Tensor:
        """Class scores for samples ``x``; the predicted class is their argmax.

        The one prediction rule: :meth:`eval` (and so the evaluator) and
        uncertainty-based selection use it. Default: the model's output; a plugin
        that defines ``predict(strategy, x)`` owns it (iCaRL's nearest-mean-of-exemplars
        classifier).
        """
        if self._predict_owner is not None:
            return self._predict_owner.predict(self, x)
        return self.model(x)

    # ------------------------------------------------------------- evaluation
    def eval(self, stream: Experience | Iterable[Experience], **kwargs) -> EvalResults:
        """Accuracy on each experience of ``stream``, keyed by ``current_experience``
        (an :class:`EvalResults` dict: its ``metrics`` hold the same under Avalanche's
        names, and an evaluator's metrics; ``eval_results`` during ``after_eval``).

        Runs batched, without gradients and in eval mode; the model's mode and
        the training state (``experience``, ``batch_source``) are restored after,
        so an evaluator may call this from a training hook. Over several processes
        every rank calls it: each evaluates a share of the batches and the correct
        counts are summed, so every rank returns the same accuracies.
        """
        return evaluate(self, stream, **kwargs)

    # ------------------------------------------------------------ persistence
    @property
    def resumes_inside_experience(self) -> bool:
        """True when a loaded state was taken inside an experience: the next ``train()``
        of that experience continues at iteration ``clock.train_exp_iterations + 1``."""
        return self._resume is not None

    @property
    def can_checkpoint(self) -> bool:
        """True between experiences and at the end of a training iteration (in the
        ``after_training_iteration`` hooks): where a saved state can resume exactly."""
        return not self.is_training or self._at_iteration_end

    def state_dict(self) -> dict:
        """Model, optimiser, clock, generator and every plugin's state.

        Taken inside an experience (at the end of an iteration, see
        :attr:`can_checkpoint`), ``in_progress`` also holds the generator's state at
        the start of the epoch and the epoch's loss so far: loaded into a new
        strategy, the next ``train()`` of that experience resumes at the next
        iteration, with the same batches as a run that never stopped. Over several
        processes every rank calls it there (the epoch's loss is summed over the
        ranks, a collective) and the state holds nothing particular to a rank, so it
        resumes under any number of processes.
        """
        if not self.can_checkpoint:
            raise ValueError(
                "strategy must be between experiences or at the end of a training iteration "
                "(after_training_iteration) to be saved, got one elsewhere inside train()"
            )
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "clock": asdict(self.clock),
            "seed": self.seed,
            "generator": self.generator.get_state(),
            "plugins": [p.state_dict() for p in self.plugins],
            "in_progress": in_progress_state(self) if self.is_training else None,
            "scaler": self.acceleration.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        expected = {"model", "optimizer", "clock", "seed", "generator", "plugins", "in_progress", "scaler"}
        missing, unexpected = expected - set(state), set(state) - expected
        if missing or unexpected:
            raise KeyError(
                f"strategy state must have keys {sorted(expected)}; "
                f"missing {sorted(missing)}, unexpected {sorted(unexpected)}"
            )
        if len(state["plugins"]) != len(self.plugins):
            raise ValueError(
                f"state holds {len(state['plugins'])} plugin states but the strategy has "
                f"{len(self.plugins)} plugins"
            )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.clock = Clock(**state["clock"])
        self.seed = state["seed"]
        self.generator.set_state(state["generator"])
        self.acceleration.load_state_dict(state["scaler"])
        for plugin, plugin_state in zip(self.plugins, state["plugins"]):
            plugin.load_state_dict(plugin_state)
        self._resume = None
        if state["in_progress"] is not None:  # the next train() resumes the experience
            self._resume = {**state["in_progress"], "plugins": state["plugins"]}


class Naive(BaseStrategy):
    """Plain fine-tuning: the loop with no plugin of its own (the lower bound of CL)."""
