"""RunConfig: everything that defines a run of the main job, and its checks.

Every check runs before the first training step. Errors name the setting the
way its user wrote it: the field (``mem_size``) from Python, the flag
(``--mem-size``) from the command line, which passes its ``names``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional

import torch

from clreplay._validation import device_available
from clreplay.benchmarks.registry import (
    BENCHMARKS,
    BLURRY,
    CLASS_ORDER,
    IMAGE_BENCHMARKS,
    list_benchmarks,
    needs_data_path,
    parse_class_order,
)
from clreplay.models.registry import HIDDEN, IMAGE_MODELS, INIT, MODELS, WIDTH, list_models
from clreplay.options import Option
from clreplay.replay.policies.parametric import GROUPBY_OPTION
from clreplay.replay.registry import (
    POLICIES_WITH_SELECTION,
    POLICY_OPTIONS,
    list_policies,
    list_selections,
)
from clreplay.strategies.registry import get_method, list_methods, resolve_method_options
from clreplay.training.acceleration import CHANNELS_LAST, COMPILE, PRECISION

#: Replay options of ER alone, with the values that mean "not given" (field, unset values):
#: the other methods bring their own memory and would ignore them.
_ER_ONLY = (("policy", (None, "experience")), ("selection", ("random",)), ("groupby", (None,)),
            ("online", (False,)), ("task_balanced", (False,)))

#: Replay options refused with ``replay=False`` when set (they would be silently ignored).
_REPLAY_ONLY = ("selection", "groupby", "online", "batch_size_mem", "task_balanced", "memmap_dir")

_BIG = 2**31 - 1  # sizes above this are no batch, memory or step count anyone can hold

#: The run's own settings (the components' are in their registries: models, policies, methods).
RUN_OPTIONS = (
    Option("benchmark", "split_digits", f"benchmark to run: {', '.join(list_benchmarks())}; "
           "some bring their own defaults (`--benchmark NAME --help`)",
           choices=tuple(list_benchmarks())),
    Option("data", None, "data file or folder of a file-based benchmark (split_fashion_mnist: by "
           "default Debian's dataset-fashion-mnist folder)", path=True),
    Option("name", None, "the benchmark's name in logs, results and plots (default: the benchmark's, "
           "or the data's)", kind=str),
    Option("n_experiences", 5, "number of experiences the classes are split into", minimum=1, maximum=100_000),
    Option("epochs", 5, "epochs per experience", minimum=0, maximum=1_000_000),
    Option("batch_size", 32, "training mini-batch size, current and replayed samples together",
           minimum=1, maximum=_BIG),
    Option("lr", 0.05, "SGD learning rate", kind=float, minimum=0.0, open_minimum=True),
    Option("momentum", 0.9, "SGD momentum", kind=float, minimum=0.0, maximum=1.0, open_maximum=True),
    Option("model", "mlp", "network: mlp (flattens images), cnn or resnet18 (the reduced ResNet-18 of "
           "GEM/DER; both need an image benchmark)", choices=tuple(list_models())),
    Option("augment", None, "random crop and horizontal flip of every training batch (default: on for "
           "split_cifar10/100)", kind=bool),
    Option("replay", True, "replay (--no-replay: plain fine-tuning, the Naive baseline)"),
    Option("method", "er", "rehearsal method", choices=tuple(list_methods())),
    Option("mem_size", 200, "replay memory size, in samples", minimum=1, maximum=2**40),
    Option("policy", "experience", "storage policy (default: experience, or reservoir with --online)",
           choices=tuple(list_policies()), nullable=True),
    Option("selection", "random", "exemplar order of the class and parametric policies",
           choices=tuple(list_selections())),
    Option("online", False, "online replay: the memory is updated from every mini-batch and replayed "
           "from the first experience on"),
    Option("batch_size_mem", None, "add N memory samples to every mini-batch (default: offline replay "
           "balances each batch over experiences)", kind=int, minimum=1, maximum=_BIG),
    Option("task_balanced", False, "balance the memory part of each mini-batch over task labels"),
    Option("memmap_dir", None, "keep the memory in memory-mapped files in DIR (memories larger than "
           "RAM; the same results)", path=True),
    Option("seed", 0, "seed of every random choice", minimum=0, maximum=2**63 - 1,
           range_text="an int in [0, 2**63 - 1]"),
    Option("device", "cpu", "torch device, e.g. cpu or cuda"),
    Option("output", None, "folder for results.json, logs and plots (empty, unless --overwrite)",
           path=True),
    Option("overwrite", False, "replace the files of an earlier run in --output (others are kept)"),
    Option("checkpoint_dir", None, "folder to save a checkpoint in after each experience, and to "
           "resume from", path=True),
    Option("checkpoint_every", None, "also save every N training iterations (needs --checkpoint-dir)",
           kind=int, minimum=1, maximum=_BIG),
    Option("world_size", 1, "train on N processes, --batch-size being the global batch", minimum=1,
           maximum=65_536, cli_flag="--nproc"),
    PRECISION,
    CHANNELS_LAST,
    COMPILE,
    # One by default: on a shared machine threads beyond the free cores make a run many times
    # slower, small models gain nothing from more, and the count moves the last bits of results.
    Option("threads", 1, "torch threads per process", minimum=1, maximum=4096),
    Option("anytime_every", None, "also evaluate on the seen experiences' test sets every N iterations: "
           "the anytime accuracy (A_AUC) and its curve (default: off)", kind=int, minimum=1, maximum=_BIG),
)
#: The components' options that are run settings too (fields of RunConfig).
COMPONENT_OPTIONS = (HIDDEN, WIDTH, INIT, GROUPBY_OPTION, CLASS_ORDER, BLURRY)


@dataclass
class RunConfig:
    """Everything that defines a run (saved with its results and checkpoints).

    Each field is described by an :class:`~clreplay.options.Option` record: the run's
    own in :data:`RUN_OPTIONS`, the model's (``hidden``, ``width``, ``init``) and the
    parametric policy's (``groupby``) in their registries, the method's in
    ``method_options`` (its :class:`~clreplay.strategies.method.Method` record). The
    command line's flags and every check below derive from them.
    """

    benchmark: str = "split_digits"
    data: Optional[str] = None  # file or folder, for file-based benchmarks
    n_experiences: int = 5
    epochs: int = 5
    batch_size: int = 32
    lr: float = 0.05
    momentum: float = 0.9
    hidden: List[int] = field(default_factory=lambda: [256])
    replay: bool = True
    method: str = "er"  # a rehearsal method of clreplay.strategies.registry
    method_options: Dict[str, Any] = field(default_factory=dict)  # its options (defaults filled in)
    mem_size: int = 200
    policy: Optional[str] = "experience"  # ER's; None: reservoir when online, else experience
    selection: str = "random"
    seed: int = 0
    device: str = "cpu"
    output: Optional[str] = None
    checkpoint_dir: Optional[str] = None
    checkpoint_every: Optional[int] = None  # iterations between checkpoints inside an experience
    # Replay beyond the seed API: parametric grouping, online replay, batch options, memmap.
    groupby: Optional[str] = None  # parametric policy: None (one group), class, experience, task
    online: bool = False  # OnlineReplayPlugin: memory updated from every mini-batch
    batch_size_mem: Optional[int] = None
    task_balanced: bool = False
    memmap_dir: Optional[str] = None  # keep the memory in memory-mapped files there
    name: Optional[str] = None  # the benchmark's name in reports (default: from the data)
    overwrite: bool = False  # replace the run files already in output
    # Models and augmentation (image benchmarks keep uint8 images; models normalise them).
    model: str = "mlp"  # mlp, cnn, resnet18
    width: Optional[int] = None  # resnet18 base filters (default 20) or cnn channels (32)
    init: str = "default"  # the MLP's initialisation: default (torch's) or xavier
    augment: Optional[bool] = None  # crop + flip; None: on for split_cifar10/100, else off
    # Processes the run trains on (set by the launcher: --nproc, or torchrun's group).
    # batch_size is the global batch: each process trains on batch_size / world_size.
    world_size: int = 1
    # How the steps compute (training/acceleration.py) and on how many threads.
    precision: str = "fp32"
    channels_last: bool = False
    compile: str = "off"
    threads: int = 1
    # The stream: class order (None: seeded shuffle; "label"; "3,1,4,..."), blurry boundaries.
    class_order: Optional[str] = None
    blurry: float = 0.0
    anytime_every: Optional[int] = None  # iterations between anytime evaluations (None: off)

    def validate(self, *, names: Optional[Mapping[str, str]] = None) -> "RunConfig":
        """Check every field against its option record and the rules between fields (and
        resolve ``policy=None``); return ``self``.

        ``names`` maps a field to how the user wrote it (``{"mem_size": "--mem-size"}``)
        so that errors name that instead of the field.
        """
        n = _namer(names)
        for option in RUN_OPTIONS + COMPONENT_OPTIONS:
            setattr(self, option.name, option.check(getattr(self, option.name), n(option.name)))
        self._validate_model_options(n)
        self._validate_stream_options(n)
        if needs_data_path(self.benchmark) and not self.data:
            raise ValueError(f"{n('data')} must name a file or folder for {n('benchmark')} "
                             f"{self.benchmark!r}, got None")
        if self.batch_size % self.world_size:
            raise ValueError(
                f"{n('batch_size')} must be a multiple of {n('world_size')}, the number of processes, "
                f"so that each trains on an equal share of every batch; got "
                f"{_setting(n, 'batch_size', self.batch_size)} with {_setting(n, 'world_size', self.world_size)}"
            )
        if self.checkpoint_every is not None and not self.checkpoint_dir:
            raise ValueError(
                f"{n('checkpoint_every')} needs {n('checkpoint_dir')}, got "
                f"{_setting(n, 'checkpoint_every', self.checkpoint_every)} without a checkpoint folder"
            )
        if self.name is not None and not self.name.strip():
            raise ValueError(f"{n('name')} must be a non-empty str or None, got {self.name!r}")
        self._validate_method(n)
        if self.method == "er":
            self._validate_replay_options(n)
            self._validate_selection(n)
        self._validate_device(n)
        return self

    def _validate_model_options(self, n: Callable[[str], str]) -> None:
        image = BENCHMARKS[self.benchmark].image
        if self.model in IMAGE_MODELS and not image:
            raise ValueError(
                f"{n('model')} {self.model!r} needs an image benchmark ({', '.join(IMAGE_BENCHMARKS)}), "
                f"got {n('benchmark')} {self.benchmark!r}, whose samples are flat vectors"
            )
        takers = MODELS.taking("width")
        if self.width is not None and self.model not in takers:
            raise ValueError(f"{n('width')} applies to models {', '.join(takers)}, got "
                             f"{_setting(n, 'width', self.width)} with {n('model')} {self.model!r} "
                             f"(use {n('hidden')})")
        if self.init != INIT.default and self.model not in MODELS.taking("init"):
            raise ValueError(f"{n('init')} applies to {n('model')} 'mlp', got "
                             f"{_setting(n, 'init', self.init)} with {n('model')} {self.model!r}")
        if self.channels_last and not MODELS[self.model].image:
            raise ValueError(f"{n('channels_last')} applies to image models ({', '.join(IMAGE_MODELS)}), "
                             f"got {_setting(n, 'channels_last', True)} with {n('model')} {self.model!r}")
        if self.augment and not image:
            raise ValueError(f"{n('augment')} needs an image benchmark ({', '.join(IMAGE_BENCHMARKS)}), "
                             f"got {n('benchmark')} {self.benchmark!r}")

    def _validate_stream_options(self, n: Callable[[str], str]) -> None:
        """``class_order`` and ``blurry`` are options of the class-incremental benchmarks."""
        takers = BENCHMARKS.taking("class_order")
        for name, unset in (("class_order", (None, "seeded")), ("blurry", (0.0,))):
            if getattr(self, name) not in unset and self.benchmark not in takers:
                raise ValueError(f"{n(name)} applies to the class-incremental benchmarks ({', '.join(takers)}), "
                                 f"got {_setting(n, name, getattr(self, name))} with {n('benchmark')} "
                                 f"{self.benchmark!r}, whose experiences all hold every class")
        try:
            parse_class_order(self.class_order)
        except ValueError as err:
            raise renamed(err, {"class_order": n("class_order")}) from None

    @property
    def augments(self) -> bool:
        """Whether training batches are augmented (``augment``, or by default on the
        CIFAR benchmarks only)."""
        if self.augment is None:
            return self.benchmark in ("split_cifar10", "split_cifar100")
        return self.augment

    def _validate_method(self, n: Callable[[str], str]) -> None:
        """The method exists, its options are its own and in range (filled in with its
        defaults), and it is not given the options only ER takes."""
        method = get_method(self.method)
        self.method_options = resolve_method_options(self.method, self.method_options)
        if self.method == "er":
            return
        if not self.replay:
            raise ValueError(f"{_setting(n, 'replay', False)} is the naive baseline of "
                             f"{n('method')} er, got it with {n('method')} {self.method}")
        given = [name for name, unset in _ER_ONLY if getattr(self, name) not in unset]
        given += [name for name in ("batch_size_mem", "memmap_dir")
                  if getattr(self, name) is not None and name not in method.replay_options]
        if given:
            name = given[0]
            raise ValueError(f"{n(name)} does not apply to {n('method')} {self.method}, got "
                             f"{_setting(n, name, getattr(self, name))} ({self.method} keeps its own "
                             f"memory; the replay options are {n('method')} er's)")

    def _validate_replay_options(self, n: Callable[[str], str]) -> None:
        if not self.replay:
            self._refuse_replay_options(n)
        if self.policy is None:
            self.policy = "reservoir" if self.online else "experience"
        if self.online and self.task_balanced:
            raise ValueError(f"{n('task_balanced')} applies to offline replay, got "
                             f"{_setting(n, 'task_balanced', True)} with {_setting(n, 'online', True)}")
        for name in ("groupby", "memmap_dir"):
            if getattr(self, name) is not None and name not in POLICY_OPTIONS.get(self.policy, ()):
                takers = sorted(p for p, keys in POLICY_OPTIONS.items() if name in keys)
                raise ValueError(
                    f"{n(name)} needs {n('policy')} {' or '.join(repr(p) for p in takers)}, "
                    f"got {_setting(n, name, getattr(self, name))} with {n('policy')} {self.policy!r}"
                )

    def _refuse_replay_options(self, n: Callable[[str], str]) -> None:
        if self.online:  # kept first: the message callers know
            raise ValueError(f"{n('online')} must be False without replay, got "
                             f"{_setting(n, 'online', True)} with {_setting(n, 'replay', False)}")
        defaults = RunConfig()
        if self.policy not in (None, defaults.policy):
            raise ValueError(f"{n('policy')} needs replay, got {_setting(n, 'policy', self.policy)} "
                             f"with {_setting(n, 'replay', False)} (no memory to fill)")
        for name in _REPLAY_ONLY:
            if getattr(self, name) != getattr(defaults, name):
                raise ValueError(f"{n(name)} needs replay, got {_setting(n, name, getattr(self, name))} "
                                 f"with {_setting(n, 'replay', False)} (no memory to fill)")

    def _validate_selection(self, n: Callable[[str], str]) -> None:
        # "random" is what the other policies do anyway; any other selection would be ignored.
        if self.selection != "random" and self.policy not in POLICIES_WITH_SELECTION:
            takers = " or ".join(repr(p) for p in sorted(POLICIES_WITH_SELECTION))
            raise ValueError(
                f"{n('selection')} {self.selection!r} needs {n('policy')} {takers} (the "
                f"{self.policy!r} policy keeps a random subset and would ignore it), got "
                f"{n('policy')} {self.policy!r}"
            )

    def _validate_device(self, n: Callable[[str], str]) -> None:
        try:
            device = torch.device(self.device)
        except (RuntimeError, TypeError) as err:
            raise ValueError(f"{n('device')} must name a torch device, got {self.device!r}") from err
        if device_available(device):
            return
        if device.type == "cuda" and torch.version.cuda is None:
            why = "this torch build has no CUDA support (a CPU-only build)"
        elif device.type == "cuda" and torch.cuda.is_available():
            why = f"this machine has {torch.cuda.device_count()} CUDA device(s)"
        else:
            why = f"torch finds no {device.type} device on this machine"
        raise ValueError(f"{n('device')} must name a device available here, got {self.device!r}: "
                         f"{why}; use 'cpu'")


def _setting(n: Callable[[str], str], field_name: str, value) -> str:
    """A setting as its user wrote it: ``online=True`` in Python, ``--online`` (or
    ``--no-replay``, ``--policy 'class'``) on the command line."""
    flag = n(field_name)
    if not flag.startswith("--"):
        return f"{field_name}={value!r}"
    if isinstance(value, bool):
        if flag.startswith("--no-"):
            return flag if not value else f"not {flag}"
        return flag if value else f"--no-{flag[2:]}"
    return f"{flag} {value!r}"


def _namer(names: Optional[Mapping[str, str]]) -> Callable[[str], str]:
    names = dict(names or {})
    return lambda field_name: names.get(field_name, field_name)


def renamed(err: Exception, names: Optional[Mapping[str, str]]) -> Exception:
    """``err`` with a leading field name (``n_experiences must ...``) replaced by its
    name in ``names``, for errors raised below the main job (benchmarks, policies)."""
    if not names:
        return err
    text = str(err)
    head, _, rest = text.partition(" ")
    if head in names and rest:
        return type(err)(f"{names[head]} {rest}")
    return err

