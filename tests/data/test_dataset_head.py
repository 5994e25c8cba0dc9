"""ClassificationDataset.head and the copies made by copy()/concat (one copy, exact contents)."""

import pytest
import torch
from torch.utils.data import Dataset

from clreplay.data import ClassificationDataset


def ids_dataset(n=6, task=0):
    x = torch.arange(float(n)).unsqueeze(1) * torch.tensor([1.0, 10.0])  # rows [i, 10 i]
    return ClassificationDataset(x, torch.arange(n) % 3, task)


class Pairs(Dataset):
    """A non-tensor storage: items are (x, label) pairs read one by one."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return torch.tensor([float(i)]), i % 2


def test_head_of_a_compact_dataset_copies_the_first_rows():
    ds = ids_dataset(task=4)
    cut = ds.head(4)
    assert cut.is_compact and cut.storage.shape == (4, 2)
    assert cut.storage.tolist() == [[0.0, 0.0], [1.0, 10.0], [2.0, 20.0], [3.0, 30.0]]
    assert cut.targets.tolist() == [0, 1, 2, 0] and cut.task_labels.tolist() == [4] * 4
    assert cut.storage.data_ptr() != ds.storage.data_ptr()
    cut.storage[0, 0] = 99.0  # owned: the source is untouched
    assert ds.storage[0, 0] == 0.0


def test_head_of_a_view_keeps_the_view_order():
    view = ids_dataset().subset([5, 1, 3, 0])
    cut = view.head(3)
    assert cut.is_compact and cut.storage[:, 0].tolist() == [5.0, 1.0, 3.0]
    assert cut.targets.tolist() == [2, 1, 0]
    whole = view.head(10)  # all of a view: still a copy that owns its samples
    assert whole.is_compact and whole.storage[:, 0].tolist() == [5.0, 1.0, 3.0, 0.0]


def test_head_of_full_length_returns_a_compact_dataset_itself():
    ds = ids_dataset()
    assert ds.head(6) is ds and ds.head(100) is ds
    assert len(ds.head(0)) == 0 and ds.head(0).storage.shape == (0, 2)


def test_head_of_a_non_tensor_storage_reads_samples_into_a_tensor():
    ds = ClassificationDataset(Pairs(5), [0, 1, 0, 1, 0])
    cut = ds.head(2)
    assert cut.is_tensor_backed and cut.storage.tolist() == [[0.0], [1.0]]
    assert cut.targets.tolist() == [0, 1]


@pytest.mark.parametrize("bad, err, msg", [
    (-1, ValueError, "size must be a non-negative int, got -1"),
    (1.5, TypeError, r"size must be a non-negative int, got 1.5 \(float\)"),
])
def test_head_rejects_bad_sizes(bad, err, msg):
    with pytest.raises(err, match=msg):
        ids_dataset().head(bad)


def test_copy_and_concat_hold_exactly_the_samples_in_order():
    base = ids_dataset()
    view = base.subset([4, 2])
    copy = view.copy()
    assert copy.storage.tolist() == [[4.0, 40.0], [2.0, 20.0]] and copy.targets.tolist() == [1, 2]
    other = ids_dataset(3, task=1)
    joined = ClassificationDataset.concat([view, other, base.subset([])])
    assert joined.is_compact and joined.storage[:, 0].tolist() == [4.0, 2.0, 0.0, 1.0, 2.0]
    assert joined.task_labels.tolist() == [0, 0, 1, 1, 1]
    # compact datasets with storages of their own are copied once, never aliased
    both = ClassificationDataset.concat([other, base])
    assert both.storage.shape == (9, 2)
    assert both.storage.data_ptr() not in (other.storage.data_ptr(), base.storage.data_ptr())
    both.storage[0, 0] = 7.0
    assert other.storage[0, 0] == 0.0
