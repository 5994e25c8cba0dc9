import pytest
import torch
from conftest import by_hand, make_dataset, samples_of

from clreplay import ExperienceBalancedStoragePolicy, StoragePolicy


def stream(sizes, start_class=0):
    """Experience i holds sizes[i] samples of class i with unique ids."""
    start, out = 0, []
    for i, n in enumerate(sizes):
        out.append(make_dataset([start_class + i] * n, start=start))
        start += n
    return out


def group_sizes(policy):
    return {k: len(v) for k, v in policy.ext_mem.items()}


def run(policy, sizes):
    history = []
    for i, data in enumerate(stream(sizes)):
        policy(by_hand(data, i))
        history.append(group_sizes(policy))
    return history


def test_sizes_mem_25():
    history = run(ExperienceBalancedStoragePolicy({}, 25), [120] * 5)
    assert history == [
        {0: 25},
        {0: 12, 1: 13},
        {0: 8, 1: 8, 2: 9},
        {0: 6, 1: 6, 2: 6, 3: 7},
        {0: 5, 1: 5, 2: 5, 3: 5, 4: 5},
    ]


def test_sizes_mem_100():
    history = run(ExperienceBalancedStoragePolicy({}, 100), [120] * 5)
    assert history == [
        {0: 100},
        {0: 50, 1: 50},
        {0: 33, 1: 33, 2: 34},
        {0: 25, 1: 25, 2: 25, 3: 25},
        {0: 20, 1: 20, 2: 20, 3: 20, 4: 20},
    ]


def test_small_experiences_give_their_share_to_the_others():
    history = run(ExperienceBalancedStoragePolicy({}, 25), [120, 5, 120, 3, 120])
    assert history == [
        {0: 25},
        {0: 20, 1: 5},
        {0: 10, 1: 5, 2: 10},
        {0: 8, 1: 5, 2: 9, 3: 3},
        {0: 5, 1: 5, 2: 5, 3: 3, 4: 7},
    ]
    assert [sum(h.values()) for h in history] == [25] * 5


def test_memory_larger_than_data_keeps_everything():
    history = run(ExperienceBalancedStoragePolicy({}, 100), [10, 20, 30])
    assert history == [{0: 10}, {0: 10, 1: 20}, {0: 10, 1: 20, 2: 30}]


def test_fixed_number_of_experiences():
    history = run(ExperienceBalancedStoragePolicy({}, 25, adaptive_size=False, num_experiences=5), [120] * 5)
    assert history == [{0: 5}, {0: 5, 1: 5}, {0: 5, 1: 5, 2: 5}, {0: 5, 1: 5, 2: 5, 3: 5}, {i: 5 for i in range(5)}]
    history = run(ExperienceBalancedStoragePolicy({}, 27, adaptive_size=False, num_experiences=4), [120] * 5)
    assert history == [{0: 9}, {0: 6, 1: 9}, {0: 6, 1: 6, 2: 9}, {0: 6, 1: 6, 2: 6, 3: 9},
                       {0: 5, 1: 5, 2: 5, 3: 5, 4: 7}]


def test_stored_samples_come_from_their_experience_and_are_owned_copies():
    policy = ExperienceBalancedStoragePolicy({}, 30)
    data = stream([50, 50, 50])
    for i, d in enumerate(data):
        policy(by_hand(d, i))
    for key, group in policy.ext_mem.items():
        ids = samples_of(group)[:, 0].long()
        assert ((ids >= 50 * key) & (ids < 50 * (key + 1))).all()
        assert len(set(ids.tolist())) == len(ids)  # no sample twice
        assert group.targets.tolist() == [key] * len(group)
        assert group.storage is policy.store.columns["x"]  # the memory's own rows
        assert group.storage.data_ptr() != data[key].storage.data_ptr()


def test_same_seed_same_memory():
    def memory(seed):
        policy = ExperienceBalancedStoragePolicy({}, 20, seed=seed)
        run(policy, [40, 40, 40])
        return {k: samples_of(v)[:, 0].tolist() for k, v in policy.ext_mem.items()}

    assert memory(3) == memory(3)
    assert memory(3) != memory(4)


def test_subsample_single_and_all_groups():
    policy = ExperienceBalancedStoragePolicy({}, 100, seed=0)
    data = make_dataset([0] * 10)
    assert policy.subsample_single(data, 10) is data
    sub = policy.subsample_single(data, 4)
    assert len(sub) == 4 and set(samples_of(sub)[:, 0].tolist()) <= set(range(10))
    run(policy, [40, 40, 40])
    policy.subsample_all_groups(20)
    assert group_sizes(policy) == {0: 6, 1: 6, 2: 8}


def test_bad_arguments():
    with pytest.raises(ValueError, match="mem_size must be a positive int, got 0"):
        ExperienceBalancedStoragePolicy({}, 0)
    with pytest.raises(ValueError, match="num_experiences must be a positive int when adaptive_size=False, got -1"):
        ExperienceBalancedStoragePolicy({}, 10, adaptive_size=False)
    with pytest.raises(TypeError, match="ext_mem must be a dict, got list"):
        ExperienceBalancedStoragePolicy([], 10)
    with pytest.raises(TypeError, match="adaptive_size must be a bool"):
        ExperienceBalancedStoragePolicy({}, 10, adaptive_size="yes")


def test_abstract_base_cannot_be_instantiated():
    with pytest.raises(TypeError, match="abstract"):
        StoragePolicy({}, 10)

    class HalfDone(StoragePolicy):
        pass

    with pytest.raises(TypeError, match="abstract"):
        HalfDone({}, 10)


def test_state_dict_round_trip():
    policy = ExperienceBalancedStoragePolicy({}, 20, seed=1)
    run(policy, [30, 30])
    other = ExperienceBalancedStoragePolicy({}, 20, seed=9)
    other.load_state_dict(policy.state_dict())
    assert list(other.ext_mem) == list(policy.ext_mem)
    for key in policy.ext_mem:
        assert torch.equal(samples_of(other.ext_mem[key]), samples_of(policy.ext_mem[key]))
    # generators continue identically
    data = make_dataset([7] * 30, start=1000)
    policy(by_hand(data, 2))
    other(by_hand(data, 2))
    for key in policy.ext_mem:
        assert torch.equal(samples_of(other.ext_mem[key]), samples_of(policy.ext_mem[key]))
    with pytest.raises(ValueError, match=r"mem_size of the saved memory \(20\) differs from this policy's mem_size \(30\)"):
        ExperienceBalancedStoragePolicy({}, 30).load_state_dict(policy.state_dict())
