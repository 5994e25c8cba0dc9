import gzip
import struct

import numpy as np
import pytest
import torch

from clreplay.benchmarks import (
    load_idx_datasets,
    load_npz_datasets,
    read_idx,
    split_mnist,
    split_npz,
)


def write_idx(path, array, *, compress=False):
    codes = {np.uint8: 0x08, np.int32: 0x0C}
    header = bytes([0, 0, codes[array.dtype.type], array.ndim])
    header += b"".join(struct.pack(">I", d) for d in array.shape)
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    opener = gzip.open if compress else open
    with opener(path, "wb") as f:
        f.write(payload)


def make_mnist_like(root, n_train=20, n_test=10, compress=False):
    rng = np.random.default_rng(0)
    suffix = ".gz" if compress else ""
    for split, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 4, 4), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        write_idx(root / f"{split}-images-idx3-ubyte{suffix}", images, compress=compress)
        write_idx(root / f"{split}-labels-idx1-ubyte{suffix}", labels, compress=compress)
    return images, labels


def test_read_idx_round_trip(tmp_path):
    array = np.arange(24, dtype=np.int32).reshape(2, 3, 4)
    write_idx(tmp_path / "a.idx", array)
    assert np.array_equal(read_idx(tmp_path / "a.idx"), array)


@pytest.mark.parametrize("compress", [False, True])
def test_mnist_format_loader(tmp_path, compress):
    test_images, test_labels = make_mnist_like(tmp_path, compress=compress)
    train, test = load_idx_datasets(tmp_path)
    assert len(train) == 20 and len(test) == 10
    assert test.storage.shape == (10, 16)
    expected = torch.from_numpy(test_images.reshape(10, 16).astype(np.float32) / 255.0)
    assert torch.equal(test.storage, expected)
    assert test.targets.tolist() == test_labels.tolist()
    bench = split_mnist(tmp_path, 5, seed=None)
    assert [e.classes_in_this_experience for e in bench.train_stream][0] == [0, 1]


def test_truncated_idx_is_refused(tmp_path):
    write_idx(tmp_path / "a.idx", np.zeros((2, 2), dtype=np.uint8))
    data = (tmp_path / "a.idx").read_bytes()
    (tmp_path / "a.idx").write_bytes(data[:-1])
    with pytest.raises(ValueError, match=r"declares shape \[2, 2\] \(4 bytes\) but holds 3 bytes"):
        read_idx(tmp_path / "a.idx")
    (tmp_path / "b.idx").write_bytes(b"hello")
    with pytest.raises(ValueError, match="path must be an IDX file"):
        read_idx(tmp_path / "b.idx")


def test_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        load_idx_datasets(tmp_path)


def test_npz_loader(tmp_path):
    x = np.arange(40, dtype=np.float64).reshape(10, 2, 2)
    y = np.arange(10) % 5
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y, x_test=x[:5], y_test=y[:5])
    train, test = load_npz_datasets(tmp_path / "d.npz")
    assert train.storage.shape == (10, 4) and train.storage.dtype == torch.float32
    assert test.targets.tolist() == [0, 1, 2, 3, 4]
    bench = split_npz(tmp_path / "d.npz", 5)
    assert bench.n_classes == 5
    np.savez(tmp_path / "bad.npz", x_train=x)
    with pytest.raises(ValueError, match=r"missing \['y_train', 'x_test', 'y_test'\]"):
        load_npz_datasets(tmp_path / "bad.npz")
