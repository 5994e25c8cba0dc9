import pytest
import torch
from conftest import make_dataset

from clreplay.replay import ReplayBatchSource, split_evenly


def source(cur_n=12, groups=(5, 7), batch_size=6, **kwargs):
    # experience e's samples have label e; ids are unique across everything
    current = make_dataset([0] * cur_n, start=0)
    memory = [make_dataset([i + 1] * n, start=1000 * (i + 1)) for i, n in enumerate(groups)]
    return ReplayBatchSource(current, memory, batch_size, generator=torch.Generator().manual_seed(0), **kwargs)


def composition(batches):
    return [torch.bincount(y, minlength=3).tolist() for _, y, _ in batches]


def test_split_evenly():
    assert split_evenly(6, 3) == [2, 2, 2]
    assert split_evenly(7, 3) == [3, 2, 2]
    assert split_evenly(2, 3) == [1, 1, 0]


def test_every_batch_is_balanced_across_experiences():
    batches = list(source(batch_size=6))
    assert len(batches) == 6
    assert composition(batches) == [[2, 2, 2]] * 6


def test_remainder_goes_to_the_current_data_first():
    batches = list(source(batch_size=7))
    assert composition(batches) == [[3, 2, 2]] * 4


def test_last_batch_shrinks_with_the_current_data():
    batches = list(source(cur_n=10, batch_size=7))
    assert composition(batches) == [[3, 2, 2]] * 3 + [[1, 1, 1]]


def test_one_epoch_is_one_pass_over_the_current_data():
    for _ in range(2):
        batches = list(source(cur_n=10, batch_size=7))
        cur_ids = torch.cat([x[y == 0, 0] for x, y, _ in batches])
        assert sorted(cur_ids.long().tolist()) == list(range(10))


def test_samples_keep_their_labels():
    for x, y, _ in source(batch_size=6):
        assert torch.equal((x[:, 0] // 1000).long(), y)


def test_memory_groups_cycle_and_reshuffle():
    src = source(cur_n=30, groups=(4,), batch_size=4)  # 2 memory samples a batch, 15 batches
    ids = torch.cat([x[y == 1, 0] for x, y, _ in src]).long().tolist()
    assert len(ids) == 30
    chunks = [ids[i : i + 4] for i in range(0, 28, 4)]
    assert all(sorted(c) == [1000, 1001, 1002, 1003] for c in chunks)  # each cycle a permutation
    assert len({tuple(c) for c in chunks}) > 1  # reshuffled between cycles


def test_batch_size_mem_adds_memory_samples_split_over_groups():
    batches = list(source(cur_n=10, batch_size=4, batch_size_mem=3))
    assert composition(batches) == [[4, 2, 1]] * 2 + [[2, 2, 1]]


def test_same_generator_seed_same_batches():
    a = [y.tolist() + x[:, 0].tolist() for x, y, _ in source()]
    b = [y.tolist() + x[:, 0].tolist() for x, y, _ in source()]
    assert a == b


def test_needs_memory():
    with pytest.raises(ValueError, match="memory_groups must hold at least one non-empty dataset"):
        ReplayBatchSource(make_dataset([0]), [make_dataset([])], 4)
