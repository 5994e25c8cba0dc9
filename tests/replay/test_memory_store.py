"""The memory store: columns, decisions applied, extra columns a method registers."""

from types import SimpleNamespace

import pytest
import torch
from conftest import make_dataset, samples_of

from clreplay import (
    ClassBalancedStoragePolicy,
    ExperienceBalancedStoragePolicy,
    OnlineReplayPlugin,
    ParametricStoragePolicy,
    ReplayPlugin,
    ReservoirSamplingStoragePolicy,
    StrategyPlugin,
)
from clreplay.benchmarks import split_digits
from clreplay.models import make_mlp
from clreplay.replay import GroupPlan, MemoryStore
from clreplay.training import Naive


def test_apply_keeps_stored_rows_and_writes_new_samples_into_the_lowest_free_rows():
    store = MemoryStore(6)
    first = make_dataset([0, 0, 1, 1])  # ids 0..3
    rows = store.apply({"a": GroupPlan.of_new(torch.tensor([3, 1])), "b": GroupPlan.of_new(torch.tensor([0]))},
                       first, origin=0)
    assert {k: r.tolist() for k, r in rows.items()} == {"a": [0, 1], "b": [2]}
    second = make_dataset([2, 2, 2], start=10)  # ids 10..12
    # "a" keeps new id 11, then its stored row 1 (id 1); "b" is dropped; "c" is new id 12.
    rows = store.apply({"a": GroupPlan(torch.tensor([1]), rows["a"], torch.tensor([0, 2])),
                        "c": GroupPlan.of_new(torch.tensor([2]))}, second, origin=1)
    assert {k: r.tolist() for k, r in rows.items()} == {"a": [0, 1], "c": [2]}
    assert store.read("x", torch.tensor([0, 1, 2]))[:, 0].tolist() == [11.0, 1.0, 12.0]
    assert store.read("origin", torch.tensor([0, 1, 2])).tolist() == [1, 0, 1]
    assert store.read("y", torch.tensor([0, 1, 2])).tolist() == [2, 0, 2]
    with pytest.raises(ValueError, match=r"plans must keep at most capacity \(6\) rows in all"):
        store.apply({"big": GroupPlan.of_new(torch.arange(7))}, make_dataset([0] * 7), origin=2)


def test_rows_in_ram_grow_with_what_is_held_never_past_capacity():
    store = MemoryStore(10**9)
    store.apply({0: GroupPlan.of_new(torch.arange(3))}, make_dataset([0, 1, 2]), origin=0)
    assert store.columns["x"].shape[0] == 16  # the first allocation, not 10**9 rows
    store.apply({0: GroupPlan.of_new(torch.arange(40))}, make_dataset([0] * 40), origin=1)
    assert store.columns["x"].shape[0] == 40 and store.size == 40
    small = MemoryStore(5)
    small.apply({0: GroupPlan.of_new(torch.arange(2))}, make_dataset([0, 1]), origin=0)
    assert small.columns["x"].shape[0] == 5


def test_register_column_checks_its_arguments():
    store = MemoryStore(4)
    with pytest.raises(ValueError, match="name must not be a core column"):
        store.register_column("y", (2,), torch.float32)
    with pytest.raises(ValueError, match="name must be an identifier, got 'two words'"):
        store.register_column("two words", (2,), torch.float32)
    with pytest.raises(TypeError, match="dtype must be a torch.dtype, got str"):
        store.register_column("logits", (2,), "float32")
    with pytest.raises(TypeError, match="fill must be a number, got function"):
        store.register_column("logits", (2,), torch.float32, fill=lambda strategy, x: x)
    store.register_column("logits", (2,), torch.float32)
    with pytest.raises(ValueError, match=r"column 'logits' is registered with shape \(2,\)"):
        store.register_column("logits", (3,), torch.float32)


def test_a_column_registered_after_samples_are_stored_reads_zero_for_them():
    store = MemoryStore(4)
    store.apply({0: GroupPlan.of_new(torch.arange(2))}, make_dataset([0, 1]), origin=0)
    store.register_column("score", (), torch.float64)
    assert store.read("score", torch.tensor([0, 1])).tolist() == [0.0, 0.0]


# --------------------------------------------------------- the seed defects
def class_memory(seed):
    policy = ClassBalancedStoragePolicy({}, 6, seed=seed)
    policy(plain(make_dataset([0] * 10 + [1] * 10), 0))
    return {c: samples_of(g)[:, 0].tolist() for c, g in policy.ext_mem.items()}


def test_the_class_balanced_seed_reaches_its_default_selection():
    assert class_memory(1) == class_memory(1)
    assert class_memory(1) != class_memory(2)  # used to store the same memory for every seed


# ---------------------------------------------- driven by hand with plain objects
def plain(dataset, index):
    """Not an Experience: any object with what a policy reads."""
    classes = sorted(set(dataset.targets.tolist()))
    experience = SimpleNamespace(dataset=dataset, current_experience=index,
                                 classes_in_this_experience=classes, task_label=0)
    return SimpleNamespace(experience=experience, device="cpu", eval_mb_size=16)


@pytest.mark.parametrize("make", [
    lambda: ExperienceBalancedStoragePolicy({}, 12),
    lambda: ClassBalancedStoragePolicy({}, 12),
    lambda: ReservoirSamplingStoragePolicy({}, 12),
    lambda: ParametricStoragePolicy({}, 12, groupby="class"),
], ids=["experience", "class", "reservoir", "parametric"])
def test_every_policy_is_driven_by_plain_objects(make):
    policy = make()
    for i in range(3):
        policy(plain(make_dataset([2 * i] * 10 + [2 * i + 1] * 10, start=100 * i), i))
    assert len(policy) == 12
    ids = torch.cat([samples_of(g)[:, 0] for g in policy.ext_mem.values()])
    assert len(set(ids.tolist())) == 12
    origins = torch.cat([policy.origins(k) for k in policy.ext_mem])
    assert torch.equal(origins, (ids // 100).long())  # every row knows its experience


# ------------------------------------- a method that stores one extra column
N_FEATURES, N_CLASSES = 64, 10


class WriteSpy:
    """Records what each store row last received in the ``logits`` column."""

    def __init__(self, store):
        self.expected = {}
        write = store.write

        def spy(rows, values):
            write(rows, values)
            if "logits" in values:
                for r, v in zip(rows.tolist(), values["logits"]):
                    self.expected[r] = v.clone()

        store.write = spy


class CheckReplayedLogits(StrategyPlugin):
    """For every replayed row of every batch: the logits read back are the ones stored for it."""

    def __init__(self, spy, store):
        self.spy, self.store, self.rows_checked = spy, store, 0

    def before_forward(self, strategy, **kwargs):
        mb = strategy.mb
        for segment in mb.memory_segments:
            rows = segment.rows
            assert torch.equal(segment.columns["logits"],
                               torch.stack([self.spy.expected[r] for r in rows.tolist()]))
            assert torch.equal(mb.x[segment.slice], self.store.read_x(rows))
            assert torch.equal(mb.y[segment.slice], self.store.read("y", rows))
            self.rows_checked += len(rows)


class LogitReplay(ReplayPlugin):
    """Replay that also keeps the logits the model gave each sample when it was stored
    (offline: the model after training on the sample's experience). The method
    computes them and hands them to the policy with the samples: the store runs nothing."""

    def setup(self, context):
        super().setup(context)
        self.storage_policy.store.register_column("logits", (N_CLASSES,), torch.float32)

    def after_training_exp(self, strategy, **kwargs):
        with torch.no_grad():
            x, _, _ = strategy.experience.dataset.get_batch(torch.arange(len(strategy.experience.dataset)))
            logits = strategy.model(x)
        self.storage_policy(strategy, columns={"logits": logits})


class OnlineLogitReplay(OnlineReplayPlugin):
    """Online replay storing the logits the stream samples got in the step they were seen."""

    def setup(self, context):
        super().setup(context)
        self.storage_policy.store.register_column("logits", (N_CLASSES,), torch.float32)

    def stored_columns(self, strategy):
        return {"logits": strategy.mb_output[strategy.mb.stream.slice].detach()}


def run_with(plugin, *, mb=16, epochs=1, experiences=3):
    bench = split_digits()
    model = make_mlp(N_FEATURES, N_CLASSES, [32], seed=0)
    spy_holder = {}

    class Attach(StrategyPlugin):  # spies on the store once the plugin has set it up
        def before_training(self, strategy, **kwargs):
            if "spy" not in spy_holder:
                spy_holder["spy"] = WriteSpy(plugin.storage_policy.store)
                checker.spy = spy_holder["spy"]

    checker = CheckReplayedLogits(None, plugin.storage_policy.store)
    strategy = Naive(model, torch.optim.SGD(model.parameters(), lr=0.05), train_mb_size=mb,
                     train_epochs=epochs, plugins=[Attach(), plugin, checker], seed=0)
    for experience in bench.train_stream[:experiences]:
        strategy.train(experience)
    return strategy, checker


@pytest.mark.parametrize("make", [
    lambda: LogitReplay(60, ReservoirSamplingStoragePolicy({}, 60)),
    lambda: LogitReplay(60, ClassBalancedStoragePolicy({}, 60)),
    lambda: LogitReplay(60, batch_size_mem=8),
    lambda: OnlineLogitReplay(60, batch_size_mem=8),
], ids=["reservoir", "class", "experience", "online"])
def test_every_replayed_row_reads_back_the_logits_stored_for_it(make):
    plugin = make()
    strategy, checker = run_with(plugin)
    assert checker.rows_checked > 100
    store = plugin.storage_policy.store
    rows = torch.cat([g.indices for g in plugin.ext_mem.values()])
    stored = store.read("logits", rows)
    assert stored.abs().sum() > 0 and not torch.isnan(stored).any()
    # The column travels with the memory through a checkpoint, byte for byte.
    restored = make()
    restored.storage_policy.store.register_column("logits", (N_CLASSES,), torch.float32)
    restored.load_state_dict(plugin.state_dict())
    assert torch.equal(restored.storage_policy.store.read("logits", rows), stored)
    assert [g.indices.tolist() for g in restored.ext_mem.values()] == [
        g.indices.tolist() for g in plugin.ext_mem.values()]


def test_offline_logits_are_the_model_outputs_at_storage_time():
    plugin = LogitReplay(30, ReservoirSamplingStoragePolicy({}, 30))
    strategy, _ = run_with(plugin, experiences=1)
    rows = plugin.ext_mem[0].indices
    store = plugin.storage_policy.store
    with torch.no_grad():
        expected = strategy.model(store.read_x(rows))
    assert torch.allclose(store.read("logits", rows), expected)


def test_a_store_update_changes_the_columns_given_and_keeps_the_samples():
    plugin = LogitReplay(30, ReservoirSamplingStoragePolicy({}, 30))
    run_with(plugin, experiences=1)
    store, rows = plugin.storage_policy.store, plugin.ext_mem[0].indices[:5]
    x, y = store.read("x", rows), store.read("y", rows)
    store.update(rows, {"logits": torch.full((5, N_CLASSES), 7.0)})
    assert torch.equal(store.read("logits", rows), torch.full((5, N_CLASSES), 7.0))
    assert torch.equal(store.read("x", rows), x) and torch.equal(store.read("y", rows), y)
    small = MemoryStore(10)
    small.apply({0: GroupPlan.of_new(torch.arange(3))}, make_dataset([0, 1, 2]), origin=0)
    with pytest.raises(IndexError, match=r"rows must be rows already written \(below 3\), got 5"):
        small.update(torch.tensor([5]), {"y": torch.zeros(1, dtype=torch.long)})
    with pytest.raises(ValueError, match=r"values\['logits'\] must have shape \(5, 10\)"):
        store.update(rows, {"logits": torch.zeros(5, 3)})
    # A new sample written into a reused row never shows what its predecessor stored.
    store.write(rows[:1], {"x": x[:1], "y": y[:1], "t": y[:1] * 0, "origin": y[:1] * 0})
    assert torch.equal(store.read("logits", rows[:1]), torch.zeros(1, N_CLASSES))


@pytest.mark.parametrize("make", [
    lambda: ExperienceBalancedStoragePolicy({}, 30),
    lambda: ClassBalancedStoragePolicy({}, 30),
    lambda: ParametricStoragePolicy({}, 30, groupby="class"),
], ids=["experience", "class", "parametric"])
def test_replay_batches_read_the_memory_in_place_in_its_store(make):
    replay = ReplayPlugin(30, make())
    strategy = Naive(torch.nn.Linear(2, 6), torch.optim.SGD(torch.nn.Linear(2, 6).parameters(), lr=0.1),
                     train_mb_size=8, train_epochs=0, plugins=[replay], seed=0)
    for i in range(3):
        strategy.train(plain_experience(make_dataset([2 * i] * 20 + [2 * i + 1] * 20, start=100 * i), i))
    strategy.experience = plain_experience(make_dataset([6] * 8, start=900), 3)
    replay.before_training_exp(strategy)
    # The joined memory is an index view of the store's columns: no copy per experience.
    assert strategy.batch_source.memory.storage is replay.storage_policy.store.columns["x"]


def plain_experience(dataset, index):
    from clreplay.benchmarks import Experience

    return Experience(dataset, index, sorted(set(dataset.targets.tolist())))
