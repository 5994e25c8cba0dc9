import pytest
import torch
from test_files import make_mnist_like

from clreplay.benchmarks import FASHION_MNIST_DIR, split_fashion_mnist
from clreplay.benchmarks.fashion_mnist import fashion_mnist_files_present


def test_absent_files_say_how_to_get_them(tmp_path):
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=(
            r"lacks train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte .*"
            r"apt-get install dataset-fashion-mnist.*--data DIR")):
        split_fashion_mnist(tmp_path)


def test_any_folder_holding_the_four_files(tmp_path):
    make_mnist_like(tmp_path, compress=True)
    bench = split_fashion_mnist(tmp_path, seed=None)
    assert bench.name == "split_fashion_mnist" and bench.input_shape == (1, 4, 4)
    assert bench.train_stream[0].dataset.storage.dtype == torch.uint8


@pytest.mark.skipif(not fashion_mnist_files_present(), reason=f"no Fashion-MNIST in {FASHION_MNIST_DIR}")
def test_the_real_files():
    bench = split_fashion_mnist()
    train = bench.train_stream[0].dataset.storage
    assert train.shape == (60_000, 1, 28, 28) and train.dtype == torch.uint8
    assert [len(e) for e in bench.train_stream] == [12_000] * 5
    assert [len(e) for e in bench.test_stream] == [2_000] * 5
    assert sorted(c for e in bench.train_stream for c in e.classes_in_this_experience) == list(range(10))
