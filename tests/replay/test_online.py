import pytest
import torch
from conftest import by_hand, make_dataset, samples_of

from clreplay import (
    ExperienceBalancedStoragePolicy,
    OnlineReplayPlugin,
    ParametricStoragePolicy,
    ReservoirSamplingStoragePolicy,
    StrategyPlugin,
)
from clreplay.benchmarks import Experience
from clreplay.replay import OnlineReplayBatchSource
from clreplay.training import Naive


def stream(sizes=(45, 30, 25)):
    """Experiences of unique ids (first feature), class = experience index."""
    out, start = [], 0
    for i, n in enumerate(sizes):
        out.append(Experience(make_dataset([i] * n, start=start), i, [i]))
        start += 1000
    return out


class Recorder(StrategyPlugin):
    """Records each batch and checks the memory bound after every step."""

    def __init__(self, replay):
        self.replay, self.batches, self.sizes = replay, [], []

    def before_forward(self, strategy, **kwargs):
        self.batches.append(strategy.mb_x[:, 0].long().tolist())

    def after_training_iteration(self, strategy, **kwargs):
        self.sizes.append(len(self.replay.storage_policy))


def run(replay, *, experiences=None, mb=10, epochs=1, seed=0):
    recorder = Recorder(replay)
    model = torch.nn.Linear(2, 3)
    torch.nn.init.zeros_(model.weight)
    torch.nn.init.zeros_(model.bias)
    strategy = Naive(model, torch.optim.SGD(model.parameters(), lr=1e-4), train_mb_size=mb,
                     train_epochs=epochs, plugins=[replay, recorder], seed=seed)
    for experience in experiences or stream():
        strategy.train(experience)
    return recorder, model, strategy


def test_replays_from_the_second_step_of_the_first_experience():
    replay = OnlineReplayPlugin(mem_size=20)
    recorder, _, strategy = run(replay, experiences=stream()[:1])
    sizes = [len(b) for b in recorder.batches]
    assert sizes == [10, 20, 20, 20, 5 + 10]  # 45 stream samples, 10 replayed from step 2 on
    seen = set()
    for ids, n_stream in zip(recorder.batches, [10, 10, 10, 10, 5]):
        stream_ids, memory_ids = ids[:n_stream], ids[n_stream:]
        assert set(memory_ids) <= seen  # only samples of earlier steps are replayed
        assert len(set(memory_ids)) == len(memory_ids)  # drawn without replacement
        seen |= set(stream_ids)
    assert isinstance(strategy.batch_source, OnlineReplayBatchSource)


def test_stream_part_is_the_default_batches():
    replay = OnlineReplayPlugin(mem_size=20, batch_size_mem=3)
    recorder, _, _ = run(replay)
    plain = Recorder(OnlineReplayPlugin(1))
    model = torch.nn.Linear(2, 3)
    strategy = Naive(model, torch.optim.SGD(model.parameters(), lr=1e-4), train_mb_size=10, plugins=[plain], seed=0)
    for experience in stream():
        strategy.train(experience)
    assert [ids[: len(p)] for ids, p in zip(recorder.batches, plain.batches)] == plain.batches
    assert [len(ids) for ids in recorder.batches][:6] == [10, 13, 13, 13, 5 + 3, 13]


def test_memory_never_exceeds_mem_size_and_sees_every_sample_once():
    replay = OnlineReplayPlugin(mem_size=12, batch_size_mem=4)
    recorder, _, _ = run(replay, epochs=2)
    # A batch is stored at the end of its step (the replay plugin's after_training_iteration,
    # before the recorder's), so a checkpoint taken there holds it.
    assert max(recorder.sizes) == 12 and recorder.sizes[:3] == [10, 12, 12]
    policy = replay.storage_policy
    assert isinstance(policy, ReservoirSamplingStoragePolicy)
    assert policy.n_seen == 100  # two epochs, but each sample offered once
    assert set(samples_of(policy.ext_mem[0])[:, 0].long().tolist()) <= {
        i for e in stream() for i in samples_of(e.dataset)[:, 0].long().tolist()}


def test_no_epoch_still_fills_the_memory():
    replay = OnlineReplayPlugin(mem_size=12)
    run(replay, epochs=0)
    assert replay.storage_policy.n_seen == 100 and len(replay.ext_mem[0]) == 12


def test_same_seed_same_weights():
    def weights(seed=None, strategy_seed=0):
        _, model, _ = run(OnlineReplayPlugin(mem_size=15, seed=seed), seed=strategy_seed)
        return model.weight.detach().clone()

    assert torch.equal(weights(), weights())
    assert torch.equal(weights(seed=4), weights(seed=4))
    assert not torch.equal(weights(seed=4), weights(seed=5))


def test_any_storage_policy_works_online():
    policy = ExperienceBalancedStoragePolicy({}, 12)
    replay = OnlineReplayPlugin(12, policy)
    recorder, _, _ = run(replay)
    assert max(recorder.sizes) == 12
    assert sorted(replay.ext_mem) == [0, 1, 2] and [len(g) for g in replay.ext_mem.values()] == [4, 4, 4]
    assert [len(b) for b in recorder.batches[:2]] == [10, 20]


def test_parametric_policy_online():
    policy = ParametricStoragePolicy({}, 9, groupby="class")
    replay = OnlineReplayPlugin(9, policy, batch_size_mem=2)
    recorder, _, _ = run(replay)
    assert {k: len(g) for k, g in replay.ext_mem.items()} == {0: 3, 1: 3, 2: 3}
    assert max(recorder.sizes) == 9
    assert list(policy.replay_groups()) == [0, 1, 2]


def test_memory_transform_applies_to_replayed_samples_only():
    replay = OnlineReplayPlugin(mem_size=20, memory_transform=lambda x: -1 - x)
    recorder, _, _ = run(replay, experiences=stream()[:1])
    for ids, n_stream in zip(recorder.batches[1:], [10, 10, 10, 5]):
        assert all(i >= 0 for i in ids[:n_stream]) and all(i < 0 for i in ids[n_stream:])
        assert len(ids) == n_stream + 10


def test_state_dict_round_trip():
    replay = OnlineReplayPlugin(mem_size=15, seed=1)
    run(replay, experiences=stream()[:2])
    other = OnlineReplayPlugin(mem_size=15)
    other.load_state_dict(replay.state_dict())
    assert torch.equal(samples_of(other.ext_mem[0]), samples_of(replay.ext_mem[0]))
    assert torch.equal(other.generator.get_state(), replay.generator.get_state())
    with pytest.raises(ValueError, match=r"mem_size of the saved replay memory \(15\) differs"):
        OnlineReplayPlugin(mem_size=16).load_state_dict(replay.state_dict())
    with pytest.raises(KeyError, match="online replay state must have keys"):
        other.load_state_dict({"mem_size": 15})


def test_bad_input():
    with pytest.raises(ValueError, match=r"storage_policy.mem_size \(5\) must equal mem_size \(200\)"):
        OnlineReplayPlugin(200, ReservoirSamplingStoragePolicy({}, 5))
    with pytest.raises(TypeError, match="storage_policy must be a StoragePolicy or None, got dict"):
        OnlineReplayPlugin(200, {})
    with pytest.raises(ValueError, match="batch_size_mem must be a positive int, got 0"):
        OnlineReplayPlugin(batch_size_mem=0)
    with pytest.raises(TypeError, match="memory_transform must be callable or None, got str"):
        OnlineReplayPlugin(memory_transform="flip")
    with pytest.raises(ValueError, match="seed must be a non-negative int, got -1"):
        OnlineReplayPlugin(seed=-1)


@pytest.mark.parametrize("make_policy", [
    lambda: ReservoirSamplingStoragePolicy({}, 15),
    lambda: ParametricStoragePolicy({}, 15, groupby="class"),
], ids=["reservoir", "parametric"])
def test_resuming_from_a_strategy_state_continues_identically(make_policy):
    experiences = stream()

    def fresh():
        model = torch.nn.Linear(2, 3)
        torch.nn.init.zeros_(model.weight)
        torch.nn.init.zeros_(model.bias)
        replay = OnlineReplayPlugin(15, make_policy())
        return Naive(model, torch.optim.SGD(model.parameters(), lr=1e-4), train_mb_size=10,
                     plugins=[replay], seed=3), model

    whole, whole_model = fresh()
    for e in experiences:
        whole.train(e)
    first, _ = fresh()
    first.train(experiences[:2])
    resumed, resumed_model = fresh()
    resumed.load_state_dict(first.state_dict())
    resumed.train(experiences[2])
    assert torch.equal(resumed_model.weight, whole_model.weight)


def test_replayed_extra_columns_are_read_when_looked_up():
    from clreplay.replay.mixing.draws import memory_reader

    policy = ReservoirSamplingStoragePolicy({}, 6, seed=0)
    store = policy.store
    data = make_dataset([0, 1] * 3)
    store.register_column("a", (2,), torch.float32)
    store.register_column("b", (), torch.long)
    x, y, t = data.get_batch(torch.arange(6))
    policy.update_from_batch(by_hand(data, 0), x, y, t,
                             columns={"a": torch.arange(12.0).view(6, 2), "b": torch.arange(6) * 10})
    reads = []
    read = store.read
    store.read = lambda name, rows: reads.append(name) or read(name, rows)
    rows = torch.tensor([4, 1])
    extras = memory_reader(policy).columns(rows)
    assert "b" in extras and sorted(extras) == ["a", "b"] and reads == []
    assert extras["a"].tolist() == [[8.0, 9.0], [2.0, 3.0]] and reads == ["a"]
    assert extras["a"] is extras["a"] and reads == ["a"]  # read once
    assert dict(extras)["b"].tolist() == [40, 10] and reads == ["a", "b"]
