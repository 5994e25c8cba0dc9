"""Runs over 2 CPU processes (gloo): replicated memories, global batches, resume under any world size.

Each test starts one group of 2 processes (forked: no second import of torch) that
runs many cases in a row and saves what it saw per rank; the test compares the
ranks with each other and with a single process doing the same work.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import torch

from clreplay import (
    ClassBalancedStoragePolicy,
    ClosestToCenterSelectionStrategy,
    EntropySelectionStrategy,
    ExperienceBalancedStoragePolicy,
    HerdingSelectionStrategy,
    MarginSelectionStrategy,
    OnlineReplayPlugin,
    ParametricStoragePolicy,
    RandomExemplarsSelectionStrategy,
    ReplayPlugin,
    ReservoirSamplingStoragePolicy,
)
from clreplay import distributed as idist
from clreplay.benchmarks import Experience, class_incremental, make_synthetic
from clreplay.checkpoint import checkpoint_path, resume_if_saved, save_checkpoint
from clreplay.data.augment import RandomBatchTransform
from clreplay.launch import launch
from clreplay.models import feature_layer_name, make_mlp
from clreplay.replay.storage.consistency import MemoryMismatchError
from clreplay.run import RunConfig, build_benchmark, build_strategy
from clreplay.training import Naive, StrategyPlugin
from clreplay.training.augmentation import AugmentationPlugin

TIMEOUT = timedelta(seconds=90)
N_FEATURES, N_CLASSES = 8, 6


def launch2(fn, *args):
    launch(fn, 2, *args, threads=1, timeout=TIMEOUT)


def tiny_benchmark():
    train, test = make_synthetic(147, N_FEATURES, N_CLASSES, seed=0)
    return class_incremental(train, test, 3, seed=0)


def memory_bytes(policy, columns=None) -> bytes:
    """Every group of the memory: its key, store rows and every column at those rows."""
    store, parts = policy.store, []
    for key, group in policy.ext_mem.items():
        rows = store.rows_of(group)
        parts += [repr(key).encode(), rows.numpy().tobytes()]
        for name in sorted(store.columns):
            if columns is None or name in columns:
                parts += [name.encode(), store.read(name, rows).contiguous().numpy().tobytes()]
    return b"".join(parts)


class LogitsOnlineReplay(OnlineReplayPlugin):
    """Online replay storing the logits of the stream samples (DER-like extra column)."""

    def setup(self, context):
        super().setup(context)
        self.storage_policy.store.register_column("logits", (N_CLASSES,), torch.float32)

    def stored_columns(self, strategy):
        return {"logits": strategy.mb_output[strategy.mb.stream.slice].detach()}


def _selection(name, model):
    layer = feature_layer_name(model)
    return {"random": lambda: RandomExemplarsSelectionStrategy(),
            "herding": lambda: HerdingSelectionStrategy(model, layer),
            "closest": lambda: ClosestToCenterSelectionStrategy(model, layer),
            "entropy": lambda: EntropySelectionStrategy(),
            "margin": lambda: MarginSelectionStrategy()}[name]()


def _replay(case, model):
    """The replay plugin of a memory case ``(kind, policy, selection)``."""
    kind, policy, selection = case
    if policy == "experience":
        storage = ExperienceBalancedStoragePolicy({}, 20)
    elif policy == "reservoir":
        storage = ReservoirSamplingStoragePolicy({}, 20)
    elif policy == "class":
        storage = ClassBalancedStoragePolicy({}, 20, selection_strategy=_selection(selection, model))
    else:
        storage = ParametricStoragePolicy({}, 20, groupby="class",
                                          selection_strategy=_selection(selection, model))
    if kind == "online":
        return LogitsOnlineReplay(20, storage, batch_size_mem=4)
    return ReplayPlugin(20, storage)


MEMORY_CASES = (
    [("offline", "experience", None), ("offline", "reservoir", None)]
    + [("offline", "class", s) for s in ("random", "herding", "closest", "entropy", "margin")]
    + [("offline", "parametric", s) for s in ("random", "herding", "margin")]
    + [("online", "reservoir", None), ("online", "parametric", "random"),
       ("online", "parametric", "herding")]
)
#: Cases whose decisions do not read the model: one process stores the same samples.
MODEL_FREE = [c for c in MEMORY_CASES if c[2] in (None, "random")]


def memories_after_each_experience(case, distributed: bool):
    """Memory bytes after every experience of the tiny benchmark, global batch 8."""
    bench = tiny_benchmark()
    model = make_mlp(N_FEATURES, N_CLASSES, [16], seed=0)
    replay = _replay(case, model)
    strategy = Naive(model, torch.optim.SGD(model.parameters(), lr=0.1), train_mb_size=8,
                     eval_mb_size=16, plugins=[replay], seed=0, distributed=distributed)
    out = []
    for experience in bench.train_stream:
        strategy.train(experience)
        out.append((memory_bytes(replay.storage_policy),
                    memory_bytes(replay.storage_policy, columns=("x", "y", "t", "origin"))))
    return out


class BatchRecorder(StrategyPlugin):
    """Each step's batch as this rank trained on it: (x, y, from_memory)."""

    def __init__(self):
        self.batches = []

    def before_forward(self, strategy, **kwargs):
        mb = strategy.mb
        self.batches.append((mb.x.clone(), mb.y.clone(), mb.from_memory.clone()))


def weight_experiences():
    """Two experiences whose sizes leave uneven and empty slices in their last batches."""
    data, _ = make_synthetic(160, N_FEATURES, N_CLASSES, seed=1)
    return [Experience(data.subset(torch.arange(0, 65)), 0, list(range(N_CLASSES))),
            Experience(data.subset(torch.arange(65, 156)), 1, list(range(N_CLASSES)))]


class Jitter(RandomBatchTransform):
    """Adds seeded noise to every value: a random augmentation of flat samples."""

    def __call__(self, x):
        return x + 0.1 * torch.rand(x.shape, generator=self.generator(x.device), device=x.device)


def train_for_weights(kind: str, distributed: bool):
    """Weights after each experience, the batches trained on and the final accuracies."""
    model = make_mlp(N_FEATURES, N_CLASSES, [16], seed=0)
    plugins = [ReplayPlugin(24) if kind == "offline" else OnlineReplayPlugin(24, batch_size_mem=8)]
    if kind == "augmented":  # the global batch's draws, whatever the ranks
        plugins.append(AugmentationPlugin(Jitter(seed=0)))
    recorder = BatchRecorder()
    strategy = Naive(model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
                     train_mb_size=32, train_epochs=2, eval_mb_size=16,
                     plugins=plugins + [recorder], seed=0, distributed=distributed)
    weights = []
    for experience in weight_experiences():
        strategy.train(experience)
        weights.append({k: v.clone() for k, v in model.state_dict().items()})
    accuracies = strategy.eval(weight_experiences())
    return weights, recorder.batches, accuracies, strategy.clock.train_samples


class CorruptOnRankOne(ClassBalancedStoragePolicy):
    """Changes one stored value on rank 1 after the update of experience 1."""

    def __call__(self, strategy, **kwargs):
        super().__call__(strategy, **kwargs)
        if idist.get_rank() == 1 and strategy.experience.current_experience == 1:
            key = strategy.experience.classes_in_this_experience[-1]
            rows = self.store.rows_of(self.ext_mem[key])
            self.store.columns["x"][rows[3], 0] += 1.0


class DivergingReservoir(ReservoirSamplingStoragePolicy):
    """Stores other values on rank 1 at the third step (as a floating-point quirk would)."""

    def update_from_batch(self, strategy, x, y, t, *, columns=None):
        if idist.get_rank() == 1 and strategy.clock.train_exp_iterations == 3:
            x = x + 1e-3
        super().update_from_batch(strategy, x, y, t, columns=columns)


def corrupted_run(plugin):
    """The message of the mismatch error the run stops with (None if it does not)."""
    bench = tiny_benchmark()
    model = make_mlp(N_FEATURES, N_CLASSES, [16], seed=0)
    strategy = Naive(model, torch.optim.SGD(model.parameters(), lr=0.1), train_mb_size=8,
                     plugins=[plugin], seed=0, distributed=True)
    try:
        for experience in bench.train_stream:
            strategy.train(experience)
    except MemoryMismatchError as err:
        return str(err)
    return None


def _many_cases(folder):
    rank = idist.get_rank()
    result = {"memories": {case: memories_after_each_experience(case, True) for case in MEMORY_CASES},
              "weights": {kind: train_for_weights(kind, True) for kind in ("offline", "online", "augmented")},
              "corrupted": corrupted_run(ReplayPlugin(20, CorruptOnRankOne({}, 20))),
              "diverging": corrupted_run(OnlineReplayPlugin(20, DivergingReservoir({}, 20)))}
    model = make_mlp(N_FEATURES, N_CLASSES, [16], seed=0)
    result["eval"] = Naive(model, torch.optim.SGD(model.parameters(), lr=0.1), train_mb_size=2,
                           eval_mb_size=16,
                           distributed=True).eval(tiny_benchmark().test_stream)
    torch.save(result, Path(folder) / f"rank{rank}.pt")


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    folder = tmp_path_factory.mktemp("two_ranks")
    launch2(_many_cases, str(folder))
    return [torch.load(folder / f"rank{r}.pt", weights_only=False) for r in (0, 1)]


def test_memories_are_identical_byte_for_byte_on_both_ranks_after_every_experience(two_ranks):
    rank0, rank1 = two_ranks[0]["memories"], two_ranks[1]["memories"]
    assert set(rank0) == set(MEMORY_CASES)
    for case in MEMORY_CASES:
        assert len(rank0[case]) == 3
        for experience, (a, b) in enumerate(zip(rank0[case], rank1[case])):
            assert len(a[0]) > 100, (case, experience)
            assert a[0] == b[0], f"{case}: ranks differ after experience {experience}"


@pytest.mark.parametrize("case", MODEL_FREE, ids=lambda c: "-".join(str(p) for p in c))
def test_decisions_that_do_not_read_the_model_store_what_one_process_stores(two_ranks, case):
    single = memories_after_each_experience(case, distributed=False)
    assert [m[1] for m in two_ranks[0]["memories"][case]] == [m[1] for m in single]


def _global_batches(rank0, rank1):
    """Each step's global batch rebuilt from the two slices: current rows, then replayed."""
    out = []
    for (x0, y0, m0), (x1, y1, m1) in zip(rank0, rank1):
        x = torch.cat([x0[~m0], x1[~m1], x0[m0], x1[m1]])
        y = torch.cat([y0[~m0], y1[~m1], y0[m0], y1[m1]])
        out.append((x, y, len(x0), len(x1)))
    return out


@pytest.mark.parametrize("kind", ["offline", "online", "augmented"])
def test_two_ranks_of_16_train_as_one_process_of_32_on_the_same_global_batches(two_ranks, kind):
    weights1, batches1, accuracies1, samples1 = train_for_weights(kind, distributed=False)
    (w0, b0, acc0, samples0), (w1, b1, acc1, _) = (two_ranks[r]["weights"][kind] for r in (0, 1))
    rebuilt = _global_batches(b0, b1)
    assert len(rebuilt) == len(batches1)
    for (x, y, n0, n1), (x_single, y_single, _) in zip(rebuilt, batches1):
        assert torch.equal(x, x_single) and torch.equal(y, y_single)
        assert abs(n0 - n1) <= 1  # the work is split evenly
    # 65 samples: the last batch of each epoch has one stream sample; offline rank 1's
    # slice is empty, online it holds 4 of the 8 replayed samples.
    assert (rebuilt[2][2], rebuilt[2][3]) == ((1, 0) if kind == "offline" else (5, 4))
    if kind == "augmented":  # the noise was drawn for the global batch, then sliced
        plain = train_for_weights("online", distributed=False)[1]
        assert not torch.equal(batches1[0][0], plain[0][0])
    assert samples0 == samples1
    for after in range(2):
        for name, value in weights1[after].items():
            assert torch.equal(w0[after][name], w1[after][name])  # ranks stay identical
            torch.testing.assert_close(w0[after][name], value, rtol=1e-5, atol=1e-6)
    assert acc0 == acc1 == accuracies1


def test_evaluation_sums_the_ranks_counts_to_the_single_process_accuracies(two_ranks):
    model = make_mlp(N_FEATURES, N_CLASSES, [16], seed=0)
    single = Naive(model, torch.optim.SGD(model.parameters(), lr=0.1),
                   eval_mb_size=16).eval(tiny_benchmark().test_stream)
    assert two_ranks[0]["eval"] == two_ranks[1]["eval"] == single


def test_a_memory_corrupted_on_one_rank_stops_both_with_the_first_differing_group(two_ranks):
    key = tiny_benchmark().train_stream[1].classes_in_this_experience[-1]
    for rank in (0, 1):
        assert two_ranks[rank]["corrupted"].startswith(
            f"replay memory differs between ranks after experience 2: first differing group {key!r} "
            f"(of 1 differing: [{key!r}]); rank {rank} holds ")


def test_online_values_written_differently_on_one_rank_stop_both_at_that_step(two_ranks):
    for rank in (0, 1):
        assert two_ranks[rank]["diverging"] == (
            "replay memory differs between ranks after step 3 of experience 1: first differing "
            f"group 0 (of 1 differing: [0]); rank {rank} holds 20 samples in it")


# ------------------------------------------------------------------- resume
def _config(folder, world_size):
    return RunConfig(n_experiences=3, epochs=1, batch_size=16, mem_size=60, hidden=[32],
                     checkpoint_dir=str(folder), world_size=world_size)


def train_until(config, stop):
    """The main job's strategy, resumed from config.checkpoint_dir if saved there, trained
    up to experience ``stop`` with a checkpoint after each; its accuracy matrix."""
    bench = build_benchmark(config)
    strategy = build_strategy(config, bench)
    start = resume_if_saved(strategy, config.checkpoint_dir, config=config)
    for experience in bench.train_stream[start:stop]:
        strategy.train(experience)
        save_checkpoint(strategy, checkpoint_path(config.checkpoint_dir), config=config)
    return strategy.evaluator.accuracy_matrix


def _resume_runs(folder):
    folder = Path(folder)
    train_until(_config(folder / "two_then_one", 2), 2)                 # saved by 2 processes
    one_then_two = train_until(_config(folder / "one_then_two", 2), 3)  # resumed on 2
    uninterrupted = train_until(_config(folder / "two", 2), 3)
    if idist.is_main():
        torch.save({"one_then_two": one_then_two, "two": uninterrupted}, folder / "matrices.pt")


def test_resume_2_to_1_and_1_to_2_give_the_single_run_matrix(tmp_path):
    single = train_until(_config(tmp_path / "single", 1), 3)
    train_until(_config(tmp_path / "one_then_two", 1), 2)  # saved by 1 process
    launch2(_resume_runs, str(tmp_path))
    two_then_one = train_until(_config(tmp_path / "two_then_one", 1), 3)
    matrices = torch.load(tmp_path / "matrices.pt", weights_only=False)
    assert len(single) == 3
    assert matrices["two"] == single
    assert matrices["one_then_two"] == single
    assert two_then_one == single
