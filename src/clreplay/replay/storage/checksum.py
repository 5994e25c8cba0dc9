"""Exact checksums of tensor rows: the same numbers on any device, in any summation order.

A checksum is ``K`` independent random linear forms, modulo the prime ``P``, of the
16-bit words (or bytes) of a row. The words and weights are small enough that
every product and every partial sum is an integer below ``2**53``, so float64
arithmetic computes them exactly on the CPU and on a GPU, whatever the order of a
BLAS reduction. Changing any word of a row changes each form with probability
``1 - 1/P``.

>>> import torch
>>> rows = digest_rows("x", torch.tensor([[1.0, 2.0], [1.0, 2.0], [2.0, 1.0]]))
>>> rows.shape, torch.equal(rows[0], rows[1]), torch.equal(rows[0], rows[2])
(torch.Size([3, 4]), True, False)
"""

from __future__ import annotations

import hashlib
from typing import Dict, Tuple

import torch
from torch import Tensor

#: The modulus of the checksums (the largest prime below 2**16).
P = 65521
#: Independent forms per checksum.
K = 4
_SEED = 0x636C7265  # fixed: every process draws the same weights
_cache: Dict[Tuple[str, int, str], Tensor] = {}


def _salt(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=6).digest(), "little")


def weights(name: str, n: int, device: torch.device | str = "cpu") -> Tensor:
    """``(n, K)`` float64 weights in ``[1, P)`` for ``name``: the same in every process."""
    key = (name, n, str(device))
    cached = _cache.get(key)
    if cached is None:
        generator = torch.Generator().manual_seed(_SEED ^ _salt(name))
        cached = torch.randint(1, P, (n, K), generator=generator).double().to(device)
        if len(_cache) > 64:
            _cache.clear()
        _cache[key] = cached
    return cached


def digest_rows(name: str, values: Tensor) -> Tensor:
    """One checksum (``K`` float64 integers in ``[0, P)``) per row of ``values``, from its bits.

    ``name`` salts the weights, so equal bits in two columns give different checksums.
    """
    n = values.shape[0]
    data = values.detach().contiguous().reshape(n, -1)
    raw = data.view(torch.uint8).reshape(n, -1) if data.numel() else data.new_empty((n, 0), dtype=torch.uint8)
    if raw.shape[1] % 2 == 0:
        # 16-bit words (|w| < 2**15) times weights (< 2**16): each product is below 2**31
        # and a row's sum stays below 2**53 up to 2**22 words (8 MiB rows).
        raw = raw.view(torch.int16)
    return torch.remainder(raw.double() @ weights(name, raw.shape[1], raw.device), P)


def combine(per_row: Tensor, name: str = "position") -> Tensor:
    """One checksum of rows in order: ``sum_i per_row[i] * v_i mod P``, position weights ``v``."""
    if len(per_row) == 0:
        return torch.zeros(K, dtype=torch.float64, device=per_row.device)
    order = weights(name, len(per_row), per_row.device)
    # Each product is below 2**32 and reduced before the sum over rows: exact.
    return torch.remainder(torch.remainder(per_row, P) * order, P).sum(0) % P


def chain(running: Tensor, digest: Tensor) -> Tensor:
    """``running * A + digest mod P``: a checksum of a sequence of digests, in order."""
    return torch.remainder(running * 40503 + digest, P)


def text_digest(text: str) -> Tensor:
    """A checksum of a string (group keys, column specs)."""
    raw = hashlib.blake2b(text.encode(), digest_size=2 * K).digest()
    return torch.tensor([int.from_bytes(raw[2 * i : 2 * i + 2], "little") % P for i in range(K)],
                        dtype=torch.float64)
