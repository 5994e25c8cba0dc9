import pytest
import torch

from clreplay.data import BatchSource, ClassificationDataset, DatasetBatchSource


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


def test_a_mapped_source_maps_every_batch_and_skips_the_wrapped_way():
    from clreplay.data import MappedBatchSource

    class Counting(BatchSource):
        """Three batches; counts the skips made its own way and carries a state."""

        def __init__(self):
            self.skipped, self.state = 0, {"epoch": 4}

        def __len__(self):
            return 3

        def __iter__(self):
            return iter([torch.tensor([0]), torch.tensor([1]), torch.tensor([2])])

        def iterate_from(self, start):
            self.skipped += start
            return iter([torch.tensor([i]) for i in range(start, 3)])

        def state_dict(self):
            return dict(self.state)

        def load_state_dict(self, state):
            self.state = dict(state)

    class Doubled(MappedBatchSource):
        def map(self, batch):
            return batch * 2

    inner = Counting()
    source = Doubled(inner)
    assert len(source) == 3 and [b.item() for b in source] == [0, 2, 4]
    assert [b.item() for b in source.iterate_from(2)] == [4] and inner.skipped == 2
    source.load_state_dict({"epoch": 7})
    assert source.state_dict() == {"epoch": 7} == inner.state
    with pytest.raises(TypeError, match="wraps must be a BatchSource, got list"):
        Doubled([1, 2])
