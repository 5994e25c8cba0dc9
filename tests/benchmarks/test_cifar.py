import hashlib
import io
import os
import pickle
import tarfile
import warnings

import numpy as np
import pytest
import torch
from cifar_files import cifar_files, py2_pickle, write_cifar

from clreplay.benchmarks import cifar
from clreplay.benchmarks.cifar import (
    load_cifar10_datasets,
    load_cifar100_datasets,
    split_cifar10,
    split_cifar100,
)
from clreplay.benchmarks.safe_pickle import UnsafePickleError, read_cifar_pickle


def test_handwritten_python2_pickle_matches_the_standard_reader():
    # Independent reference: the standard (unsafe) unpickler on a file we wrote ourselves.
    files, (train_x, train_y, _, _) = cifar_files("cifar10", n_train=10, n_test=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numpy 2 warns about numpy.core
        reference = pickle.loads(files["data_batch_1"], encoding="bytes")
    ours = read_cifar_pickle(files["data_batch_1"])
    assert sorted(ours) == sorted(k.decode() for k in reference)
    assert np.array_equal(ours["data"], reference[b"data"]) and ours["data"].dtype == np.uint8
    assert ours["labels"] == reference[b"labels"] == [0, 1]
    assert ours["batch_label"] == b"training batch 1 of 5"


@pytest.mark.parametrize("packed", [False, True])
def test_cifar10_loader_layout_and_labels(tmp_path, packed):
    path, (train_x, train_y, test_x, test_y) = write_cifar(tmp_path, "cifar10", packed=packed)
    train, test = load_cifar10_datasets(path)
    assert train.storage.shape == (50, 3, 32, 32) and train.storage.dtype == torch.uint8
    assert test.storage.shape == (20, 3, 32, 32)
    # Row-major RGB planes: pixel (c, h, w) of the known image is (1024c + 32h + w) % 251.
    assert int(train.storage[0, 1, 2, 3]) == 87 and int(train.storage[0, 2, 31, 31]) == 3071 % 251
    assert torch.equal(train.storage.reshape(50, 3072), torch.from_numpy(train_x))
    assert train.targets.tolist() == train_y.tolist() and test.targets.tolist() == test_y.tolist()
    # The folder holding the archive or the batch folder works as root too.
    again, _ = load_cifar10_datasets(tmp_path)
    assert torch.equal(again.storage, train.storage)


def test_split_cifar10_and_cifar100_streams(tmp_path):
    path10, _ = write_cifar(tmp_path / "a", "cifar10", packed=True)
    bench = split_cifar10(path10, seed=None)
    assert [e.classes_in_this_experience for e in bench.train_stream] == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    assert bench.input_shape == (3, 32, 32) and bench.is_image
    assert bench.mean == (0.4914, 0.4822, 0.4465) and bench.name == "split_cifar10"
    path100, (_, train_y, _, _) = write_cifar(tmp_path / "b", "cifar100", packed=False, n_train=200, n_test=100)
    ten = split_cifar100(path100, seed=None)
    assert ten.n_experiences == 10 and ten.train_stream[3].classes_in_this_experience == list(range(30, 40))
    assert len(ten.train_stream[0]) == 20  # classes 0-9, two images each among 200
    twenty = split_cifar100(path100, 20, seed=None)
    assert [len(e.classes_in_this_experience) for e in twenty.train_stream] == [5] * 20
    train, _ = load_cifar100_datasets(path100)
    assert train.targets.tolist() == train_y.tolist()


def test_anything_but_the_documented_dict_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    with pytest.raises(UnsafePickleError, match=r"refers to posix.system, which this reader refuses"):
        read_cifar_pickle(pickle.dumps({b"data": Evil()}, protocol=2), source="batch")
    assert not (tmp_path / "pwned").exists()
    with pytest.raises(UnsafePickleError, match="must hold a dict, got list"):
        read_cifar_pickle(pickle.dumps([1, 2]))
    with pytest.raises(UnsafePickleError, match=r"dtype must be one of .* got 'O8'"):
        read_cifar_pickle(pickle.dumps({b"data": np.array([None], dtype=object)}, protocol=2))
    with pytest.raises(UnsafePickleError, match="is not a readable pickle"):
        read_cifar_pickle(py2_pickle({b"labels": [1]})[:-3])
    # A batch file holding a forged object inside the archive is refused by name.
    folder, _ = write_cifar(tmp_path / "c", "cifar10", packed=False)
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": Evil()}, protocol=2))
    with pytest.raises(UnsafePickleError, match="test_batch refers to posix.system"):
        load_cifar10_datasets(folder)


def test_wrong_contents_are_clear_errors(tmp_path):
    folder, _ = write_cifar(tmp_path, "cifar10", packed=False)
    (folder / "data_batch_2").write_bytes(py2_pickle({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}))
    with pytest.raises(ValueError, match=r"data_batch_2: data must be a uint8 array \(N, 3072\), got uint8 \(2, 100\)"):
        load_cifar10_datasets(folder)
    (folder / "data_batch_2").write_bytes(py2_pickle({b"data": np.zeros((1, 3072), np.uint8), b"labels": [10]}))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 10\), got values in \[10, 10\]"):
        load_cifar10_datasets(folder)
    with pytest.raises(FileNotFoundError, match="root must be CIFAR-10's cifar-10-python.tar.gz"):
        load_cifar10_datasets(tmp_path / "nowhere")


def test_sha256_check(tmp_path, monkeypatch):
    path, _ = write_cifar(tmp_path, "cifar10", packed=True)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(ValueError, match=(
            f"SHA-256 mismatch for .*: got {digest}, expected {cifar.CIFAR_SHA256['cifar-10-python.tar.gz']} "
            r"\(the published SHA-256 of cifar-10-python.tar.gz\)")):
        load_cifar10_datasets(path, check_sha256=True)
    assert len(load_cifar10_datasets(path, check_sha256=digest)[0]) == 50
    monkeypatch.setitem(cifar.CIFAR_SHA256, "cifar-10-python.tar.gz", digest)
    assert len(load_cifar10_datasets(path, check_sha256=True)[1]) == 20
    folder, _ = write_cifar(tmp_path / "f", "cifar10", packed=False)
    with pytest.raises(ValueError, match="check_sha256 verifies the cifar-10-python.tar.gz archive"):
        load_cifar10_datasets(folder, check_sha256=True)


def test_archive_with_a_link_member_is_refused(tmp_path):
    path = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name in cifar.CIFAR10.train_files + cifar.CIFAR10.test_files:
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(ValueError, match="archive member cifar-10-batches-py/data_batch_1 must be a regular file"):
        load_cifar10_datasets(path)
