import torch

from clreplay.benchmarks import load_digits_datasets, split_digits


def test_split_digits_shape_and_split():
    train, test = load_digits_datasets()
    assert len(train) + len(test) == 1797
    assert len(test) == 540  # 30% held out, stratified
    assert train.storage.shape[1] == 64 and train.storage.dtype == torch.float32
    assert 0.0 <= float(train.storage.min()) and float(train.storage.max()) <= 1.0
    # stratified: every class in both parts in proportion
    test_counts = torch.bincount(test.targets, minlength=10).double()
    all_counts = test_counts + torch.bincount(train.targets, minlength=10)
    assert ((test_counts - 0.3 * all_counts).abs() <= 1).all()


def test_split_digits_default_stream():
    bench = split_digits()
    assert bench.n_experiences == 5 and bench.n_classes == 10 and bench.n_features == 64
    assert [len(e.classes_in_this_experience) for e in bench.train_stream] == [2] * 5
    # the train/test split is fixed; only the class order depends on the seed
    other = split_digits(seed=3)
    assert torch.equal(bench.train_stream[0].dataset.storage, other.train_stream[0].dataset.storage)
    assert bench.class_order != other.class_order
