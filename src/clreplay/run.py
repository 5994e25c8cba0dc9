"""The main job: train a model with replay on a benchmark and report its accuracies."""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, List, Optional

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
from clreplay.evaluation.metrics import accuracy_on_seen
from clreplay.evaluation.plots import render_plots
from clreplay.evaluation.reports import format_experience_stats, format_metrics
from clreplay.evaluation.reports import format_matrix as _format_matrix
from clreplay.evaluation.results import FORMAT_VERSION, write_results
from clreplay.models import feature_layer_name, make_mlp
from clreplay.replay.online import OnlineReplayPlugin
from clreplay.replay.parametric import GROUPBY
from clreplay.replay.plugin import ReplayPlugin
from clreplay.replay.registry import (
    POLICIES_WITH_SELECTION,
    POLICY_OPTIONS,
    list_policies,
    list_selections,
    make_selection_strategy,
    make_storage_policy,
)
from clreplay.training.guards import NonFiniteLossGuard
from clreplay.training.strategy import BaseStrategy, Naive


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
    mem_size: int = 200
    policy: Optional[str] = "experience"  # None: reservoir when online, else experience
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
        self._validate_replay_options()
        check_choice("policy", self.policy, list_policies())
        check_choice("selection", self.selection, list_selections())
        check_seed("seed", self.seed)
        try:
            torch.device(self.device)
        except (RuntimeError, TypeError) as err:
            raise ValueError(f"device must name a torch device, got {self.device!r}") from err
        return self

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


def build_replay_plugin(config: RunConfig, model: torch.nn.Module) -> ReplayPlugin | OnlineReplayPlugin:
    selection = None
    if config.policy in POLICIES_WITH_SELECTION:
        selection = make_selection_strategy(
            config.selection, model=model, layer_name=feature_layer_name(model)
        )
    policy = make_storage_policy(config.policy, config.mem_size, selection=selection,
                                 groupby=config.groupby, memmap_dir=config.memmap_dir)
    if config.online:
        return OnlineReplayPlugin(config.mem_size, policy, batch_size_mem=config.batch_size_mem)
    return ReplayPlugin(config.mem_size, policy, batch_size_mem=config.batch_size_mem,
                        task_balanced=config.task_balanced)


def build_strategy(config: RunConfig, benchmark: Benchmark, *,
                   append_logs: Optional[bool] = None) -> BaseStrategy:
    """The run's strategy: MLP, SGD, replay plugin, guard and evaluator with its loggers.

    ``append_logs`` continues the log files in ``config.output`` (a resumed run); None
    appends when ``config.checkpoint_dir`` holds a checkpoint.
    """
    model = make_mlp(benchmark.n_features, benchmark.n_classes, config.hidden, seed=config.seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum)
    plugins = [build_replay_plugin(config, model)] if config.replay else []
    # Always on, before the evaluator: a NaN loss stops the run instead of ending it at chance.
    plugins.append(NonFiniteLossGuard())
    if append_logs is None:
        # A run resumed from a checkpoint continues its logs instead of truncating them.
        append_logs = bool(config.checkpoint_dir) and checkpoint_path(config.checkpoint_dir).exists()
    loggers = default_loggers(config.output, append=append_logs)
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


def format_matrix(matrix: List[List[float]]) -> str:
    """The accuracy matrix as a text table (rows: after training on; columns: tested on).

    Kept here for callers of ``clreplay.run``; see :func:`clreplay.evaluation.format_matrix`.
    """
    return _format_matrix(matrix)


def run_experiment(config: RunConfig, *, log: Callable[[str], None] = print) -> dict:
    """Train on every experience of the benchmark, evaluating the whole test stream after each.

    Returns the results: the configuration, the accuracy matrix ``R[i][j]`` (accuracy
    on experience ``j`` after training on experience ``i``), the final average
    accuracy and timings. Writes ``results.json`` into ``config.output`` if set.
    """
    config.validate()
    benchmark = build_benchmark(config)
    strategy = build_strategy(config, benchmark)
    log(
        f"clreplay: {benchmark.name}, {benchmark.n_experiences} experiences, "
        f"{'replay mem_size=' + str(config.mem_size) + ' policy=' + config.policy if config.replay else 'no replay'}, "
        f"seed={config.seed}"
    )
    if benchmark.original_labels is not None:
        log(f"labels mapped to 0..{benchmark.n_classes - 1}: class c is label "
            f"original_labels[c] of the data, {benchmark.original_labels}")
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
        seen = accuracy_on_seen(matrix)[-1]  # None: no test sample among the seen experiences
        log(
            f"experience {experience.current_experience + 1}/{benchmark.n_experiences} "
            f"classes {experience.classes_in_this_experience}: "
            f"accuracy on seen {'n/a' if seen is None else format(seen, '.3f')}, "
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
            # original_labels[c]: class c's label in the data, when the loader remapped them.
            "original_labels": benchmark.original_labels,
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
