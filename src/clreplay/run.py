"""The main job: train a model with replay on a benchmark and report its accuracies."""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional

import torch

from clreplay._validation import (
    check_choice,
    check_int,
    check_optional_positive_int,
    check_positive_float,
    check_positive_int,
    check_seed,
)
from clreplay.benchmarks.experience import Benchmark
from clreplay.benchmarks.registry import get_benchmark, list_benchmarks, needs_data_path
from clreplay.checkpoint import checkpoint_path, resume_if_saved, save_checkpoint
from clreplay.evaluation.evaluator import EvaluationPlugin
from clreplay.evaluation.loggers import default_loggers
from clreplay.evaluation.plots import render_plots
from clreplay.evaluation.reports import format_experience_stats, format_matrix, format_metrics
from clreplay.evaluation.results import FORMAT_VERSION, write_results
from clreplay.models import make_mlp
from clreplay.replay.policies.parametric import GROUPBY
from clreplay.replay.registry import POLICY_OPTIONS, list_policies, list_selections
from clreplay.strategies.er import build_replay_plugin  # noqa: F401  (the ER method's plugin)
from clreplay.strategies.registry import get_method, list_methods
from clreplay.training.strategy import BaseStrategy, Naive

#: Replay options of ER alone, with the values that mean "not given" (flag, field, unset).
_ER_ONLY = (("--policy", "policy", (None, "experience")), ("--selection", "selection", ("random",)),
            ("--groupby", "groupby", (None,)), ("--online", "online", (False,)),
            ("--task-balanced", "task_balanced", (False,)))


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
    # Replay beyond the seed API: parametric grouping, online replay, batch options, memmap.
    groupby: Optional[str] = None  # parametric policy: None (one group), class, experience, task
    online: bool = False  # OnlineReplayPlugin: memory updated from every mini-batch
    batch_size_mem: Optional[int] = None
    task_balanced: bool = False
    memmap_dir: Optional[str] = None  # keep the memory in memory-mapped files there

    def validate(self) -> "RunConfig":
        check_choice("benchmark", self.benchmark, list_benchmarks())
        if needs_data_path(self.benchmark) and not self.data:
            raise ValueError(f"data must name a file or folder for benchmark {self.benchmark!r}, got None")
        check_positive_int("n_experiences", self.n_experiences)
        check_int("epochs", self.epochs, minimum=0)
        check_positive_int("batch_size", self.batch_size)
        check_positive_float("lr", self.lr)
        if not isinstance(self.momentum, (int, float)) or isinstance(self.momentum, bool):
            raise TypeError(f"momentum must be a number in [0, 1), got {self.momentum!r}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must lie in [0, 1), got {self.momentum!r}")
        if not isinstance(self.hidden, (list, tuple)):
            raise TypeError(f"hidden must be a list of layer sizes, got {self.hidden!r}")
        for h in self.hidden:
            check_positive_int("hidden", h)
        if not isinstance(self.replay, bool):
            raise TypeError(f"replay must be a bool, got {self.replay!r}")
        for name in ("data", "output", "checkpoint_dir"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, (str, os.PathLike)):
                raise TypeError(f"{name} must be a path or None, got {value!r}")
        check_positive_int("mem_size", self.mem_size)
        self._validate_method()
        if self.method == "er":
            self._validate_replay_options()
            check_choice("policy", self.policy, list_policies())
            check_choice("selection", self.selection, list_selections())
        check_seed("seed", self.seed)
        try:
            torch.device(self.device)
        except (RuntimeError, TypeError) as err:
            raise ValueError(f"device must name a torch device, got {self.device!r}") from err
        return self

    def _validate_method(self) -> None:
        """The method exists, its options are its own and in range (filled in with its
        defaults), and it is not given options only ER takes; errors name the flags."""
        check_choice("method", self.method, list_methods())
        method = get_method(self.method)
        self.method_options = method.resolve(self.method_options)
        if self.method == "er":
            return
        if not self.replay:
            raise ValueError(f"--no-replay is the naive baseline of --method er, got it with --method {self.method}")
        given = [(flag, getattr(self, name)) for flag, name, unset in _ER_ONLY if getattr(self, name) not in unset]
        given += [("--" + name.replace("_", "-"), getattr(self, name)) for name in ("batch_size_mem", "memmap_dir")
                  if getattr(self, name) is not None and name not in method.replay_options]
        if given:
            flag, value = given[0]
            shown = flag if value is True else f"{flag} {value!r}"
            raise ValueError(f"{flag} does not apply to --method {self.method}, got {shown}")
        check_optional_positive_int("batch_size_mem", self.batch_size_mem)
        if self.memmap_dir is not None and not isinstance(self.memmap_dir, (str, os.PathLike)):
            raise TypeError(f"memmap_dir must be a path or None, got {self.memmap_dir!r}")

    def _validate_replay_options(self) -> None:
        for name in ("online", "task_balanced"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool, got {getattr(self, name)!r}")
        if self.policy is None:
            self.policy = "reservoir" if self.online else "experience"
        check_optional_positive_int("batch_size_mem", self.batch_size_mem)
        if self.online and not self.replay:
            raise ValueError("online must be False without replay, got online=True with replay=False")
        if self.online and self.task_balanced:
            raise ValueError("task_balanced applies to offline replay, got task_balanced=True with online=True")
        if self.groupby is not None:
            check_choice("groupby", self.groupby, [g for g in GROUPBY if g is not None])
        if self.memmap_dir is not None and not isinstance(self.memmap_dir, (str, os.PathLike)):
            raise TypeError(f"memmap_dir must be a path or None, got {self.memmap_dir!r}")
        for name in ("groupby", "memmap_dir"):
            if getattr(self, name) is not None and name not in POLICY_OPTIONS.get(self.policy, ()):
                takers = sorted(p for p, keys in POLICY_OPTIONS.items() if name in keys)
                raise ValueError(
                    f"{name} needs policy {' or '.join(repr(p) for p in takers)}, "
                    f"got {name}={getattr(self, name)!r} with policy {self.policy!r}"
                )


def build_benchmark(config: RunConfig) -> Benchmark:
    args = (config.data,) if needs_data_path(config.benchmark) else ()
    return get_benchmark(config.benchmark, *args, n_experiences=config.n_experiences, seed=config.seed)


def build_strategy(config: RunConfig, benchmark: Benchmark) -> BaseStrategy:
    model = make_mlp(benchmark.n_features, benchmark.n_classes, config.hidden, seed=config.seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum)
    plugins = get_method(config.method).build(config, model) if config.replay else []
    # A run resumed from a checkpoint continues its logs instead of truncating them.
    resuming = bool(config.checkpoint_dir) and checkpoint_path(config.checkpoint_dir).exists()
    loggers = default_loggers(config.output, append=resuming)
    return Naive(
        model,
        optimizer,
        train_mb_size=config.batch_size,
        train_epochs=config.epochs,
        eval_mb_size=max(256, config.batch_size),
        device=config.device,
        plugins=plugins,
        evaluator=EvaluationPlugin(benchmark.test_stream, loggers=loggers),
        seed=config.seed,
    )


def run_experiment(config: RunConfig, *, log: Callable[[str], None] = print) -> dict:
    """Train on every experience of the benchmark, evaluating the whole test stream after each.

    Returns the results: the configuration, the accuracy matrix ``R[i][j]`` (accuracy
    on experience ``j`` after training on experience ``i``), the final average
    accuracy and timings. Writes ``results.json`` into ``config.output`` if set.
    """
    config.validate()
    benchmark = build_benchmark(config)
    strategy = build_strategy(config, benchmark)
    if not config.replay:
        what = "no replay"
    elif config.method == "er":
        what = f"replay mem_size={config.mem_size} policy={config.policy}"
    else:
        what = f"{get_method(config.method).describe(config.method_options)} mem_size={config.mem_size}"
    log(f"clreplay: {benchmark.name}, {benchmark.n_experiences} experiences, {what}, seed={config.seed}")
    # Before reading the evaluator: loading replaces its history with the saved one.
    start = resume_if_saved(strategy, config.checkpoint_dir, config=config)
    if start:
        log(
            f"resumed from {checkpoint_path(config.checkpoint_dir)}: "
            f"{start} of {benchmark.n_experiences} experiences already trained"
        )
    evaluator = strategy.evaluator
    evaluator.emit("run_start", {"benchmark": benchmark.name, "n_experiences": benchmark.n_experiences,
                                 "start": start, "config": asdict(config)})
    matrix = strategy.evaluator.accuracy_matrix
    started = time.perf_counter()
    for experience in benchmark.train_stream[start:]:
        t0 = time.perf_counter()
        strategy.train(experience)
        if config.checkpoint_dir:
            save_checkpoint(strategy, checkpoint_path(config.checkpoint_dir), config=config)
        row = matrix[-1]
        seen = row[: experience.current_experience + 1]
        log(
            f"experience {experience.current_experience + 1}/{benchmark.n_experiences} "
            f"classes {experience.classes_in_this_experience}: "
            f"accuracy on seen {sum(seen) / len(seen):.3f}, "
            f"{format_experience_stats(evaluator.last_record)} ({time.perf_counter() - t0:.1f}s)"
        )
    results = {
        "format_version": FORMAT_VERSION,
        "config": asdict(config),
        "benchmark": {
            "name": benchmark.name,
            "n_experiences": benchmark.n_experiences,
            "class_order": list(benchmark.class_order),
            "classes": [list(e.classes_in_this_experience) for e in benchmark.train_stream],
        },
        **evaluator.report(),
    }
    # Wall time of this session's loop (a resumed run counts from the resume).
    results["timing"]["total_s"] = time.perf_counter() - started
    metrics = ("average_accuracy", "average_incremental_accuracy", "forgetting",
               "backward_transfer", "forward_transfer")
    evaluator.emit("run_end", {**{key: results[key] for key in metrics},
                               "total_s": results["timing"]["total_s"]})
    evaluator.close()
    log("\n" + format_matrix(matrix))
    log("\n" + format_metrics(results))
    if config.output:
        path = write_results(results, config.output)
        plots = render_plots(results, config.output)
        log(f"results written to {path}; plots: {', '.join(p.name for p in plots)}")
    return results
