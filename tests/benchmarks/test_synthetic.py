import pytest
import torch

from clreplay.benchmarks import make_synthetic, split_synthetic


def test_synthetic_is_seeded():
    a, _ = make_synthetic(100, 5, 4, seed=1)
    b, _ = make_synthetic(100, 5, 4, seed=1)
    c, _ = make_synthetic(100, 5, 4, seed=2)
    assert torch.equal(a.storage, b.storage) and not torch.equal(a.storage, c.storage)
    assert torch.bincount(a.targets).tolist() == [25, 25, 25, 25]


def test_split_synthetic_sizes():
    bench = split_synthetic(5, n_samples=1000, n_features=8, n_classes=10)
    assert [len(e.dataset) for e in bench.train_stream] == [200] * 5
    assert bench.n_features == 8


def test_bad_sizes():
    with pytest.raises(ValueError, match="n_samples must be at least n_classes"):
        make_synthetic(3, 2, 5)
    with pytest.raises(ValueError, match="noise must be a positive number, got 0"):
        make_synthetic(10, 2, 2, noise=0)
