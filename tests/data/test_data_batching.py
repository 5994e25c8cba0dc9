import torch

from clreplay.data import ClassificationDataset, DatasetBatchSource


def test_batches_cover_the_dataset_once_per_epoch():
    ds = ClassificationDataset(torch.arange(10.0).unsqueeze(1), torch.arange(10)).subset(
        torch.arange(9, -1, -1)
    )
    source = DatasetBatchSource(ds, 4, generator=torch.Generator().manual_seed(0))
    assert len(source) == 3
    batches = list(source)
    assert [len(y) for _, y, _ in batches] == [4, 4, 2]
    ys = torch.cat([y for _, y, _ in batches])
    xs = torch.cat([x for x, _, _ in batches]).flatten().long()
    assert sorted(ys.tolist()) == list(range(10))
    assert torch.equal(xs, ys)  # each x stays with its label


def test_same_generator_seed_same_order():
    ds = ClassificationDataset(torch.arange(10.0).unsqueeze(1), torch.arange(10))
    a = [y.tolist() for _, y, _ in DatasetBatchSource(ds, 3, generator=torch.Generator().manual_seed(5))]
    b = [y.tolist() for _, y, _ in DatasetBatchSource(ds, 3, generator=torch.Generator().manual_seed(5))]
    assert a == b
    assert a != [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]


def test_drop_last():
    ds = ClassificationDataset(torch.zeros(10, 1), torch.zeros(10, dtype=torch.long))
    assert len(DatasetBatchSource(ds, 4, drop_last=True)) == 2
    assert len(list(DatasetBatchSource(ds, 4, drop_last=True))) == 2
