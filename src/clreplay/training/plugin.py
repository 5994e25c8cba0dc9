"""StrategyPlugin: hooks into the training loop, and their dispatch."""

from __future__ import annotations

import difflib
from typing import Dict, List, Sequence, Tuple

#: Every hook, in the order a training iteration or an evaluation meets them.
HOOKS: Tuple[str, ...] = (
    "before_training",
    "before_training_exp",
    "before_training_epoch",
    "before_training_iteration",
    "before_forward",
    "after_forward",
    "before_backward",
    "after_backward",
    "before_update",
    "after_update",
    "after_training_iteration",
    "after_training_epoch",
    "after_training_exp",
    "after_training",
    "before_eval",
    "before_eval_exp",
    "before_eval_iteration",
    "before_eval_forward",
    "after_eval_forward",
    "after_eval_iteration",
    "after_eval_exp",
    "after_eval",
)


class StrategyPlugin:
    """Base class of plugins: every hook does nothing; override the ones you need.

    Each hook is called as ``hook(strategy, **kwargs)``, in plugin order, and
    only for plugins that override it, so an unused hook costs nothing.

    Beyond hooks, a plugin may own one of the strategy's seams by defining a
    method of the same name: ``criterion(strategy) -> Tensor`` (the loss of the
    current batch, e.g. DER's distillation) or ``predict(strategy, x) -> Tensor``
    (class scores, e.g. iCaRL's nearest-mean classifier). The strategy calls the
    one plugin that defines it; two plugins defining the same one are an error.

    >>> class CountIterations(StrategyPlugin):
    ...     def __init__(self):
    ...         self.count = 0
    ...     def after_training_iteration(self, strategy, **kwargs):
    ...         self.count += 1
    """

    def setup(self, context) -> None:
        """Called once by the strategy with its :class:`~clreplay.training.RunContext`
        (seed, rank, world size); a plugin passes it on to the components it owns."""

    def state_dict(self) -> dict:
        """The plugin's state for a checkpoint (stateless plugins return ``{}``)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned."""


def _make_noop_hook(name: str):
    def hook(self, strategy, **kwargs) -> None:
        pass

    hook.__name__ = hook.__qualname__ = name
    hook.__doc__ = f"Called at {name.replace('_', ' ')}; does nothing unless overridden."
    return hook


# The hooks are generated so that the list above is the single source of truth.
for _hook in HOOKS:
    setattr(StrategyPlugin, _hook, _make_noop_hook(_hook))


#: Hooks of Avalanche's loop that this loop does not have, and what to do instead: a plugin
#: that defines one is refused by name rather than silently never called.
UNSUPPORTED_HOOKS: Dict[str, str] = {
    **dict.fromkeys(
        ("before_train_dataset_adaptation", "after_train_dataset_adaptation"),
        "clreplay's loop adapts no dataset: batches come from strategy.batch_source, which a "
        "plugin replaces or extends in before_training_exp (ReplayPlugin does), or transform "
        "the experience's dataset before strategy.train"),
    **dict.fromkeys(
        ("before_eval_dataset_adaptation", "after_eval_dataset_adaptation"),
        "clreplay's evaluation reads each experience's dataset as it is: use before_eval_exp "
        "(strategy.experience is the one evaluated), or transform the test stream's datasets "
        "before strategy.eval"),
}


def _misspelled_hooks(plugin: StrategyPlugin) -> List[Tuple[str, List[str]]]:
    """Public methods named like a hook but not one: near misses of a hook's name
    (e.g. ``befor_training_exp``). Other methods, ``after_my_step`` included, are
    the plugin's own business."""
    found = []
    for name in dir(type(plugin)):
        if name.startswith("_") or name in HOOKS or name in UNSUPPORTED_HOOKS \
                or hasattr(StrategyPlugin, name):
            continue
        close = difflib.get_close_matches(name, HOOKS, n=1, cutoff=0.85)
        if close:
            found.append((name, close))
    return found


def check_plugin(plugin, index: int) -> None:
    """Reject non-plugins, plugins with a method named like a misspelled hook and plugins
    defining a hook this loop does not call (:data:`UNSUPPORTED_HOOKS`)."""
    if not isinstance(plugin, StrategyPlugin):
        raise TypeError(
            f"plugins[{index}] must be a StrategyPlugin, got {type(plugin).__name__}"
        )
    for name, instead in UNSUPPORTED_HOOKS.items():
        if callable(getattr(plugin, name, None)):
            raise ValueError(
                f"plugins[{index}] ({type(plugin).__name__}) defines {name}(), a hook of Avalanche's "
                f"loop that clreplay's never calls: {instead}"
            )
    bad = _misspelled_hooks(plugin)
    if bad:
        name, close = bad[0]
        raise ValueError(
            f"plugins[{index}] ({type(plugin).__name__}) defines {name!r}, which is not a hook; "
            f"did you mean {close[0]!r}? (rename it if it is not meant as a hook)"
        )


def check_plugins(plugins, evaluator) -> List[StrategyPlugin]:
    """A strategy's plugins, the ``evaluator`` last, each checked (see :func:`check_plugin`)."""
    if isinstance(plugins, StrategyPlugin) or not isinstance(plugins, (Sequence, type(None))):
        raise TypeError(f"plugins must be a sequence of StrategyPlugin or None, got {type(plugins).__name__}")
    if evaluator is not None and not isinstance(evaluator, StrategyPlugin):
        raise TypeError(f"evaluator must be a StrategyPlugin or None, got {type(evaluator).__name__}")
    plugins = list(plugins or []) + ([evaluator] if evaluator is not None else [])
    for i, plugin in enumerate(plugins):
        check_plugin(plugin, i)
    return plugins


#: Strategy seams a plugin may own by defining a method of that name.
SEAMS: Tuple[str, ...] = ("criterion", "predict")


def seam_owner(plugins: Sequence[StrategyPlugin], seam: str):
    """The one plugin that defines the method ``seam`` (see :data:`SEAMS`), or None.

    >>> class Loss(StrategyPlugin):
    ...     def criterion(self, strategy):
    ...         return 0.0
    >>> seam_owner([StrategyPlugin(), Loss()], "criterion").__class__.__name__
    'Loss'
    >>> seam_owner([Loss(), Loss()], "criterion")
    Traceback (most recent call last):
    ...
    ValueError: plugins[0] (Loss) and plugins[1] (Loss) both define criterion(); at most one plugin may own a strategy's criterion
    """
    owners = [(i, p) for i, p in enumerate(plugins) if callable(getattr(p, seam, None))]
    if len(owners) > 1:
        (i, a), (j, b) = owners[:2]
        raise ValueError(
            f"plugins[{i}] ({type(a).__name__}) and plugins[{j}] ({type(b).__name__}) both define "
            f"{seam}(); at most one plugin may own a strategy's {seam}"
        )
    return owners[0][1] if owners else None


def build_dispatch(plugins: Sequence[StrategyPlugin]) -> Dict[str, List]:
    """For each hook, the bound methods of the plugins that override it, in plugin order."""
    table: Dict[str, List] = {}
    for hook in HOOKS:
        base = getattr(StrategyPlugin, hook)
        table[hook] = [
            getattr(p, hook) for p in plugins if getattr(type(p), hook, base) is not base
        ]
    return table
