import pytest
import torch
from torch.utils.data import Dataset

from clreplay.data import ClassificationDataset


def small():
    x = torch.arange(20.0).reshape(10, 2)
    y = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2, 3, 4])
    return ClassificationDataset(x, y)


def test_indexing_returns_the_right_sample():
    ds = small()
    x, y, t = ds[3]
    assert x.tolist() == [6.0, 7.0] and int(y) == 3 and int(t) == 0
    x, y, t = ds[-1]
    assert x.tolist() == [18.0, 19.0] and int(y) == 4
    assert len(ds) == 10
    assert ds.targets.dtype == torch.long and ds.task_labels.tolist() == [0] * 10


def test_task_labels_int_or_tensor():
    ds = ClassificationDataset(torch.zeros(3, 1), [0, 1, 0], task_labels=2)
    assert ds.task_labels.tolist() == [2, 2, 2]
    ds = ClassificationDataset(torch.zeros(3, 1), [0, 1, 0], task_labels=torch.tensor([0, 1, 2]))
    assert ds[2][2].item() == 2


def test_subset_composes_positions():
    ds = small()
    sub = ds.subset([9, 7, 5, 3]).subset([3, 1])
    assert sub.targets.tolist() == [3, 2]
    assert sub[0][0].tolist() == [6.0, 7.0]
    assert sub.indices.tolist() == [3, 7]
    assert sub.storage is ds.storage


def test_subsets_stay_flat_after_1000_operations():
    ds = small()
    view = ds
    for i in range(1000):
        view = view.subset(torch.arange(len(view)).flip(0)) if i % 2 else view.subset(
            torch.arange(len(view))
        )
        view = ClassificationDataset.concat([view.subset([0]), view.subset(torch.arange(1, len(view)))])
    # still one storage and one index array: no chain of wrappers
    assert view.storage is ds.storage
    assert view.indices.dim() == 1 and len(view) == 10
    assert not isinstance(view.storage, ClassificationDataset)
    assert sorted(view.targets.tolist()) == sorted(ds.targets.tolist())


def test_concat_of_different_storages_copies_in_order():
    a = ClassificationDataset(torch.tensor([[1.0], [2.0]]), [0, 1])
    b = ClassificationDataset(torch.tensor([[3.0]]), [5], task_labels=4)
    both = ClassificationDataset.concat([a, b.subset([0])])
    assert both.targets.tolist() == [0, 1, 5]
    assert both.task_labels.tolist() == [0, 0, 4]
    assert both.storage.flatten().tolist() == [1.0, 2.0, 3.0]
    assert both.is_compact


def test_copy_owns_only_its_samples():
    ds = small()
    copy = ds.subset([4, 2]).copy()
    assert copy.storage.shape == (2, 2)
    assert copy.storage.data_ptr() != ds.storage.data_ptr()
    assert copy.targets.tolist() == [4, 2]


def test_get_batch_reads_by_index():
    ds = small().subset([8, 6, 4])
    x, y, t = ds.get_batch(torch.tensor([2, 0]))
    assert x.tolist() == [[8.0, 9.0], [16.0, 17.0]]
    assert y.tolist() == [4, 3]


def test_transform_applied_per_sample():
    ds = ClassificationDataset(torch.ones(3, 2), [0, 1, 2], transform=lambda x: x * 10)
    assert ds[0][0].tolist() == [10.0, 10.0]
    x, _, _ = ds.get_batch([0, 2])
    assert x.tolist() == [[10.0, 10.0], [10.0, 10.0]]


class _ListDataset(Dataset):
    def __init__(self):
        self.data = [torch.full((2,), float(i)) for i in range(4)]
        self.targets = [0, 1, 0, 1]

    def __len__(self):
        return 4

    def __getitem__(self, i):
        return self.data[i], self.targets[i]


def test_wraps_any_dataset_with_targets():
    ds = ClassificationDataset.from_dataset(_ListDataset())
    assert not ds.is_tensor_backed
    assert ds.targets.tolist() == [0, 1, 0, 1]
    assert ds[3][0].tolist() == [3.0, 3.0]
    x, y, _ = ds.subset([3, 1]).get_batch([0, 1])
    assert x.tolist() == [[3.0, 3.0], [1.0, 1.0]] and y.tolist() == [1, 1]
    copy = ds.subset([2]).copy()
    assert copy.is_tensor_backed and copy.storage.tolist() == [[2.0, 2.0]]


def test_state_dict_round_trip():
    ds = small().subset([5, 1])
    back = ClassificationDataset.from_state_dict(ds.state_dict())
    assert torch.equal(back.storage, ds.storage[[5, 1]])
    assert back.targets.tolist() == [0, 1]


def test_lengths_of_x_and_y_must_match():
    with pytest.raises(ValueError, match=r"x and y must have the same length, got len\(x\)=3 and len\(y\)=2"):
        ClassificationDataset(torch.zeros(3, 1), torch.tensor([0, 1]))


def test_labels_must_be_integers():
    with pytest.raises(TypeError, match="y must hold integer labels, got dtype torch.float32"):
        ClassificationDataset(torch.zeros(2, 1), torch.tensor([0.0, 1.0]))


def test_x_must_be_a_tensor_or_dataset():
    with pytest.raises(TypeError, match="x must be a Tensor or a sized torch Dataset, got list"):
        ClassificationDataset([[0.0]], [0])


def test_wrapping_needs_targets():
    class NoTargets(Dataset):
        def __len__(self):
            return 1

        def __getitem__(self, i):
            return torch.zeros(1), 0

    with pytest.raises(TypeError, match="dataset must have a 'targets' attribute"):
        ClassificationDataset.from_dataset(NoTargets())


def test_out_of_range_subset():
    with pytest.raises(IndexError, match=r"indices must lie in \[0, 10\), got values in \[0, 10\]"):
        small().subset([0, 10])
    with pytest.raises(IndexError, match="index 10 is out of range"):
        small()[10]
