"""Data checked at load time: bad values, bad labels and bad files are errors naming where."""

import gzip
import struct

import numpy as np
import pytest
import torch

from clreplay.benchmarks import (
    class_incremental,
    load_npz_datasets,
    read_idx,
    split_mnist,
    split_npz,
)
from clreplay.benchmarks.checks import check_finite, check_labels, checked_split, remap_labels
from clreplay.data import ClassificationDataset


def write_npz(path, *, x_train=None, y_train=None, x_test=None, y_test=None):
    """A small 4-class archive; any array can be replaced."""
    x = np.arange(32, dtype=np.float32).reshape(8, 4) / 32
    y = np.array([0, 1, 2, 3] * 2)
    np.savez(path, x_train=x if x_train is None else x_train, y_train=y if y_train is None else y_train,
             x_test=x[:4] if x_test is None else x_test, y_test=y[:4] if y_test is None else y_test)
    return path


def write_idx_folder(root, labels=(0, 1, 2, 3), label_code=0x08, label_dtype=">u1", compress=False):
    """MNIST-format files with 2x2 images and the given labels (train and test alike)."""
    root.mkdir(exist_ok=True)
    n = len(labels)
    images = bytes([0, 0, 0x08, 3]) + struct.pack(">III", n, 2, 2) + bytes(range(4 * n))
    label_bytes = bytes([0, 0, label_code, 1]) + struct.pack(">I", n)
    label_bytes += np.asarray(labels).astype(label_dtype).tobytes()
    suffix, opener = (".gz", gzip.open) if compress else ("", open)
    for split in ("train", "t10k"):
        with opener(root / f"{split}-images-idx3-ubyte{suffix}", "wb") as f:
            f.write(images)
        with opener(root / f"{split}-labels-idx1-ubyte{suffix}", "wb") as f:
            f.write(label_bytes)
    return root


# ------------------------------------------------------------ non-finite samples
@pytest.mark.parametrize("bad, shown", [(np.nan, "nan"), (np.inf, "inf"), (-np.inf, "-inf")])
def test_non_finite_sample_in_npz_names_file_split_and_index(tmp_path, bad, shown):
    x = np.zeros((8, 4), dtype=np.float32)
    x[5, 2] = bad
    path = write_npz(tmp_path / "d.npz", x_test=x[:4].copy(), x_train=x)
    with pytest.raises(ValueError, match=(
            rf"^x of the train split of '{tmp_path}/d.npz' must be finite, got {shown} at sample 5 "
            r"\(feature 2\); 1 non-finite value in all$")):
        split_npz(path, 2)


def test_non_finite_in_the_test_split_counts_every_value(tmp_path):
    x_test = np.zeros((4, 4), dtype=np.float32)
    x_test[1, 0] = x_test[3, 3] = np.nan
    path = write_npz(tmp_path / "d.npz", x_test=x_test)
    with pytest.raises(ValueError, match=r"x of the test split of .* got nan at sample 1 \(feature 0\); "
                                         r"2 non-finite values in all"):
        load_npz_datasets(path)


def test_non_finite_float_idx_images_are_refused(tmp_path):
    root = tmp_path / "m"
    root.mkdir()
    pixels = np.zeros((4, 2, 2), dtype=">f4")
    pixels[2, 1, 0] = np.inf
    header = bytes([0, 0, 0x0D, 3]) + struct.pack(">III", 4, 2, 2)
    write_idx_folder(root)
    (root / "train-images-idx3-ubyte").write_bytes(header + pixels.tobytes())
    with pytest.raises(ValueError, match=rf"x of the train split of '{root}' must be finite, got inf "
                                         r"at sample 2 \(feature 2\)"):
        split_mnist(root, 2)


def test_class_incremental_refuses_non_finite_tensors():
    x = torch.zeros(4, 3)
    x[3, 1] = float("nan")
    data = ClassificationDataset(x, torch.tensor([0, 1, 0, 1]))
    with pytest.raises(ValueError, match=r"^x of the test split must be finite, got nan at sample 3"):
        class_incremental(ClassificationDataset(torch.zeros(4, 3), torch.tensor([0, 1, 0, 1])), data, 2)


def test_finite_check_scans_in_chunks(monkeypatch):
    import clreplay.benchmarks.checks as checks

    monkeypatch.setattr(checks, "_CHUNK_ELEMENTS", 6)  # two rows of 3 per chunk
    x = torch.zeros(7, 3)
    x[5, 1] = float("inf")
    x[6, 0] = float("nan")
    with pytest.raises(ValueError, match=r"got inf at sample 5 \(feature 1\); 2 non-finite values in all"):
        check_finite(x, source="s", split="train")
    check_finite(torch.ones(7, 3), source="s")  # no error
    check_finite(torch.ones(7, 3, dtype=torch.long), source="s")


# ---------------------------------------------------------------------- labels
def test_float_labels_are_refused_not_cast(tmp_path):
    path = write_npz(tmp_path / "d.npz", y_train=np.array([0, 1, 2, 3] * 2) * 0.7)
    with pytest.raises(TypeError, match=rf"labels of the train split of '{path}' must be integers, "
                                        r"got dtype float64 \(e.g. 0.7 at sample 1\)"):
        split_npz(path, 2)
    whole = write_npz(tmp_path / "w.npz", y_test=np.array([0.0, 1.0, 2.0, 3.0]))
    with pytest.raises(TypeError, match=r"labels of the test split .* got dtype float64 \(e.g. 0.0 at sample 0\)"):
        split_npz(whole, 2)


def test_float_idx_labels_are_refused(tmp_path):
    root = write_idx_folder(tmp_path / "m", labels=(0.0, 1.5, 2.0, 3.0), label_code=0x0D, label_dtype=">f4")
    with pytest.raises(TypeError, match=r"labels of the train split .* must be integers, got dtype float32 "
                                        r"\(e.g. 1.5 at sample 1\)"):
        split_mnist(root, 2)


def test_negative_labels_are_refused_at_load_time(tmp_path):
    path = write_npz(tmp_path / "d.npz", y_train=np.array([0, 1, 2, 3, 0, -1, 2, 3]))
    with pytest.raises(ValueError, match=rf"labels of the train split of '{path}' must be non-negative "
                                         r"class indices, got -1 at sample 5"):
        split_npz(path, 2)
    root = write_idx_folder(tmp_path / "m", labels=(0, 1, -3, 2), label_code=0x09, label_dtype="i1")
    with pytest.raises(ValueError, match=r"must be non-negative class indices, got -3 at sample 2"):
        split_mnist(root, 2)


def test_class_incremental_refuses_negative_labels():
    data = ClassificationDataset(torch.zeros(4, 2), torch.tensor([0, 1, -2, 1]))
    with pytest.raises(ValueError, match="labels of the train split must be non-negative class indices, "
                                         "got -2 at sample 2"):
        class_incremental(data, data, 2)


def test_labels_must_be_one_per_sample(tmp_path):
    path = write_npz(tmp_path / "d.npz", y_train=np.array([[0], [1], [2], [3]] * 2))
    with pytest.raises(ValueError, match=r"labels of the train split .* must be one-dimensional, got shape \(8, 1\)"):
        split_npz(path, 2)
    path = write_npz(tmp_path / "e.npz", y_test=np.array([0, 1, 2]))
    with pytest.raises(ValueError, match=r"labels of the test split .* must give one label per sample \(4\), got 3"):
        split_npz(path, 2)


def test_text_samples_are_refused():
    with pytest.raises(TypeError, match="x of the train split of 'a' must hold numbers, got dtype <U1"):
        checked_split(np.array([["a"], ["b"]]), np.array([0, 1]), source="a")


@pytest.mark.parametrize("labels, original", [
    ([1, 2, 3, 4], [1, 2, 3, 4]),            # 1-based
    ([0, 5, 7, 100], [0, 5, 7, 100]),        # sparse
])
def test_sparse_and_one_based_labels_are_remapped_and_recorded(tmp_path, labels, original):
    lookup = np.array(labels)
    path = write_npz(tmp_path / "d.npz", y_train=lookup[[0, 1, 2, 3] * 2], y_test=lookup[[3, 2, 1, 0]])
    bench = split_npz(path, 2, seed=None)
    assert bench.original_labels == original
    assert bench.class_order == [0, 1, 2, 3]
    assert bench.train_stream[0].dataset.targets.tolist() == [0, 1, 0, 1]
    assert bench.test_stream[1].dataset.targets.tolist() == [3, 2]
    root = write_idx_folder(tmp_path / "m", labels=labels)
    assert split_mnist(root, 2).original_labels == original


def test_labels_from_zero_are_kept():
    y = torch.tensor([0, 2, 1, 2])
    train, test, original = remap_labels(y, torch.tensor([1]), source="s")
    assert original is None and train is y


def test_test_labels_unknown_to_train_are_refused():
    with pytest.raises(ValueError, match=r"labels of the test split of 's' must be classes of the train split "
                                         r"\[1, 4\], got also \[2, 9\]"):
        remap_labels(torch.tensor([1, 4]), torch.tensor([4, 9, 2, 9]), source="s")


def test_check_labels_returns_long():
    assert check_labels(np.array([3, 1], dtype=np.uint8)).dtype == torch.long


# ----------------------------------------------------------------------- files
def test_truncated_gz_names_the_file(tmp_path):
    root = write_idx_folder(tmp_path / "m", compress=True)
    target = root / "train-images-idx3-ubyte.gz"
    target.write_bytes(target.read_bytes()[:-12])
    with pytest.raises(ValueError, match=rf"IDX file '{target}' is truncated: its gzip stream ends early"):
        split_mnist(root, 2)


def test_non_gzip_gz_names_the_file(tmp_path):
    root = write_idx_folder(tmp_path / "m", compress=True)
    target = root / "t10k-labels-idx1-ubyte.gz"
    target.write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x04\x00\x01\x02\x03")
    with pytest.raises(ValueError, match=rf"IDX file '{target}' must be gzip-compressed \(its name ends in "
                                         r"\.gz\), got a file starting with b'\\x00\\x00'"):
        split_mnist(root, 2)


def test_corrupt_gz_names_the_file(tmp_path):
    target = tmp_path / "a.gz"
    data = bytearray(gzip.compress(b"\x00\x00\x08\x01" + struct.pack(">I", 2048) + bytes(range(256)) * 8))
    data[-8:-4] = bytes(255 - b for b in data[-8:-4])  # the CRC of the inflated data
    target.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=rf"IDX file '{target}' is a corrupt gzip file"):
        read_idx(target)


def test_gzipped_idx_without_gz_suffix_gets_a_hint(tmp_path):
    (tmp_path / "a.idx").write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x01\x07"))
    with pytest.raises(ValueError, match="it looks gzip-compressed: name it"):
        read_idx(tmp_path / "a.idx")


def test_text_file_named_npz_is_not_an_npz_archive(tmp_path):
    (tmp_path / "d.npz").write_text("x_train,y_train\n1,2\n")
    with pytest.raises(ValueError, match=rf"^path '{tmp_path}/d.npz' is not an npz archive \(a zip of \.npy "
                                         r"arrays, as numpy\.savez writes\): it starts with b'x_tr'$"):
        split_npz(tmp_path / "d.npz", 2)


def test_truncated_npz_names_the_file(tmp_path):
    path = write_npz(tmp_path / "d.npz")
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match=rf"path '{path}' is not a readable npz archive \(truncated or corrupt\)"):
        split_npz(path, 2)


def test_npz_of_python_objects_is_refused(tmp_path):
    y = np.array([0, 1, 2, 3] * 2, dtype=object)
    path = write_npz(tmp_path / "d.npz", y_train=y)
    with pytest.raises(ValueError, match=rf"y_train in '{path}' must be an array of numbers, got Python objects"):
        split_npz(path, 2)


def test_file_based_benchmarks_are_named_after_their_data(tmp_path):
    path = write_npz(tmp_path / "fashion.npz")
    assert split_npz(path, 2).name == "fashion"
    assert split_npz(path, 2, name="my data").name == "my data"
    assert split_mnist(write_idx_folder(tmp_path / "KMNIST"), 2).name == "KMNIST"
    with pytest.raises(ValueError, match="name must be a non-empty str or None, got ' '"):
        split_npz(path, 2, name=" ")


def test_a_run_records_the_label_mapping(tmp_path):
    from clreplay.run import RunConfig, run_experiment

    lookup = np.array([1, 3, 5, 7])
    path = write_npz(tmp_path / "d.npz", y_train=lookup[[0, 1, 2, 3] * 2], y_test=lookup[[3, 2, 1, 0]])
    lines = []
    results = run_experiment(RunConfig(benchmark="split_npz", data=str(path), n_experiences=2, epochs=1,
                                       hidden=[8], mem_size=4), log=lines.append)
    assert results["benchmark"]["original_labels"] == [1, 3, 5, 7]
    assert results["benchmark"]["name"] == "d"
    assert "labels mapped to 0..3: class c is label original_labels[c] of the data, [1, 3, 5, 7]" in lines
