"""RunConfig: everything that defines a run of the main job, and its checks.

Every check runs before the first training step. Errors name the setting the
way its user wrote it: the field (``mem_size``) from Python, the flag
(``--mem-size``) from the command line, which passes its ``names``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional

import torch

from clreplay._validation import (
    check_choice,
    check_int,
    check_optional_positive_int,
    check_positive_float,
    check_positive_int,
    check_seed,
    device_available,
)
from clreplay.benchmarks.registry import IMAGE_BENCHMARKS, list_benchmarks, needs_data_path
from clreplay.models import IMAGE_MODELS, INITS, list_models
from clreplay.replay.policies.parametric import GROUPBY
from clreplay.replay.registry import (
    POLICIES_WITH_SELECTION,
    POLICY_OPTIONS,
    list_policies,
    list_selections,
)

#: Replay options of ER alone, with the values that mean "not given" (field, unset values):
#: the other methods bring their own memory and would ignore them.
_ER_ONLY = (("policy", (None, "experience")), ("selection", ("random",)), ("groupby", (None,)),
            ("online", (False,)), ("task_balanced", (False,)))

#: Replay options refused with ``replay=False`` when set (they would be silently ignored).
_REPLAY_ONLY = ("selection", "groupby", "online", "batch_size_mem", "task_balanced", "memmap_dir")


@dataclass
class RunConfig:
    """Everything that defines a run (saved with its results and checkpoints)."""

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

    def validate(self, *, names: Optional[Mapping[str, str]] = None) -> "RunConfig":
        """Check every field (and resolve ``policy=None``); return ``self``.

        ``names`` maps a field to how the user wrote it (``{"mem_size": "--mem-size"}``)
        so that errors name that instead of the field.
        """
        n = _namer(names)
        check_choice(n("benchmark"), self.benchmark, list_benchmarks())
        self._validate_model_options(n)
        if needs_data_path(self.benchmark) and not self.data:
            raise ValueError(f"{n('data')} must name a file or folder for {n('benchmark')} "
                             f"{self.benchmark!r}, got None")
        check_positive_int(n("n_experiences"), self.n_experiences)
        check_int(n("epochs"), self.epochs, minimum=0)
        check_positive_int(n("batch_size"), self.batch_size)
        check_positive_int(n("world_size"), self.world_size)
        if self.batch_size % self.world_size:
            raise ValueError(
                f"{n('batch_size')} must be a multiple of {n('world_size')}, the number of processes, "
                f"so that each trains on an equal share of every batch; got "
                f"{_setting(n, 'batch_size', self.batch_size)} with {_setting(n, 'world_size', self.world_size)}"
            )
        check_positive_float(n("lr"), self.lr)
        if not isinstance(self.momentum, (int, float)) or isinstance(self.momentum, bool):
            raise TypeError(f"{n('momentum')} must be a number in [0, 1), got {self.momentum!r}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"{n('momentum')} must lie in [0, 1), got {self.momentum!r}")
        if not isinstance(self.hidden, (list, tuple)):
            raise TypeError(f"{n('hidden')} must be a list of layer sizes, got {self.hidden!r}")
        for h in self.hidden:
            check_positive_int(n("hidden"), h)
        for name in ("replay", "overwrite"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{n(name)} must be a bool, got {getattr(self, name)!r}")
        check_optional_positive_int(n("checkpoint_every"), self.checkpoint_every)
        if self.checkpoint_every is not None and not self.checkpoint_dir:
            raise ValueError(
                f"{n('checkpoint_every')} needs {n('checkpoint_dir')}, got "
                f"{_setting(n, 'checkpoint_every', self.checkpoint_every)} without a checkpoint folder"
            )
        for name in ("data", "output", "checkpoint_dir"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, (str, os.PathLike)):
                raise TypeError(f"{n(name)} must be a path or None, got {value!r}")
        if self.name is not None and (not isinstance(self.name, str) or not self.name.strip()):
            raise ValueError(f"{n('name')} must be a non-empty str or None, got {self.name!r}")
        check_positive_int(n("mem_size"), self.mem_size)
        self._validate_method(n)
        if self.method == "er":
            self._validate_replay_options(n)
            check_choice(n("policy"), self.policy, list_policies())
            check_choice(n("selection"), self.selection, list_selections())
            self._validate_selection(n)
        check_seed(n("seed"), self.seed)
        self._validate_device(n)
        return self

    def _validate_model_options(self, n: Callable[[str], str]) -> None:
        check_choice(n("model"), self.model, list_models())
        image = self.benchmark in IMAGE_BENCHMARKS
        if self.model in IMAGE_MODELS and not image:
            raise ValueError(
                f"{n('model')} {self.model!r} needs an image benchmark ({', '.join(IMAGE_BENCHMARKS)}), "
                f"got {n('benchmark')} {self.benchmark!r}, whose samples are flat vectors"
            )
        if self.width is not None:
            check_positive_int(n("width"), self.width)
            if self.model not in IMAGE_MODELS:
                raise ValueError(f"{n('width')} applies to models {', '.join(IMAGE_MODELS)}, got "
                                 f"{_setting(n, 'width', self.width)} with {n('model')} {self.model!r} "
                                 f"(use {n('hidden')})")
        check_choice(n("init"), self.init, list(INITS))
        if self.init != "default" and self.model != "mlp":
            raise ValueError(f"{n('init')} applies to {n('model')} 'mlp', got "
                             f"{_setting(n, 'init', self.init)} with {n('model')} {self.model!r}")
        if self.augment is not None and not isinstance(self.augment, bool):
            raise TypeError(f"{n('augment')} must be a bool or None, got {self.augment!r}")
        if self.augment and not image:
            raise ValueError(f"{n('augment')} needs an image benchmark ({', '.join(IMAGE_BENCHMARKS)}), "
                             f"got {n('benchmark')} {self.benchmark!r}")

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
        from clreplay.strategies.registry import (  # strategies import the replay
            get_method,
            list_methods,
        )

        check_choice(n("method"), self.method, list_methods())
        method = get_method(self.method)
        self.method_options = method.resolve(self.method_options)
        if self.method == "er":
            return
        if self.world_size > 1:
            raise ValueError(f"{n('method')} {self.method} runs in one process (distributed training "
                             f"supports {n('method')} er), got {_setting(n, 'world_size', self.world_size)}")
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
        check_optional_positive_int(n("batch_size_mem"), self.batch_size_mem)
        if self.memmap_dir is not None and not isinstance(self.memmap_dir, (str, os.PathLike)):
            raise TypeError(f"{n('memmap_dir')} must be a path or None, got {self.memmap_dir!r}")

    def _validate_replay_options(self, n: Callable[[str], str]) -> None:
        for name in ("online", "task_balanced"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{n(name)} must be a bool, got {getattr(self, name)!r}")
        if not self.replay:
            self._refuse_replay_options(n)
        if self.policy is None:
            self.policy = "reservoir" if self.online else "experience"
        check_optional_positive_int(n("batch_size_mem"), self.batch_size_mem)
        if self.online and self.task_balanced:
            raise ValueError(f"{n('task_balanced')} applies to offline replay, got "
                             f"{_setting(n, 'task_balanced', True)} with {_setting(n, 'online', True)}")
        if self.groupby is not None:
            check_choice(n("groupby"), self.groupby, [g for g in GROUPBY if g is not None])
        if self.memmap_dir is not None and not isinstance(self.memmap_dir, (str, os.PathLike)):
            raise TypeError(f"{n('memmap_dir')} must be a path or None, got {self.memmap_dir!r}")
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

