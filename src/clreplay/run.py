"""The main job: train a model with replay on a benchmark and report its accuracies.

Every check comes before the first step: the configuration, the folders (a flag
naming a file or a folder that cannot be written), the data, the checkpoint. The
checkpoint folder and the output folder are locked for the run's lifetime, so a
second run into either fails at once naming the first one's PID. A resumed run
cuts its logs back to what its checkpoint covers; a fresh run refuses an output
folder holding an earlier run's files unless told to overwrite them.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import asdict, replace
from typing import Callable, Mapping, Optional

import torch

from clreplay import distributed as idist
from clreplay._validation import check_positive_int
from clreplay.benchmarks.registry import (
    BENCHMARKS,
    data_path_usage,
    get_benchmark,
    needs_data_path,
    parse_class_order,
)
from clreplay.checkpoint import (
    CheckpointEvery,
    check_checkpoint,
    checkpoint_path,
    read_checkpoint,
    remove_stale_temporaries,
    restore_checkpoint,
    save_checkpoint,
)
from clreplay.data.augment import standard_augmentation
from clreplay.data.experience import Benchmark
from clreplay.evaluation.anytime import AnytimeEvaluation
from clreplay.evaluation.evaluator import EvaluationPlugin
from clreplay.evaluation.loggers import default_loggers
from clreplay.evaluation.metrics import accuracy_on_seen
from clreplay.evaluation.plots import render_plots
from clreplay.evaluation.reports import format_experience_stats, format_matrix, format_metrics
from clreplay.evaluation.results import FORMAT_VERSION, write_results
from clreplay.launch import LaunchError, LaunchInterrupted, launch
from clreplay.locking import FolderLockedError, lock_folder
from clreplay.models import make_model
from clreplay.run_config import RunConfig, renamed
from clreplay.strategies.er import build_replay_plugin
from clreplay.strategies.registry import get_method
from clreplay.training.augmentation import AugmentationPlugin
from clreplay.training.guards import NonFiniteLossError, NonFiniteLossGuard
from clreplay.training.strategy import BaseStrategy, Naive
from clreplay.workspace import check_folder, log_sizes, prepare_output
from clreplay.write_failures import RunWriteError, closing_after, describe_write_failure

__all__ = ["RunConfig", "RunInterrupted", "build_benchmark", "build_replay_plugin",
           "build_strategy", "format_matrix", "launch_experiment", "run_experiment"]

class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM, see :mod:`clreplay.signals`) during a run; ``message`` says
    what was saved and how to resume, ``exit_status`` is the command's (130, or 143)."""

    def __init__(self, message: str, exit_status: int = 130) -> None:
        super().__init__(message)
        self.message, self.exit_status = message, exit_status


def build_benchmark(config: RunConfig) -> Benchmark:
    """The benchmark of ``config``, named ``config.name`` when set (file-based benchmarks
    are otherwise named after their data)."""
    usage = data_path_usage(config.benchmark)
    args = (config.data,) if usage == "required" or (usage == "optional" and config.data) else ()
    options = {}
    if config.benchmark in BENCHMARKS.taking("class_order"):
        options = {"class_order": parse_class_order(config.class_order), "blurry": config.blurry}
    bench = get_benchmark(config.benchmark, *args, n_experiences=config.n_experiences, seed=config.seed,
                          **options)
    if config.name is not None:
        bench.name = config.name
    return bench


def build_strategy(config: RunConfig, benchmark: Benchmark, *,
                   append_logs: Optional[bool] = None) -> BaseStrategy:
    """The run's strategy: model, SGD, replay plugin, augmentation, guard, periodic
    checkpoints and the evaluator with its loggers.

    ``append_logs`` continues the log files in ``config.output`` (a resumed run); None
    appends when ``config.checkpoint_dir`` holds a checkpoint.
    """
    model = make_model(config.model, benchmark.input_shape or (benchmark.n_features,),
                       benchmark.n_classes, seed=config.seed, hidden=config.hidden,
                       width=config.width, mean=benchmark.mean, std=benchmark.std, init=config.init)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum)
    plugins = get_method(config.method).build(config, model) if config.replay else []
    if config.augments:
        # Crop and flip on the device, current and replayed samples alike.
        plugins.append(AugmentationPlugin(standard_augmentation()))  # the run's "augment" stream
    # Always on, before the evaluator: a NaN loss stops the run instead of ending it at chance.
    plugins.append(NonFiniteLossGuard())
    if config.anytime_every:  # after the method's plugins: each point sees the step's memory update
        plugins.append(AnytimeEvaluation(benchmark.test_stream, config.anytime_every))
    if config.checkpoint_every:
        # After the plugins whose state it saves (the evaluator comes last).
        plugins.append(CheckpointEvery(checkpoint_path(config.checkpoint_dir), config.checkpoint_every,
                                       config=config, metadata=lambda s: _metadata(s, config)))
    if append_logs is None:
        append_logs = bool(config.checkpoint_dir) and checkpoint_path(config.checkpoint_dir).exists()
    # Over several processes rank 0 alone logs; on GPUs each process takes its own.
    loggers = default_loggers(config.output, append=append_logs) if idist.is_main() else []
    device = config.device
    if config.world_size > 1 and torch.device(device).type == "cuda":
        device = f"cuda:{idist.get_local_rank()}"
    return Naive(
        model,
        optimizer,
        train_mb_size=config.batch_size,
        train_epochs=config.epochs,
        eval_mb_size=max(256, config.batch_size),
        device=device,
        plugins=plugins,
        evaluator=EvaluationPlugin(benchmark.test_stream, loggers=loggers),
        seed=config.seed,
        distributed=config.world_size > 1,
        precision=config.precision,
        channels_last=config.channels_last,
        compile=config.compile,
    )


def _check_folders(config: RunConfig, n: Callable[[str], str]) -> None:
    """Every folder flag names a folder this process can write into; data exists."""
    for name in ("checkpoint_dir", "output", "memmap_dir"):
        if getattr(config, name) is not None:
            check_folder(getattr(config, name), n(name))
    if needs_data_path(config.benchmark) and not os.path.exists(config.data):
        raise FileNotFoundError(f"{n('data')} must name an existing file or folder, got {config.data!r}")


def _locks(config: RunConfig, n: Callable[[str], str]) -> contextlib.ExitStack:
    stack = contextlib.ExitStack()
    held = set()
    for name in ("checkpoint_dir", "output"):
        folder = getattr(config, name)
        if folder is not None and os.path.realpath(folder) not in held:
            held.add(os.path.realpath(folder))
            stack.enter_context(lock_folder(folder, what=n(name)))
    return stack


def _build_benchmark(config: RunConfig, names) -> Benchmark:
    try:
        return build_benchmark(config)
    except (ValueError, TypeError, FileNotFoundError) as err:
        # The loaders name their argument (root, path); the run calls it data (--data).
        data = (names or {}).get("data", "data")
        raise renamed(err, {**(names or {}), "root": data, "path": data}) from None
    except OSError as err:  # unreadable data (permissions, I/O): named with the flag
        flag = (names or {}).get("data", "data")
        raise ValueError(f"{flag} {config.data!r}: {err}") from None


def run_experiment(config: RunConfig, *, log: Callable[[str], None] = print,
                   names: Optional[Mapping[str, str]] = None) -> dict:
    """Train on every experience of the benchmark, evaluating the whole test stream after each.

    Returns the results: the configuration, the accuracy matrix ``R[i][j]`` (accuracy
    on experience ``j`` after training on experience ``i``, None where the test
    experience has no sample), the final average accuracy and timings. Writes
    ``results.json`` into ``config.output`` if set. ``names`` maps configuration
    fields to the names errors should use (the command line's flags). Ctrl-C raises
    :class:`RunInterrupted` saying what the checkpoint holds.

    With ``config.world_size > 1`` it runs in each process of an initialized process
    group of that size (``torchrun``, or :func:`launch_experiment`): every rank
    returns the results, rank 0 alone prints, logs and writes files.
    """
    n = lambda field_name: (names or {}).get(field_name, field_name)  # noqa: E731
    config.validate(names=names)
    torch.set_num_threads(config.threads)
    if config.world_size > 1 and idist.get_world_size() != config.world_size:
        raise ValueError(
            f"world_size={config.world_size} needs a process group of {config.world_size} "
            f"processes, got {idist.get_world_size()}: start them with torchrun, "
            "`clreplay run --nproc N` or clreplay.run.launch_experiment"
        )
    if not idist.is_main():
        log = _silent
    _check_folders(config, n)
    # Rank 0 alone holds the folders' locks, prepares --output and writes files.
    with _locks(config, n) if idist.is_main() else contextlib.nullcontext():
        return _run_locked(config, log, names, n)


def _run_locked(config: RunConfig, log, names, n) -> dict:
    benchmark = _build_benchmark(config, names)
    saved_path = checkpoint_path(config.checkpoint_dir) if config.checkpoint_dir else None
    if saved_path is not None:
        remove_stale_temporaries(saved_path)  # of saves killed mid-write
    try:
        payload = read_checkpoint(saved_path) if saved_path is not None and saved_path.exists() else None
    except OSError as err:  # unreadable (permissions, I/O): named with the flag
        if isinstance(err, FileNotFoundError):
            raise
        raise ValueError(f"{n('checkpoint_dir')} {config.checkpoint_dir!r}: {err}") from None
    if payload is not None:  # refused before the output folder is touched
        check_checkpoint(payload, config=config, n_experiences=benchmark.n_experiences,
                         source=str(saved_path))
    append, strategy = False, None
    try:
        if config.output is not None and idist.is_main():
            append = prepare_output(config.output, flag=n("output"), overwrite=config.overwrite,
                                    saved=None if payload is None else payload["metadata"],
                                    overwrite_flag=n("overwrite") + ("=True" if not names else ""))
        if saved_path is not None and payload is None:
            # The untrained state, saved before the loggers create any file: a run killed
            # before its first experience ends resumes here, and the files it left in the
            # output folder are known to be its own (the checkpoint names the folder).
            untrained = build_strategy(replace(config, output=None), benchmark, append_logs=False)
            _save(untrained, saved_path, config, logs={})
            del untrained
        strategy = build_strategy(config, benchmark, append_logs=append)
        with closing_after(strategy.evaluator.close):
            return _train(config, benchmark, strategy, payload, saved_path, log)
    except OSError as err:  # a full disk, a quota, an I/O error: one line saying what to do
        folders = {name: getattr(config, name) for name in ("checkpoint_dir", "output", "memmap_dir")}
        raise RunWriteError(describe_write_failure(err, folders, names=names,
                                                   checkpoint=saved_path)) from err
    except KeyboardInterrupt as err:  # before or after the loop (which says more itself)
        if isinstance(err, RunInterrupted):
            raise
        raise _interrupted_outside_training(err, benchmark, strategy, saved_path) from None


def _interrupted_outside_training(err, benchmark, strategy, saved_path) -> RunInterrupted:
    reason, status = getattr(err, "reason", "interrupted"), getattr(err, "exit_status", 130)
    done = strategy is not None and strategy.clock.train_exp_counter >= benchmark.n_experiences
    when = "after training, while writing the results" if done else "before training started"
    if saved_path is None or not saved_path.exists():
        return RunInterrupted(f"{reason} {when}; nothing was saved (no checkpoint)", status)
    if done:
        return RunInterrupted(f"{reason} {when}; {saved_path} holds the whole run: run the same "
                              "command to write them", status)
    return RunInterrupted(f"{reason} {when}; {saved_path} is as it was: run the same command to "
                          "resume", status)


def _metadata(strategy: BaseStrategy, config: RunConfig, logs: Optional[dict] = None) -> dict:
    """Where the run's log files end (for a resume to cut them; ``logs`` given: those sizes)."""
    if config.output is None:
        return {"output": None, "logs": {}}
    if logs is None:
        strategy.evaluator.flush()
        logs = log_sizes(config.output)
    return {"output": os.path.abspath(config.output), "logs": logs}


def _save(strategy: BaseStrategy, path, config: RunConfig, *, logs: Optional[dict] = None) -> None:
    """Save a checkpoint recording where the run's log files end."""
    save_checkpoint(strategy, path, config=config, metadata=_metadata(strategy, config, logs))


def _train(config, benchmark, strategy, payload, saved_path, log) -> dict:
    if not config.replay:
        replay = "no replay"
    elif config.method == "er":
        replay = f"replay mem_size={config.mem_size} policy={config.policy}"
    else:
        replay = f"{get_method(config.method).describe(config.method_options)} mem_size={config.mem_size}"
    log(f"clreplay: {benchmark.name}, {benchmark.n_experiences} experiences, {replay}, "
        f"model {config.model}{', augmented' if config.augments else ''}, seed={config.seed}")
    if benchmark.original_labels is not None:
        log(f"labels mapped to 0..{benchmark.n_classes - 1}: class c is label "
            f"original_labels[c] of the data, {benchmark.original_labels}")
    start = 0
    if payload is not None:
        # Before reading the evaluator: loading replaces its history with the saved one.
        start = restore_checkpoint(strategy, payload, config=config,
                                   n_experiences=benchmark.n_experiences, source=str(saved_path))
        inside = (f", experience {start + 1} from iteration {strategy.clock.train_exp_iterations + 1}"
                  if strategy.resumes_inside_experience else "")
        log(f"resumed from {saved_path}: {start} of {benchmark.n_experiences} experiences "
            f"already trained{inside}")
    evaluator = strategy.evaluator
    evaluator.emit("run_start", {"benchmark": benchmark.name, "n_experiences": benchmark.n_experiences,
                                 "start": start, "config": asdict(config)})
    started = time.perf_counter()
    done = start
    try:
        for experience in benchmark.train_stream[start:]:
            t0 = time.perf_counter()
            strategy.train(experience)
            if saved_path is not None:
                _save(strategy, saved_path, config)
            done += 1
            # Read from the evaluator each time: resuming inside an experience loads its
            # history again (a list captured before train() would be stale).
            seen = accuracy_on_seen(evaluator.accuracy_matrix)[-1]  # None: no test sample seen
            log(
                f"experience {experience.current_experience + 1}/{benchmark.n_experiences} "
                f"classes {experience.classes_in_this_experience}: "
                f"accuracy on seen {'n/a' if seen is None else format(seen, '.3f')}, "
                f"{format_experience_stats(evaluator.last_record)} ({time.perf_counter() - t0:.1f}s)"
            )
    except KeyboardInterrupt as err:  # Ctrl-C, or SIGTERM (clreplay.signals.Terminated)
        status = getattr(err, "exit_status", 130)
        where = (f"{getattr(err, 'reason', 'interrupted')} during experience {done + 1} of "
                 f"{benchmark.n_experiences}")
        if saved_path is None:
            raise RunInterrupted(f"{where}; nothing was saved (no checkpoint folder)", status) from None
        held = (f"the {done} finished experience(s)" if not config.checkpoint_every else
                f"the run up to its last save (every {config.checkpoint_every} iterations)")
        raise RunInterrupted(f"{where}; {saved_path} holds {held}: "
                             "run the same command to resume", status) from None
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
    for plugin in strategy.plugins:
        if isinstance(plugin, AnytimeEvaluation):
            results.update(plugin.report())
    # Wall time of this session's loop (a resumed run counts from the resume).
    results["timing"]["total_s"] = time.perf_counter() - started
    metrics = ("average_accuracy", "average_incremental_accuracy", "forgetting",
               "backward_transfer", "forward_transfer")
    evaluator.emit("run_end", {**{key: results[key] for key in metrics},
                               "total_s": results["timing"]["total_s"]})
    log("\n" + format_matrix(results["accuracy_matrix"]))
    log("\n" + format_metrics(results))
    if config.output and idist.is_main():
        evaluator.close()  # complete log files before results.json says the run is done
        path = write_results(results, config.output)
        plots = render_plots(results, config.output)
        log(f"results written to {path}; plots: {', '.join(p.name for p in plots)}")
    return results


def _silent(_: str) -> None:
    pass


#: Errors a run raises for its input (data, folders, a checkpoint of another run) or a
#: diverged loss: a launch re-raises them as they are, the message one process gives.
_INPUT_ERRORS = (ValueError, TypeError, FileNotFoundError, FolderLockedError, NonFiniteLossError)


def _experiment_worker(config: RunConfig, names: Optional[Mapping[str, str]]) -> None:
    run_experiment(config, names=names)


def launch_experiment(config: RunConfig, nproc: int, *,
                      names: Optional[Mapping[str, str]] = None) -> None:
    """Run the main job in ``nproc`` local processes (gloo on the CPU, nccl with one GPU
    each on CUDA), started by torch's elastic agent (:func:`clreplay.launch.launch`:
    spawned, never forked, so it works from a process that already trained).

    ``config.batch_size`` stays the global batch; the configuration is checked here,
    before any process starts. On the CPU each process takes ``cpu_count // nproc``
    torch threads (at least one). Rank 0 prints and writes ``config.output``.

    A rank that fails or dies stops the others: :class:`~clreplay.launch.LaunchError`
    names it and says what the checkpoint folder holds (run the same command to
    resume, with any number of processes), except for an error of the run's input (data,
    folders, a checkpoint of another run: ``ValueError``, ``FileNotFoundError``, ...) or a
    diverged loss, raised as one process raises it; Ctrl-C raises :class:`RunInterrupted`
    with rank 0's account of what was saved.
    """
    nproc = check_positive_int("nproc", nproc)
    config = replace(config, world_size=nproc).validate(names=names)
    n = lambda field_name: (names or {}).get(field_name, field_name)  # noqa: E731
    try:
        launch(_experiment_worker, nproc, config, dict(names or {}), device=config.device)
    except LaunchError as err:
        if isinstance(err.exception, _INPUT_ERRORS):  # what one process says of bad input
            raise err.exception from None
        raise LaunchError(f"{err.summary}; {_resume_hint(config, n)}", err.rank, err.traceback) from None
    except LaunchInterrupted as err:  # rank 0's account says what its checkpoint holds
        raise RunInterrupted(err.message if err.explained else f"{err.message}; {_resume_hint(config, n)}") \
            from None


def _resume_hint(config: RunConfig, n: Callable[[str], str]) -> str:
    """How to go on after a launch stopped: what its checkpoint folder holds."""
    if not config.checkpoint_dir:
        return f"nothing was saved (give {n('checkpoint_dir')} to make a run resumable)"
    if not checkpoint_path(config.checkpoint_dir).exists():
        return "nothing was saved yet: the same command starts again"
    return (f"run the same command to resume from the last checkpoint in {config.checkpoint_dir!r} "
            "(with any number of processes)")
