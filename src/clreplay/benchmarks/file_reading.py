"""Reading data files with every size checked against the file before it is allocated.

A file's header says how large its data is; a corrupt or hostile header (an IDX
shape of ``65536**4``, an ``.npy`` shape of a terabyte in a 58 KB archive) or a
small gzip that inflates to gigabytes (39 MB of compressed zeros are 40 GB) must
not make a loader allocate what the header claims. So:

* uncompressed data must fill the file exactly as its header declares (checked
  with ``stat``, nothing read);
* a gzip stream is inflated with a bound: never more than the header declares
  plus one byte, and the stream must end exactly there (longer or shorter is
  refused); a declared size beyond what deflate can produce from the file
  (:data:`MAX_DEFLATE_RATIO` times its compressed size) is refused at once;
* the buffer grows with the data actually inflated, never to the declared size
  up front;
* an ``.npz`` member's ``.npy`` header is read first and must match the member's
  size, which must be one deflate can produce from its compressed size.

Every file is opened with :func:`clreplay.input_files.open_regular` (no FIFO, no
device), and every error names the file.
"""

from __future__ import annotations

import contextlib
import gzip
import math
import os
import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO, Dict, Iterator, Optional, Sequence

import numpy as np

from clreplay.input_files import open_regular, unreadable

#: Deflate's largest inflation ratio (a stream of one repeated byte): a gzip or zip
#: member of ``n`` compressed bytes never inflates to more than about 1032 * n bytes.
MAX_DEFLATE_RATIO = 1032
#: Inflated bytes read per call (the buffer grows by at most this much at a time).
_CHUNK = 1 << 20
_GZIP_MAGIC = b"\x1f\x8b"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def inflation_bound(compressed: int) -> int:
    """The most bytes deflate can inflate ``compressed`` bytes to (plus a header's slack)."""
    return MAX_DEFLATE_RATIO * compressed + 1024


def read_up_to(stream: BinaryIO, n: int) -> bytearray:
    """At most ``n`` bytes of ``stream`` (fewer at its end), read in chunks so that the
    buffer only holds what the stream really gave."""
    data = bytearray()
    while len(data) < n:
        chunk = stream.read(min(_CHUNK, n - len(data)))
        if not chunk:
            break
        data += chunk
    return data


@contextlib.contextmanager
def _gzip_errors(path: Path, what: str) -> Iterator[None]:
    """Truncated, corrupt or unreadable gzip streams as errors naming the file."""
    try:
        yield
    except EOFError:
        raise ValueError(
            f"{what} {str(path)!r} is truncated: its gzip stream ends early (download it again)"
        ) from None
    except (gzip.BadGzipFile, zlib.error) as err:
        raise ValueError(f"{what} {str(path)!r} is a corrupt gzip file: {err}") from None
    except OSError as err:
        raise unreadable(path, what, err) from None


@contextlib.contextmanager
def _opened(path: Path, what: str) -> Iterator[tuple[BinaryIO, int, bool]]:
    """``(stream, size, compressed)``: the file's (inflated) bytes, the file's size and
    whether it is gzip-compressed."""
    with open_regular(path, what=what) as raw:
        size = os.fstat(raw.fileno()).st_size
        if path.suffix != ".gz":
            yield raw, size, False
            return
        head = raw.read(2)
        if head != _GZIP_MAGIC:
            raise ValueError(
                f"{what} {str(path)!r} must be gzip-compressed (its name ends in .gz), got a file "
                f"starting with {head!r}; decompress it or remove the .gz suffix"
            )
        raw.seek(0)
        with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
            yield stream, size, True


def read_file_bytes(path: str | os.PathLike, *, what: str = "file", limit: Optional[int] = None) -> bytes:
    """The bytes of the regular file ``path``, inflated when its name ends in ``.gz``.

    At most ``limit`` bytes (default: what the file can hold, or inflate to); more
    is a ValueError, as are a ``.gz`` that is not gzip, truncated or corrupt.
    """
    path = Path(path)
    with _opened(path, what) as (stream, size, compressed), _gzip_errors(path, what):
        bound = inflation_bound(size) if compressed else size
        limit = bound if limit is None else min(limit, bound)
        data = read_up_to(stream, limit + 1)
    if len(data) > limit:
        raise ValueError(f"{what} {str(path)!r} holds more than {limit:,} bytes"
                         f"{' once inflated' if compressed else ''}; reading stopped there")
    return bytes(data)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (gzipped or not) into an array of its declared shape, after
    checking the declared size against the file (see the module docstring)."""
    path = Path(path)
    what = "IDX file"
    with _opened(path, what) as (stream, size, compressed), _gzip_errors(path, what):
        head = bytes(read_up_to(stream, 4))
        if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in _IDX_DTYPES:
            hint = "; it looks gzip-compressed: name it *.gz" if head[:2] == _GZIP_MAGIC else ""
            raise ValueError(f"path must be an IDX file, got {str(path)!r} with header {head!r}{hint}")
        ndim = head[3]
        raw_dims = bytes(read_up_to(stream, 4 * ndim))
        if len(raw_dims) < 4 * ndim:
            raise ValueError(f"path {str(path)!r} is truncated: its IDX header declares {ndim} "
                             f"dimensions but the file holds {4 + len(raw_dims)} bytes")
        dims = [int.from_bytes(raw_dims[4 * i : 4 * i + 4], "big") for i in range(ndim)]
        dtype = np.dtype(_IDX_DTYPES[head[2]])
        offset = 4 + 4 * ndim
        expected = math.prod(dims) * dtype.itemsize  # exact: Python ints never overflow
        if not compressed and offset + expected != size:
            raise ValueError(f"path {str(path)!r} declares shape {dims} ({expected} bytes) but holds "
                             f"{size - offset} bytes of data")
        if compressed and offset + expected > inflation_bound(size):
            raise ValueError(
                f"path {str(path)!r} declares shape {dims} ({expected:,} bytes), more than its "
                f"{size:,} compressed bytes can inflate to (deflate inflates at most "
                f"{MAX_DEFLATE_RATIO}:1): its header is corrupt"
            )
        data = read_up_to(stream, expected + 1)
    if len(data) > expected:
        raise ValueError(f"path {str(path)!r} holds more data than the {expected:,} bytes its header "
                         f"declares (shape {dims}); reading stopped there: the file is corrupt")
    if len(data) < expected:
        raise ValueError(f"path {str(path)!r} declares shape {dims} ({expected} bytes) but holds "
                         f"{len(data)} bytes of data")
    return np.frombuffer(data, dtype=dtype).reshape(dims)


# --------------------------------------------------------------------- npz
class _Refused(ValueError):
    """A member refused by a check here (its message is final)."""


def _member(archive: zipfile.ZipFile, key: str) -> Optional[zipfile.ZipInfo]:
    for name in (f"{key}.npy", key):
        try:
            return archive.getinfo(name)
        except KeyError:
            continue
    return None


def _check_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, key: str, path: Path,
                  size: int) -> None:
    """The member's sizes are ones its archive can hold, and its ``.npy`` header
    declares exactly the member's size (nothing of the array is read)."""
    where = f"{key} in {str(path)!r}"
    if info.compress_type == zipfile.ZIP_STORED:
        fits = info.file_size == info.compress_size
    elif info.compress_type == zipfile.ZIP_DEFLATED:
        fits = info.file_size <= inflation_bound(info.compress_size)
    else:
        raise _Refused(f"{where} must be stored or deflated (as numpy.savez and "
                         f"numpy.savez_compressed write it), got zip compression method "
                         f"{info.compress_type}")
    if not fits or info.compress_size > size:
        raise _Refused(f"{where} declares {info.file_size:,} bytes from {info.compress_size:,} "
                         f"compressed bytes in a file of {size:,} bytes: the archive is corrupt")
    with archive.open(info) as member:
        version = np.lib.format.read_magic(member)
        reader = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                  else np.lib.format.read_array_header_2_0)
        shape, _, dtype = reader(member)
        offset = member.tell()
    if dtype.hasobject:
        raise _Refused(f"{where} must be an array of numbers, got Python objects (dtype=object), "
                         "which are never unpickled")
    declared = offset + math.prod(shape) * dtype.itemsize
    if declared != info.file_size:
        raise _Refused(f"{where} declares shape {tuple(shape)} of {dtype} ({declared:,} bytes with "
                         f"its header) but holds {info.file_size:,} bytes: the archive is corrupt")


def open_npz(path: str | os.PathLike, keys: Sequence[str]) -> Dict[str, np.ndarray]:
    """The arrays ``keys`` of the ``.npz`` archive ``path`` (no pickled objects).

    A file that is not a zip archive (e.g. a text file named ``.npz``), a truncated or
    corrupt archive, missing keys, arrays of Python objects and headers declaring
    more than the archive holds are ValueErrors naming the file.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"path must name an existing .npz file, got {str(path)!r}")
    if path.is_dir():
        raise ValueError(f"path must name an .npz file, got the folder {str(path)!r}")
    corrupt = (zipfile.BadZipFile, EOFError, zlib.error, ValueError, OSError)
    with open_regular(path, what="npz file") as f:
        head = f.read(4)
        if head not in _ZIP_MAGICS:
            raise ValueError(
                f"path {str(path)!r} is not an npz archive (a zip of .npy arrays, as numpy.savez "
                f"writes): it starts with {head!r}"
            )
        size = os.fstat(f.fileno()).st_size
        f.seek(0)
        try:
            archive = zipfile.ZipFile(f)
        except corrupt as err:
            if isinstance(err, OSError) and not isinstance(err, zipfile.BadZipFile):
                raise unreadable(path, "npz file", err) from None
            raise ValueError(
                f"path {str(path)!r} is not a readable npz archive (truncated or corrupt): {err}"
            ) from None
        with archive:
            members = {key: _member(archive, key) for key in keys}
            missing = [k for k, info in members.items() if info is None]
            if missing:
                raise ValueError(f"path {str(path)!r} must hold arrays {list(keys)}, missing {missing}")
            arrays = {}
            for key, info in members.items():
                try:
                    _check_member(archive, info, key, path, size)
                    with archive.open(info) as member:
                        arrays[key] = np.lib.format.read_array(member, allow_pickle=False)
                except _Refused:
                    raise
                except corrupt as err:
                    raise ValueError(
                        f"{key} in {str(path)!r} is not a readable array (truncated or corrupt "
                        f"archive): {err}"
                    ) from None
    return arrays
