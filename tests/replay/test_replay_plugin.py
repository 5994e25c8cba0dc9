import pytest
import torch
from conftest import samples_of

from clreplay import (
    ClassBalancedStoragePolicy,
    ExperienceBalancedStoragePolicy,
    HerdingSelectionStrategy,
    ReplayPlugin,
    StrategyPlugin,
)
from clreplay.benchmarks import split_digits
from clreplay.data import DatasetBatchSource
from clreplay.models import make_mlp
from clreplay.replay import ReplayBatchSource
from clreplay.training import Naive


@pytest.fixture(scope="module")
def digits():
    return split_digits()


def strategy_for(plugins, *, seed=0, epochs=1, mb=10, **kwargs):
    model = make_mlp(64, 10, [64], seed=0)
    return Naive(model, torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9),
                 train_mb_size=mb, train_epochs=epochs, plugins=plugins, seed=seed, **kwargs)


class BatchRecorder(StrategyPlugin):
    def __init__(self):
        self.batches = []

    def before_training_exp(self, strategy, **kwargs):
        self.batches.append([])

    def after_forward(self, strategy, **kwargs):
        self.batches[-1].append(strategy.mb_y.clone())


def test_default_policy_and_shared_memory():
    plugin = ReplayPlugin()
    assert plugin.mem_size == 200
    policy = plugin.storage_policy
    assert isinstance(policy, ExperienceBalancedStoragePolicy)
    assert policy.mem_size == 200 and policy.adaptive_size is True
    assert plugin.ext_mem is policy.ext_mem
    mine = ClassBalancedStoragePolicy({}, 50)
    assert ReplayPlugin(50, mine).ext_mem is mine.ext_mem


@pytest.mark.parametrize("bad, err, msg", [
    (0, ValueError, "mem_size must be a positive int, got 0"),
    (-5, ValueError, "mem_size must be a positive int, got -5"),
    (2.5, TypeError, r"mem_size must be a positive int, got 2.5 \(float\)"),
    (True, TypeError, r"mem_size must be a positive int, got True \(bool\)"),
])
def test_mem_size_must_be_a_positive_int(bad, err, msg):
    with pytest.raises(err, match=msg):
        ReplayPlugin(mem_size=bad)


def test_policy_mem_size_must_match():
    with pytest.raises(ValueError, match=r"storage_policy.mem_size \(100\) must equal mem_size \(200\)"):
        ReplayPlugin(200, ExperienceBalancedStoragePolicy({}, 100))
    with pytest.raises(TypeError, match="storage_policy must be a StoragePolicy or None, got dict"):
        ReplayPlugin(200, {})


def test_mixed_batches_are_balanced_over_seen_experiences(digits):
    recorder = BatchRecorder()
    replay = ReplayPlugin(100)
    strategy = strategy_for([replay, recorder], mb=12)
    strategy.train(digits.train_stream[:3])
    class_to_exp = {c: e.current_experience for e in digits.train_stream for c in e.classes_in_this_experience}
    first, second, third = recorder.batches
    assert all(len(y) == 12 for y in first[:-1])  # no memory yet: plain batches
    assert isinstance(strategy.batch_source, ReplayBatchSource)
    for batches, n_seen in ((second, 2), (third, 3)):
        n_current = len(digits.train_stream[n_seen - 1].dataset)
        assert sum(int((y.apply_(lambda c: class_to_exp[c]) == n_seen - 1).sum()) for y in [b.clone() for b in batches]) == n_current
        for y in batches[:-1]:
            counts = torch.bincount(torch.tensor([class_to_exp[c] for c in y.tolist()]), minlength=n_seen)
            assert len(y) == 12 and counts.max() - counts.min() <= 1 and counts.min() > 0


def test_batch_size_mem_in_training(digits):
    recorder = BatchRecorder()
    strategy = strategy_for([ReplayPlugin(100, batch_size_mem=5), recorder], mb=10)
    strategy.train(digits.train_stream[:2])
    n_current = len(digits.train_stream[1].dataset)
    assert [len(y) for y in recorder.batches[1]] == [15] * (n_current // 10) + [n_current % 10 + 5]


def test_empty_memory_keeps_the_default_batch_source(digits):
    strategy = strategy_for([ReplayPlugin(50)], epochs=0)
    strategy.train(digits.train_stream[0])
    assert isinstance(strategy.batch_source, DatasetBatchSource)


def test_memory_sizes_after_each_experience(digits):
    replay = ReplayPlugin(50)
    strategy = strategy_for([replay], epochs=0)
    sizes = []
    for exp in digits.train_stream:
        strategy.train(exp)
        sizes.append([len(g) for g in replay.ext_mem.values()])
    assert sizes == [[50], [25, 25], [16, 16, 18], [12, 12, 12, 14], [10] * 5]


def test_seeds_derive_from_the_strategy_seed(digits):
    def memory(seed):
        replay = ReplayPlugin(30)
        strategy_for([replay], epochs=0, seed=seed).train(digits.train_stream[:2])
        return [samples_of(g).sum().item() for g in replay.ext_mem.values()]

    assert memory(1) == memory(1)
    assert memory(1) != memory(2)


def test_same_seed_same_memory_and_weights_with_herding(digits):
    def run():
        model = make_mlp(64, 10, [32], seed=0)
        policy = ClassBalancedStoragePolicy({}, 40, selection_strategy=HerdingSelectionStrategy(model, "1"))
        replay = ReplayPlugin(40, policy)
        strategy = Naive(model, torch.optim.SGD(model.parameters(), lr=0.05), train_mb_size=16,
                         train_epochs=1, plugins=[replay], seed=5)
        strategy.train(digits.train_stream[:3])
        return {c: samples_of(g) for c, g in replay.ext_mem.items()}, [p.detach().clone() for p in model.parameters()]

    (mem_a, w_a), (mem_b, w_b) = run(), run()
    assert sorted(mem_a) == sorted(mem_b) and len(mem_a) == 6
    assert all(torch.equal(mem_a[c], mem_b[c]) for c in mem_a)
    assert all(len(m) in (6, 7) for m in mem_a.values())
    assert all(torch.equal(a, b) for a, b in zip(w_a, w_b))


def final_average_accuracy(plugins, digits):
    strategy = strategy_for(plugins, epochs=5, mb=32)
    for exp in digits.train_stream:
        strategy.train(exp)
    accuracies = strategy.eval(digits.test_stream)
    return sum(accuracies.values()) / len(accuracies)


def test_replay_beats_naive_by_a_wide_margin(digits):
    naive = final_average_accuracy([], digits)
    replay = final_average_accuracy([ReplayPlugin(200)], digits)
    assert naive < 0.3  # fine-tuning forgets all but the last experience
    assert replay > 0.85
    assert replay - naive > 0.5


def test_state_dict_round_trip(digits):
    replay = ReplayPlugin(30)
    strategy_for([replay], epochs=0).train(digits.train_stream[:2])
    other = ReplayPlugin(30)
    other.load_state_dict(replay.state_dict())
    assert list(other.ext_mem) == list(replay.ext_mem)
    assert all(torch.equal(samples_of(other.ext_mem[k]), samples_of(replay.ext_mem[k])) for k in replay.ext_mem)
    with pytest.raises(ValueError, match=r"mem_size of the saved replay memory \(30\) differs from this plugin's mem_size \(40\)"):
        ReplayPlugin(40).load_state_dict(replay.state_dict())
