"""Small CIFAR archives written byte for byte in the official "python version" format.

The official batch files are Python 2 ``cPickle`` dumps (protocol 2): a dict whose
keys are Python 2 ``str`` (``SHORT_BINSTRING``/``BINSTRING``, read as ``bytes`` with
``encoding='bytes'``), ``b'data'`` a numpy ``uint8`` array (N, 3072) pickled through
``numpy.core.multiarray._reconstruct``, labels as lists of ints. The opcodes are
written here by hand, so the files are what Python 2 and numpy 1.x wrote, whatever
Python and numpy run the tests.
"""

import io
import struct
import tarfile

import numpy as np


def _str(b: bytes) -> bytes:
    if len(b) < 256:
        return b"U" + bytes([len(b)]) + b
    return b"T" + struct.pack("<i", len(b)) + b


def _int(v: int) -> bytes:
    if 0 <= v < 256:
        return b"K" + bytes([v])
    if 0 <= v < 65536:
        return b"M" + struct.pack("<H", v)
    return b"J" + struct.pack("<i", v)


def _uint8_array(a: np.ndarray) -> bytes:
    assert a.dtype == np.uint8
    out = b"cnumpy.core.multiarray\n_reconstruct\n" + b"cnumpy\nndarray\n"
    out += _int(0) + b"\x85" + _str(b"b") + b"\x87" + b"R"  # _reconstruct(ndarray, (0,), 'b')
    dtype = b"cnumpy\ndtype\n" + _str(b"u1") + _int(0) + _int(1) + b"\x87R"  # dtype('u1', 0, 1)
    dtype += b"(" + _int(3) + _str(b"|") + b"NNN" + b"J\xff\xff\xff\xff" * 2 + _int(0) + b"tb"
    shape = b"(" + b"".join(_int(d) for d in a.shape) + b"t"
    return out + b"(" + _int(1) + shape + dtype + b"\x89" + _str(a.tobytes()) + b"tb"


def _value(v) -> bytes:
    if isinstance(v, np.ndarray):
        return _uint8_array(v)
    if isinstance(v, bytes):
        return _str(v)
    if isinstance(v, int):
        return _int(v)
    if isinstance(v, list):
        return b"](" + b"".join(_value(i) for i in v) + b"e"
    raise TypeError(type(v))


def py2_pickle(d: dict) -> bytes:
    """``cPickle.dump(d, f, 2)`` as Python 2 with numpy 1.x wrote it."""
    return b"\x80\x02}(" + b"".join(_str(k) + _value(v) for k, v in d.items()) + b"u."


def _batch(images, labels, label_key, name):
    return py2_pickle({
        b"batch_label": name.encode(),
        label_key: [int(v) for v in labels],
        b"data": images,
        b"filenames": [f"img_{i}.png".encode() for i in range(len(labels))],
    })


def cifar_files(kind: str, *, n_train: int, n_test: int, seed: int = 0):
    """{file name: bytes} of a small CIFAR-10 or CIFAR-100 folder, and the arrays
    ``(train_x, train_y, test_x, test_y)`` it holds (x as uint8 (N, 3072))."""
    rng = np.random.default_rng(seed)
    n_classes = 10 if kind == "cifar10" else 100
    train_x = rng.integers(0, 256, size=(n_train, 3072), dtype=np.uint8)
    train_x[0] = np.arange(3072) % 251  # a known image: pixel (c, h, w) = (1024c + 32h + w) % 251
    test_x = rng.integers(0, 256, size=(n_test, 3072), dtype=np.uint8)
    train_y = np.arange(n_train) % n_classes
    test_y = np.arange(n_test) % n_classes
    files = {}
    if kind == "cifar10":
        for i, part in enumerate(np.array_split(np.arange(n_train), 5)):
            files[f"data_batch_{i + 1}"] = _batch(train_x[part], train_y[part], b"labels",
                                                  f"training batch {i + 1} of 5")
        files["test_batch"] = _batch(test_x, test_y, b"labels", "testing batch 1 of 1")
        files["batches.meta"] = py2_pickle({b"label_names": [b"airplane"] * 10,
                                            b"num_cases_per_batch": 10000, b"num_vis": 3072})
    else:
        for name, x, y in (("train", train_x, train_y), ("test", test_x, test_y)):
            files[name] = py2_pickle({b"filenames": [b"f.png"] * len(y), b"batch_label": b"b",
                                      b"fine_labels": [int(v) for v in y],
                                      b"coarse_labels": [int(v) // 5 for v in y], b"data": x})
        files["meta"] = py2_pickle({b"fine_label_names": [b"apple"] * 100,
                                    b"coarse_label_names": [b"fish"] * 20})
    return files, (train_x, train_y, test_x, test_y)


FOLDERS = {"cifar10": ("cifar-10-batches-py", "cifar-10-python.tar.gz"),
           "cifar100": ("cifar-100-python", "cifar-100-python.tar.gz")}


def write_cifar(root, kind: str, *, packed: bool, n_train: int = 50, n_test: int = 20, seed: int = 0):
    """Write the folder (``packed=False``) or its ``.tar.gz`` under ``root``; returns
    (path, arrays)."""
    files, arrays = cifar_files(kind, n_train=n_train, n_test=n_test, seed=seed)
    folder, archive = FOLDERS[kind]
    if not packed:
        (root / folder).mkdir(parents=True)
        for name, data in files.items():
            (root / folder / name).write_bytes(data)
        return root / folder, arrays
    root.mkdir(parents=True, exist_ok=True)
    path = root / archive
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"{folder}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path, arrays
