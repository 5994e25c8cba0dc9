"""Hostile data files: sizes read from headers are checked against the file before anything
is allocated, gzip streams are inflated with a bound, special files are refused by name,
train and test splits must agree, and every loader checks and maps labels the same way."""

import gzip
import io
import math
import os
import pickle
import re
import struct
import tarfile
import threading
import zipfile

import numpy as np
import pytest
import torch
from cifar_files import cifar_files, write_cifar
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clreplay.benchmarks import (
    load_cifar10_datasets,
    load_idx_images,
    load_npz_datasets,
    read_idx,
    split_cifar10,
    split_fashion_mnist,
    split_mnist,
    split_npz,
)
from clreplay.benchmarks.checks import remap_labels
from clreplay.benchmarks.file_reading import MAX_DEFLATE_RATIO
from clreplay.benchmarks.safe_pickle import read_cifar_pickle

SETTINGS = settings(max_examples=30, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def idx_bytes(array, dtype_code=0x08):
    header = bytes([0, 0, dtype_code, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx_folder(root, *, train_images=None, test_images=None, train_labels=None, test_labels=None,
                     compress=False, label_code=0x08, label_dtype=">u1"):
    """Four IDX files: 4x4 uint8 images, labels 0..3 unless given."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    labels = np.array([0, 1, 2, 3] * 2)
    parts = {
        "train-images-idx3-ubyte": train_images if train_images is not None
        else rng.integers(0, 256, (8, 4, 4), dtype=np.uint8),
        "t10k-images-idx3-ubyte": test_images if test_images is not None
        else rng.integers(0, 256, (8, 4, 4), dtype=np.uint8),
    }
    suffix, opener = (".gz", gzip.open) if compress else ("", open)
    for name, images in parts.items():
        with opener(root / f"{name}{suffix}", "wb") as f:
            f.write(idx_bytes(images))
    for name, y in (("train-labels-idx1-ubyte", train_labels), ("t10k-labels-idx1-ubyte", test_labels)):
        y = labels if y is None else np.asarray(y)
        data = bytes([0, 0, label_code, 1]) + struct.pack(">I", len(y)) + y.astype(label_dtype).tobytes()
        with opener(root / f"{name}{suffix}", "wb") as f:
            f.write(data)
    return root


def write_npz(path, **arrays):
    x = np.arange(32, dtype=np.float32).reshape(8, 4) / 32
    y = np.array([0, 1, 2, 3] * 2)
    base = {"x_train": x, "y_train": y, "x_test": x[:4], "y_test": y[:4]}
    np.savez(path, **{**base, **arrays})
    return path


def refused_without_blocking(call, fifo, match):
    """``call()`` raises a ValueError matching ``match`` within seconds: a reader that opened
    the FIFO would block until a writer comes (the test plays the writer if it does)."""
    outcome = {}

    def target():
        try:
            call()
        except BaseException as err:  # noqa: BLE001  (reported below)
            outcome["err"] = err

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(20)
    if thread.is_alive():
        try:  # unblock the reader before failing
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass
        thread.join(5)
        pytest.fail(f"reading {fifo} blocked")
    err = outcome.get("err")
    assert isinstance(err, ValueError), err
    assert re.search(match, str(err)), str(err)


# ------------------------------------------------------------ label remapping
def test_split_fashion_mnist_maps_and_records_labels_like_every_loader(tmp_path):
    # Before: a label 200 gave 11 classes with no mapping recorded (original_labels None).
    root = write_idx_folder(tmp_path / "fm", train_labels=[0, 1, 2, 200] * 2, test_labels=[200, 2, 1, 0] * 2)
    bench = split_fashion_mnist(tmp_path / "fm", n_experiences=2, seed=None)
    assert bench.original_labels == [0, 1, 2, 200]
    assert bench.n_classes == 4 and bench.class_order == [0, 1, 2, 3]
    assert bench.test_stream[1].dataset.targets.tolist() == [3, 2, 3, 2]
    assert split_mnist(root, 2, seed=None).original_labels == [0, 1, 2, 200]


def test_a_fashion_mnist_run_says_the_labels_were_mapped(tmp_path):
    from clreplay.run import RunConfig, run_experiment

    write_idx_folder(tmp_path / "fm", train_labels=[0, 1, 2, 200] * 2, test_labels=[200, 2, 1, 0] * 2)
    lines = []
    results = run_experiment(RunConfig(benchmark="split_fashion_mnist", data=str(tmp_path / "fm"),
                                       n_experiences=2, mem_size=4, hidden=[4]), log=lines.append)
    assert results["benchmark"]["original_labels"] == [0, 1, 2, 200]
    assert "labels mapped to 0..3: class c is label original_labels[c] of the data, [0, 1, 2, 200]" in lines


def test_cifar_labels_go_through_the_same_mapping(tmp_path):
    files, _ = cifar_files("cifar10", n_train=10, n_test=4)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    # Only classes 2, 5 and 7: mapped to 0..2 and recorded, as the other loaders do.
    seen = 0
    for name, data in files.items():
        batch = read_cifar_pickle(data)
        if "labels" in batch:
            n = len(batch["labels"])
            labels = [[2, 5, 7][(seen + i) % 3] for i in range(n)]
            seen += n
            data = pickle.dumps({b"data": batch["data"], b"labels": labels}, protocol=2)
        folder.joinpath(name).write_bytes(data)
    bench = split_cifar10(folder, 3, seed=None)
    assert bench.original_labels == [2, 5, 7] and bench.n_classes == 3
    assert bench.train_stream[0].dataset.targets.tolist() == [0, 0, 0, 0]


@SETTINGS
@given(values=st.lists(st.integers(0, 2**62), min_size=1, max_size=6, unique=True))
def test_remapping_costs_memory_in_distinct_labels_not_their_values(values):
    # Before: a lookup table as long as the largest label (2**62 labels: an exabyte).
    train = torch.tensor(values * 3)
    test = torch.tensor(values[::-1])
    mapped_train, mapped_test, original = remap_labels(train, test, source="s")
    classes = sorted(values)
    if classes == list(range(len(classes))):
        assert original is None and mapped_train is train
        return
    assert original == classes
    assert mapped_train.tolist() == [classes.index(v) for v in values * 3]
    assert mapped_test.tolist() == [classes.index(v) for v in values[::-1]]


def test_a_huge_label_in_a_small_npz_is_one_class(tmp_path):
    y = np.array([0, 500_000_000, 2**40, 3] * 2)
    path = write_npz(tmp_path / "d.npz", y_train=y, y_test=y[:4])
    assert path.stat().st_size < 4096
    bench = split_npz(path, 2, seed=None)
    assert bench.original_labels == [0, 3, 500_000_000, 2**40]
    assert bench.train_stream[1].dataset.targets.tolist() == [2, 3, 2, 3]


@pytest.mark.parametrize("value", [2**63, 2**64 - 1])
def test_a_uint64_label_beyond_int64_reports_its_true_value(tmp_path, value):
    y = np.array([0, 1, 2, 3, 0, 1, value, 3], dtype=np.uint64)
    path = write_npz(tmp_path / "d.npz", y_train=y)
    with pytest.raises(ValueError, match=rf"labels of the train split of '{path}' must be class indices "
                                         rf"below 2\*\*63, got {value} at sample 6$"):
        split_npz(path, 2)


# ------------------------------------------------------ train and test shapes
def test_train_and_test_samples_of_different_shapes_are_refused_at_load(tmp_path):
    path = write_npz(tmp_path / "d.npz", x_train=np.zeros((8, 16), np.float32),
                     x_test=np.zeros((4, 20), np.float32))
    with pytest.raises(ValueError, match=rf"^x of the test split of '{path}' must hold samples of the train "
                                         r"split's shape \(16,\), got \(20,\)$"):
        split_npz(path, 2)
    path = write_npz(tmp_path / "e.npz", x_train=np.zeros(8, np.float32), x_test=np.zeros((4, 16), np.float32))
    with pytest.raises(ValueError, match=r"shape \(1,\), got \(16,\)$"):  # a 1-D x: one feature
        load_npz_datasets(path)
    root = write_idx_folder(tmp_path / "m", test_images=np.zeros((8, 5, 5), np.uint8))
    with pytest.raises(ValueError, match=rf"^x of the test split of '{root}' must hold samples of the train "
                                         r"split's shape \(4, 4\), got \(5, 5\)$"):
        split_mnist(root, 2)
    with pytest.raises(ValueError, match=r"shape \(16,\), got \(25,\)$"):  # flattened, the same check
        load_npz_datasets(write_npz(tmp_path / "f.npz", x_test=np.zeros((4, 5, 5), np.float32),
                                    x_train=np.zeros((8, 4, 4), np.float32)))


@SETTINGS
@given(train=st.lists(st.integers(1, 4), min_size=0, max_size=3),
       test=st.lists(st.integers(1, 4), min_size=0, max_size=3))
def test_any_shape_mismatch_is_refused_before_training(tmp_path, train, test):
    path = write_npz(tmp_path / "d.npz", x_train=np.zeros((8, *train), np.float32),
                     x_test=np.zeros((4, *test), np.float32))
    if np.prod(train) == np.prod(test):  # flat benchmarks compare the flattened samples
        assert split_npz(path, 2).n_features == int(np.prod(train))
    else:
        with pytest.raises(ValueError, match="must hold samples of the train split's shape"):
            split_npz(path, 2)


@pytest.mark.parametrize("split", ["train", "test"])
def test_an_empty_split_is_refused_naming_it(tmp_path, split):
    arrays = {f"x_{split}": np.zeros((0, 4), np.float32), f"y_{split}": np.zeros(0, np.int64)}
    if split == "train":
        arrays["y_test"] = np.zeros(4, np.int64)
    path = write_npz(tmp_path / "d.npz", **arrays)
    with pytest.raises(ValueError, match=rf"^x of the {split} split of '{path}' must hold at least one "
                                         r"sample, got none \(shape \(0, 4\)\)$"):
        split_npz(path, 1)
    root = write_idx_folder(tmp_path / "m", **{f"{split}_images": np.zeros((0, 4, 4), np.uint8),
                                               f"{split}_labels": []})
    with pytest.raises(ValueError, match=rf"x of the {split} split of '{root}' must hold at least one sample"):
        split_mnist(root, 1)


# ----------------------------------------------------- sizes against the file
class CountingGzip:
    """Counts the bytes every GzipFile.read returns (what the loader inflated)."""

    def __init__(self, monkeypatch):
        self.total = 0
        real = gzip.GzipFile.read

        def read(this, size=-1):
            data = real(this, size)
            self.total += len(data)
            return data

        monkeypatch.setattr(gzip.GzipFile, "read", read)


def test_a_gzip_of_zeros_longer_than_its_header_is_refused_after_a_bounded_read(tmp_path, monkeypatch):
    # 16 MiB of zeros behind a header declaring 10 images of 28 x 28 (16 KB on disk).
    path = tmp_path / "train-images-idx3-ubyte.gz"
    with gzip.open(path, "wb") as f:
        f.write(bytes([0, 0, 8, 3]) + struct.pack(">III", 10, 28, 28))
        for _ in range(16):
            f.write(bytes(1 << 20))
    assert path.stat().st_size < 32_000
    counter = CountingGzip(monkeypatch)
    with pytest.raises(ValueError, match=rf"^path '{path}' holds more data than the 7,840 bytes its header "
                                         r"declares \(shape \[10, 28, 28\]\); reading stopped there"):
        read_idx(path)
    assert counter.total == 16 + 7840 + 1  # the header, the declared data, one byte more


def test_a_header_declaring_more_than_the_file_can_hold_allocates_nothing(tmp_path):
    for name, data in (("a.idx", bytes([0, 0, 8, 4]) + struct.pack(">IIII", *[65536] * 4) + bytes(64)),
                       ("b.idx.gz", gzip.compress(bytes([0, 0, 8, 4]) + struct.pack(">IIII", *[65536] * 4)))):
        (tmp_path / name).write_bytes(data)
    # 65536**4 = 2**64 bytes: numpy's product wrapped it to 0 before; Python's ints do not.
    with pytest.raises(ValueError, match=r"declares shape \[65536, 65536, 65536, 65536\] "
                                         r"\(18446744073709551616 bytes\) but holds 64 bytes"):
        read_idx(tmp_path / "a.idx")
    with pytest.raises(ValueError, match=r"declares shape \[65536, 65536, 65536, 65536\] "
                                         rf"\(18,446,744,073,709,551,616 bytes\), more than its \d+ compressed "
                                         rf"bytes can inflate to \(deflate inflates at most {MAX_DEFLATE_RATIO}:1\)"):
        read_idx(tmp_path / "b.idx.gz")


@SETTINGS
@given(dims=st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=4),
       extra=st.integers(-3, 3), compress=st.booleans())
def test_any_declared_shape_is_checked_against_the_real_data(tmp_path, monkeypatch, dims, extra, compress):
    small = [d % 5 for d in dims]  # the data really written: small shapes, sometimes the declared one
    declared = small if extra == 0 else dims
    n = int(np.prod(small)) + (extra if extra > 0 else 0)
    header = bytes([0, 0, 8, len(declared)]) + b"".join(struct.pack(">I", d) for d in declared)
    payload = header + bytes(range(256)) * (n // 256) + bytes(range(n % 256))
    path = tmp_path / ("a.idx.gz" if compress else "a.idx")
    path.write_bytes(gzip.compress(payload) if compress else payload)
    with monkeypatch.context() as patch:
        counter = CountingGzip(patch)
        try:
            array = read_idx(path)
        except ValueError as err:
            assert str(path) in str(err)
        else:
            assert list(array.shape) == declared and array.tobytes() == payload[len(header):]
        # Never more inflated than the header declares plus one byte (and what the file holds).
        assert counter.total <= len(header) + min(math.prod(declared), len(payload)) + 1


def test_an_npz_header_declaring_a_huge_array_is_refused_before_allocating(tmp_path):
    forged = io.BytesIO()  # an .npy header declaring 4 PB, then 64 bytes of data
    np.lib.format.write_array_header_1_0(forged, {"descr": "<f4", "fortran_order": False,
                                                  "shape": (10**9, 10**6)})
    forged.write(bytes(64))
    arrays = dict(np.load(write_npz(tmp_path / "d.npz")))
    path = tmp_path / "forged.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("x_train.npy", forged.getvalue())
        for key in ("y_train", "x_test", "y_test"):
            buffer = io.BytesIO()
            np.save(buffer, arrays[key])
            archive.writestr(f"{key}.npy", buffer.getvalue())
    with pytest.raises(ValueError, match=rf"^x_train in '{path}' declares shape \(1000000000, 1000000\) of "
                                         r"float32 \(4,000,000,000,000,128 bytes with its header\) but holds "
                                         r"192 bytes: the archive is corrupt$"):
        split_npz(path, 2)


def test_an_npz_member_declaring_more_than_deflate_can_produce_is_refused(tmp_path):
    path = tmp_path / "d.npz"
    y = np.array([0, 1, 2, 3] * 2)
    np.savez_compressed(path, x_train=np.zeros((8, 4), np.float32), y_train=y,
                        x_test=np.zeros((4, 4), np.float32), y_test=y[:4])
    data = bytearray(path.read_bytes())
    entry = data.rfind(b"x_train.npy") - 46  # its central directory entry
    assert data[entry:entry + 4] == b"PK\x01\x02"
    data[entry + 24:entry + 28] = struct.pack("<I", 2**31)  # the uncompressed size
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=rf"^x_train in '{path}' declares 2,147,483,648 bytes from \d+ "
                                         r"compressed bytes in a file of \d+ bytes: the archive is corrupt$"):
        split_npz(path, 2)


# ------------------------------------------------------------ special files
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifos_are_refused_by_name_in_every_loader(tmp_path):
    root = write_idx_folder(tmp_path / "m")
    os.unlink(root / "t10k-labels-idx1-ubyte")
    os.mkfifo(root / "t10k-labels-idx1-ubyte")
    fifo = root / "t10k-labels-idx1-ubyte"
    match = rf"IDX file '{fifo}' must be a regular file, got a FIFO \(named pipe\), which is never read"
    refused_without_blocking(lambda: split_mnist(root, 2), fifo, match)
    refused_without_blocking(lambda: split_fashion_mnist(root, 2), fifo, match)
    os.mkfifo(tmp_path / "d.npz")
    refused_without_blocking(lambda: split_npz(tmp_path / "d.npz", 2), tmp_path / "d.npz",
                             r"npz file '.*d.npz' must be a regular file, got a FIFO")
    os.mkfifo(tmp_path / "cifar-10-python.tar.gz")
    refused_without_blocking(lambda: split_cifar10(tmp_path / "cifar-10-python.tar.gz"),
                             tmp_path / "cifar-10-python.tar.gz",
                             r"CIFAR-10 archive '.*' must be a regular file, got a FIFO")
    folder, _ = write_cifar(tmp_path / "c", "cifar10", packed=False)
    os.unlink(folder / "test_batch")
    os.mkfifo(folder / "test_batch")
    refused_without_blocking(lambda: load_cifar10_datasets(folder), folder / "test_batch",
                             r"CIFAR-10 batch file '.*test_batch' must be a regular file, got a FIFO")


def test_an_idx_file_linked_to_dev_zero_is_refused(tmp_path):
    root = write_idx_folder(tmp_path / "m")
    os.unlink(root / "train-images-idx3-ubyte")
    os.symlink("/dev/zero", root / "train-images-idx3-ubyte")
    with pytest.raises(ValueError, match=r"IDX file '.*train-images-idx3-ubyte' must be a regular file, got a "
                                         r"character device, which is never read"):
        load_idx_images(root)


def test_a_folder_where_a_label_file_should_be(tmp_path):
    root = write_idx_folder(tmp_path / "m")
    os.unlink(root / "train-labels-idx1-ubyte")
    (root / "train-labels-idx1-ubyte").mkdir()
    with pytest.raises(ValueError, match=rf"^IDX file '{root}/train-labels-idx1-ubyte' must be a regular file, "
                                         r"got a folder$"):
        split_mnist(root, 2)


def deny(monkeypatch, target):
    """os.open raises PermissionError for ``target`` (as chmod 000 does for anyone but root)."""
    real = os.open

    def fake(path, *args, **kwargs):
        if os.fspath(path) == os.fspath(target):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", fake)


@pytest.mark.parametrize("loader", ["npz", "idx", "idx.gz", "cifar-archive", "cifar-folder"])
def test_unreadable_files_name_the_file_in_every_loader(tmp_path, monkeypatch, loader):
    if loader == "npz":
        target = write_npz(tmp_path / "d.npz")
        call, what = (lambda: split_npz(target, 2)), "npz file"
    elif loader.startswith("idx"):
        root = write_idx_folder(tmp_path / "m", compress=loader == "idx.gz")
        target = root / ("t10k-images-idx3-ubyte" + (".gz" if loader == "idx.gz" else ""))
        call, what = (lambda: split_mnist(root, 2)), "IDX file"
    elif loader == "cifar-archive":
        target, _ = write_cifar(tmp_path, "cifar10", packed=True)
        call, what = (lambda: split_cifar10(target)), "CIFAR-10 archive"
    else:
        folder, _ = write_cifar(tmp_path, "cifar10", packed=False)
        target = folder / "data_batch_3"
        call, what = (lambda: split_cifar10(folder)), "CIFAR-10 batch file"
    deny(monkeypatch, target)
    with pytest.raises(PermissionError, match=rf"^{what} '{target}' cannot be read: permission denied "
                                              r"\(check the file's permissions and owner\)$"):
        call()


# ------------------------------------------------------------------- CIFAR
def test_a_truncated_cifar_archive_is_an_error_naming_it(tmp_path):
    path, _ = write_cifar(tmp_path, "cifar10", packed=True, n_train=100)
    data = path.read_bytes()
    for cut in (len(data) // 3, 2 * len(data) // 3):  # inside the batches
        path.write_bytes(data[:cut])
        with pytest.raises(ValueError, match=rf"^root must be a readable \(gzipped\) tar archive, got '{path}', "
                                             r"which is truncated or corrupt .*: download it again$"):
            split_cifar10(path)


def test_an_oversized_cifar_member_is_refused_before_it_is_read(tmp_path, monkeypatch):
    from clreplay.benchmarks import cifar

    path, _ = write_cifar(tmp_path, "cifar10", packed=True)
    monkeypatch.setattr(cifar, "MAX_BATCH_BYTES", 1000)
    with pytest.raises(ValueError, match=r"archive member cifar-10-batches-py/data_batch_1 of .* must be at most "
                                         r"1,000 bytes, its header declares [\d,]+: the archive is corrupt"):
        split_cifar10(path)


@SETTINGS
@given(protocol=st.integers(0, pickle.HIGHEST_PROTOCOL), n=st.integers(0, 3))
def test_cifar_batches_pickled_by_python3_are_read_at_any_protocol(protocol, n):
    # Before: an empty batch at protocols 0-2 was refused as __builtin__.bytes (b"" pickled as bytes()).
    data = np.arange(n * 3072, dtype=np.uint8).reshape(n, 3072)
    batch = {b"data": data, b"labels": list(range(n)), b"batch_label": b"", b"filenames": []}
    read = read_cifar_pickle(pickle.dumps(batch, protocol=protocol), source="batch")
    assert read["data"].shape == (n, 3072) and np.array_equal(read["data"], data)
    assert read["labels"] == list(range(n)) and read["batch_label"] == b""


def test_an_empty_batch_among_others_loads(tmp_path):
    folder, (train_x, train_y, _, _) = write_cifar(tmp_path, "cifar10", packed=False, n_train=40)
    empty = {b"data": np.zeros((0, 3072), np.uint8), b"labels": [], b"batch_label": b"", b"filenames": []}
    (folder / "data_batch_5").write_bytes(pickle.dumps(empty, protocol=2))
    train, _ = load_cifar10_datasets(folder)
    assert len(train) == 32 and train.targets.tolist() == train_y[:32].tolist()


def test_a_tar_with_a_member_of_another_kind_is_still_refused(tmp_path):
    path = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    with pytest.raises(ValueError, match="archive member cifar-10-batches-py/data_batch_1 must be a regular file"):
        split_cifar10(path)
