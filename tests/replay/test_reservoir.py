import pytest
import torch
from conftest import by_hand, make_dataset, samples_of
from scipy.stats import chi2, norm

from clreplay import ReplayPlugin, ReservoirSamplingStoragePolicy, StreamingStoragePolicy
from clreplay.data import ClassificationDataset


def ids(group):
    """First feature of each stored sample: its unique id (see make_dataset)."""
    return group.get_batch(torch.arange(len(group)))[0][:, 0].long().tolist()


def feed_in_batches(policy, data, sizes, index=0):
    strategy = by_hand(data, index)
    start = 0
    for size in sizes:
        x, y, t = data.get_batch(torch.arange(start, min(start + size, len(data))))
        policy.update_from_batch(strategy, x, y, t)
        start += size
    assert start >= len(data)


def test_fills_in_arrival_order_then_stays_full():
    policy = ReservoirSamplingStoragePolicy({}, 5, seed=0)
    policy(by_hand(make_dataset([0, 1, 0]), 0))
    assert list(policy.ext_mem) == [0] and ids(policy.ext_mem[0]) == [0, 1, 2]
    assert policy.ext_mem[0].targets.tolist() == [0, 1, 0] and policy.n_seen == 3
    policy(by_hand(make_dataset([3, 3, 3, 3], start=3), 1))
    assert len(policy.ext_mem[0]) == 5 and policy.n_seen == 7
    stored = ids(policy.ext_mem[0])
    assert set(stored) <= set(range(7)) and len(set(stored)) == 5
    assert isinstance(policy, StreamingStoragePolicy)


def test_replacement_rule_is_algorithm_r():
    # With seed 3, draw the uniforms the policy will use and apply algorithm R by hand.
    m, n = 4, 40
    data = make_dataset([0] * n)
    policy = ReservoirSamplingStoragePolicy({}, m, seed=3)
    policy(by_hand(data, 0))
    u = torch.rand(n - m, dtype=torch.float64, generator=torch.Generator().manual_seed(3)).tolist()
    memory = list(range(m))
    for k, uk in enumerate(u):
        i = m + k
        j = int(uk * (i + 1))
        if j < m:
            memory[j] = i
    assert ids(policy.ext_mem[0]) == memory


@pytest.mark.parametrize("sizes", [[1] * 300, [10] * 30, [7, 64, 65, 100, 64], [300]])
def test_batches_or_one_piece_give_the_same_memory(sizes):
    data = make_dataset(torch.arange(300) % 3)
    whole = ReservoirSamplingStoragePolicy({}, 16, seed=11)
    whole(by_hand(data, 0))
    streamed = ReservoirSamplingStoragePolicy({}, 16, seed=11)
    feed_in_batches(streamed, data, sizes)
    assert ids(streamed.ext_mem[0]) == ids(whole.ext_mem[0])
    assert torch.equal(streamed.ext_mem[0].targets, whole.ext_mem[0].targets)
    assert streamed.n_seen == whole.n_seen == 300


def test_inclusion_frequencies_match_mem_size_over_n():
    # Over many seeds each of the n samples must be stored with probability m / n.
    n, m, seeds = 20, 5, 1500
    data = make_dataset([0] * n)
    counts = torch.zeros(n)
    for seed in range(seeds):
        policy = ReservoirSamplingStoragePolicy({}, m, seed=seed)
        feed_in_batches(policy, data, [3, 2, 7, 8])  # small-batch path
        counts[ids(policy.ext_mem[0])] += 1
    p = m / n
    var = seeds * p * (1 - p)
    # Each count is Binomial(seeds, p): all within 5 standard deviations (two-sided
    # p-value 6e-7 each, so a false alarm over 20 samples has probability ~1e-5).
    z = (counts - seeds * p) / var**0.5
    assert z.abs().max() < norm.isf(3e-7)
    # The counts of one m-subset per seed have covariance var * n/(n-1) * (I - 11'/n),
    # so this statistic is chi-square with n-1 degrees of freedom.
    stat = float(((counts - seeds * p) ** 2).sum() / var * (n - 1) / n)
    assert stat < chi2.isf(1e-5, n - 1)


def test_inclusion_frequencies_of_a_long_stream_in_one_piece():
    n, m, seeds = 400, 40, 400
    data = make_dataset([0] * n)
    counts = torch.zeros(n)
    for seed in range(seeds):
        policy = ReservoirSamplingStoragePolicy({}, m, seed=seed)
        policy(by_hand(data, 0))  # vectorised path
        counts[ids(policy.ext_mem[0])] += 1
    p = m / n
    var = seeds * p * (1 - p)
    stat = float(((counts - seeds * p) ** 2).sum() / var * (n - 1) / n)
    assert stat < chi2.isf(1e-5, n - 1)
    # Early and late samples alike: the mean count of each decile is p * seeds.
    deciles = counts.view(10, -1).mean(dim=1)
    assert ((deciles - seeds * p).abs() < 5 * (var / (n / 10)) ** 0.5).all()


def test_same_seed_same_memory_other_seed_other_memory():
    data = make_dataset([0] * 100)

    def stored(seed):
        policy = ReservoirSamplingStoragePolicy({}, 10, seed=seed)
        policy(by_hand(data, 0))
        return ids(policy.ext_mem[0])

    assert stored(1) == stored(1) and stored(1) != stored(2)


def test_the_memory_owns_copies_of_its_samples():
    data = make_dataset([0] * 8)
    policy = ReservoirSamplingStoragePolicy({}, 4, seed=0)
    policy(by_hand(data, 0))
    before = ids(policy.ext_mem[0])
    data.storage.zero_()
    assert ids(policy.ext_mem[0]) == before
    assert len(samples_of(policy.ext_mem[0])) == 4


def test_state_dict_round_trip_continues_identically():
    data = make_dataset([0] * 60)
    a = ReservoirSamplingStoragePolicy({}, 6, seed=5)
    feed_in_batches(a, data, [60])
    b = ReservoirSamplingStoragePolicy({}, 6)
    b.load_state_dict(a.state_dict())
    assert ids(b.ext_mem[0]) == ids(a.ext_mem[0]) and b.n_seen == 60
    rest = make_dataset([0] * 30, start=60)
    a(by_hand(rest, 1))
    b(by_hand(rest, 1))
    assert ids(b.ext_mem[0]) == ids(a.ext_mem[0])


def test_adopts_samples_already_in_ext_mem():
    policy = ReservoirSamplingStoragePolicy({5: make_dataset([1, 1], start=100)}, 3, seed=0)
    assert list(policy.ext_mem) == [0] and ids(policy.ext_mem[0]) == [100, 101]
    assert policy.n_seen == 2


def test_bad_input():
    with pytest.raises(ValueError, match=r"ext_mem must hold at most mem_size \(1\) samples, got 2"):
        ReservoirSamplingStoragePolicy({0: make_dataset([0, 0])}, 1)
    with pytest.raises(ValueError, match="mem_size must be a positive int, got 0"):
        ReservoirSamplingStoragePolicy({}, 0)
    policy = ReservoirSamplingStoragePolicy({}, 3)
    policy(by_hand(make_dataset([0]), 0))
    other = ClassificationDataset(torch.zeros(2, 5), torch.tensor([0, 0]))
    with pytest.raises(ValueError, match=r"samples must have shape \(2,\) and dtype torch.float32"):
        policy(by_hand(other, 1))
    with pytest.raises(TypeError, match="strategy must have an 'experience' attribute"):
        policy(object())


def test_in_replay_plugin_one_group_half_of_each_batch():
    from clreplay.benchmarks import split_digits
    from clreplay.models import make_mlp
    from clreplay.training import Naive

    bench = split_digits()
    replay = ReplayPlugin(50, ReservoirSamplingStoragePolicy({}, 50))
    model = make_mlp(64, 10, [16], seed=0)
    strategy = Naive(model, torch.optim.SGD(model.parameters(), lr=0.05), train_mb_size=10,
                     train_epochs=1, plugins=[replay], seed=0)
    strategy.train(bench.train_stream[:2])
    assert list(replay.ext_mem) == [0] and len(replay.ext_mem[0]) == 50
    assert replay.storage_policy.n_seen == sum(len(e.dataset) for e in bench.train_stream[:2])
    assert strategy.batch_source.current_share == 5


def _algorithm_r_by_hand(n, m, seed):
    """Algorithm R with one uniform per sample after the fill, drawn one at a time."""
    generator = torch.Generator().manual_seed(seed)
    memory = list(range(m))
    for i in range(m, n):
        j = int(torch.rand(1, dtype=torch.float64, generator=generator).item() * (i + 1))
        if j < m:
            memory[j] = i
    return memory, generator.get_state()


def test_a_long_stream_in_mini_batches_is_algorithm_r_across_draw_chunks():
    # 2,600 samples: the replacement uniforms are drawn 1,024 at a time (reservoir_draws),
    # so batches straddle chunks, and one batch is longer than a chunk.
    n, m = 2600, 8
    data = make_dataset([0] * n)
    policy = ReservoirSamplingStoragePolicy({}, m, seed=7)
    sizes = [10] * 100 + [3, 1500] + [1] * 50 + [10] * 4 + [7]
    assert sum(sizes) == n
    feed_in_batches(policy, data, sizes)
    memory, state = _algorithm_r_by_hand(n, m, 7)
    assert ids(policy.ext_mem[0]) == memory
    # The generator is saved where one-at-a-time draws would have left it.
    assert torch.equal(policy.state_dict()["rng"]["generator"], state)


def test_a_checkpoint_inside_a_draw_chunk_resumes_identically():
    n, m = 1500, 5
    data = make_dataset([0] * n)
    whole = ReservoirSamplingStoragePolicy({}, m, seed=2)
    feed_in_batches(whole, data, [10] * 150)
    first = ReservoirSamplingStoragePolicy({}, m, seed=2)
    feed_in_batches(first, data.subset(torch.arange(600)), [10] * 60)
    resumed = ReservoirSamplingStoragePolicy({}, m, seed=99)
    resumed.load_state_dict(first.state_dict())
    strategy = by_hand(data, 0)
    for start in range(600, n, 10):
        x, y, t = data.get_batch(torch.arange(start, start + 10))
        resumed.update_from_batch(strategy, x, y, t)
        first.update_from_batch(strategy, x, y, t)  # the saved one goes on too: its state_dict rewound it
    assert ids(resumed.ext_mem[0]) == ids(first.ext_mem[0]) == ids(whole.ext_mem[0])


def test_update_from_batch_says_whether_it_stored_a_sample():
    m = 3
    data = make_dataset([0] * 400)
    policy = ReservoirSamplingStoragePolicy({}, m, seed=4)
    strategy = by_hand(data, 0)
    stored = []
    for start in range(0, 400, 4):
        x, y, t = data.get_batch(torch.arange(start, start + 4))
        before = ids(policy.ext_mem[0]) if policy.ext_mem else []
        stored.append(policy.update_from_batch(strategy, x, y, t))
        assert stored[-1] == (ids(policy.ext_mem[0]) != before)
    assert stored[0] and not all(stored)  # the fill stores; most later batches store nothing
