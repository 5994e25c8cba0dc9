"""The main job: train a model with replay on a benchmark and report its accuracies."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, List, Optional

import torch

from clreplay._validation import (
    check_choice,
    check_int,
    check_positive_float,
    check_positive_int,
    check_seed,
)
from clreplay.benchmarks.experience import Benchmark
from clreplay.benchmarks.registry import get_benchmark, list_benchmarks, needs_data_path
from clreplay.evaluation.evaluator import EvaluationPlugin
from clreplay.models import feature_layer_name, make_mlp
from clreplay.replay.plugin import ReplayPlugin
from clreplay.replay.registry import (
    POLICIES_WITH_SELECTION,
    list_policies,
    list_selections,
    make_selection_strategy,
    make_storage_policy,
)
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
    policy: str = "experience"
    selection: str = "random"
    seed: int = 0
    device: str = "cpu"
    output: Optional[str] = None
    checkpoint_dir: Optional[str] = None

    def validate(self) -> "RunConfig":
        check_choice("benchmark", self.benchmark, list_benchmarks())
        if needs_data_path(self.benchmark) and not self.data:
            raise ValueError(f"data must name a file or folder for benchmark {self.benchmark!r}, got None")
        check_positive_int("n_experiences", self.n_experiences)
        check_int("epochs", self.epochs, minimum=0)
        check_positive_int("batch_size", self.batch_size)
        check_positive_float("lr", self.lr)
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must lie in [0, 1), got {self.momentum!r}")
        for h in self.hidden:
            check_positive_int("hidden", h)
        check_positive_int("mem_size", self.mem_size)
        check_choice("policy", self.policy, list_policies())
        check_choice("selection", self.selection, list_selections())
        check_seed("seed", self.seed)
        try:
            torch.device(self.device)
        except (RuntimeError, TypeError) as err:
            raise ValueError(f"device must name a torch device, got {self.device!r}") from err
        return self


def build_benchmark(config: RunConfig) -> Benchmark:
    args = (config.data,) if needs_data_path(config.benchmark) else ()
    return get_benchmark(config.benchmark, *args, n_experiences=config.n_experiences, seed=config.seed)


def build_replay_plugin(config: RunConfig, model: torch.nn.Module) -> ReplayPlugin:
    selection = None
    if config.policy in POLICIES_WITH_SELECTION:
        selection = make_selection_strategy(
            config.selection, model=model, layer_name=feature_layer_name(model)
        )
    policy = make_storage_policy(config.policy, config.mem_size, selection=selection)
    return ReplayPlugin(config.mem_size, policy)


def build_strategy(config: RunConfig, benchmark: Benchmark) -> BaseStrategy:
    model = make_mlp(benchmark.n_features, benchmark.n_classes, config.hidden, seed=config.seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum)
    plugins = [build_replay_plugin(config, model)] if config.replay else []
    return Naive(
        model,
        optimizer,
        train_mb_size=config.batch_size,
        train_epochs=config.epochs,
        eval_mb_size=max(256, config.batch_size),
        device=config.device,
        plugins=plugins,
        evaluator=EvaluationPlugin(benchmark.test_stream),
        seed=config.seed,
    )


def format_matrix(matrix: List[List[float]]) -> str:
    """The accuracy matrix as a text table (rows: after training on; columns: tested on)."""
    n = len(matrix[0]) if matrix else 0
    lines = ["after \\ on " + "".join(f"{j:>8}" for j in range(n)) + "     avg"]
    for i, row in enumerate(matrix):
        avg = sum(row[: i + 1]) / (i + 1)
        lines.append(f"{i:>10} " + "".join(f"{a:8.3f}" for a in row) + f"{avg:8.3f}")
    return "\n".join(lines)


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
    matrix = strategy.evaluator.accuracy_matrix
    started = time.perf_counter()
    for experience in benchmark.train_stream:
        t0 = time.perf_counter()
        strategy.train(experience)
        row = matrix[-1]
        seen = row[: experience.current_experience + 1]
        log(
            f"experience {experience.current_experience + 1}/{benchmark.n_experiences} "
            f"classes {experience.classes_in_this_experience}: "
            f"accuracy on seen {sum(seen) / len(seen):.3f} ({time.perf_counter() - t0:.1f}s)"
        )
    final = matrix[-1]
    results = {
        "config": asdict(config),
        "accuracy_matrix": matrix,
        "average_accuracy": sum(final) / len(final),
        "timing": {"total_s": time.perf_counter() - started},
    }
    log("\n" + format_matrix(matrix))
    log(f"\nfinal average accuracy: {results['average_accuracy']:.4f}")
    if config.output:
        out = Path(config.output)
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(results, indent=2))
        log(f"results written to {out / 'results.json'}")
    return results
