"""Distributed helpers in one module: the rest of clreplay reads the same with 1 or N processes.

Everything here is a small function over ``torch.distributed``: the rank, the
world size, collectives (all_gather of tensors whose first dimension differs per
rank, broadcast, all_reduce), rank-0-only IO, and joining a process group from
the environment ``torchrun`` (or :func:`clreplay.launch.launch`) gives a process. With
no process group (a single process), every collective is the identity, so code
written once runs unchanged in one process or in many.

Collectives move tensors to the backend's device (the current CUDA device for
``nccl``, the CPU for ``gloo``) and return them on the device they came from.

>>> get_rank(), get_world_size(), is_main()
(0, 1, True)
>>> all_gather(torch.arange(3)).tolist()
[0, 1, 2]
>>> all_reduce(torch.tensor([2.0]), op="max").tolist()
[2.0]
"""

from __future__ import annotations

import functools
import os
from datetime import timedelta
from typing import Any, Callable, List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
from torch import Tensor

from clreplay._validation import check_choice

_OPS = {"sum": "SUM", "max": "MAX", "min": "MIN", "product": "PRODUCT"}
#: How long a collective may wait for the other ranks before the run fails.
DEFAULT_TIMEOUT = timedelta(minutes=30)


# ------------------------------------------------------------------- who am I
def is_initialized() -> bool:
    """True inside an initialized process group."""
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    """This process's rank in the process group (0 without one)."""
    return dist.get_rank() if is_initialized() else 0


def get_world_size() -> int:
    """The number of processes in the group (1 without one)."""
    return dist.get_world_size() if is_initialized() else 1


def get_local_rank() -> int:
    """This process's index on its machine: ``LOCAL_RANK`` (set by torchrun and by
    :func:`launch`), else the rank."""
    value = os.environ.get("LOCAL_RANK")
    return int(value) if value is not None else get_rank()


def is_main() -> bool:
    """True on rank 0, the process that writes files and prints (and in a single process)."""
    return get_rank() == 0


def is_distributed(component: Any) -> bool:
    """Whether ``component`` (a strategy, or anything with a run ``context``) runs over
    several processes: its ``context.world_size`` is above 1. A plain object is not."""
    world_size = getattr(getattr(component, "context", None), "world_size", 1)
    return isinstance(world_size, int) and world_size > 1  # a mock's context is no process group


def get_backend() -> Optional[str]:
    """The process group's backend (``"gloo"``, ``"nccl"``), None without a group."""
    return dist.get_backend() if is_initialized() else None


def backend_for(device: str | torch.device) -> str:
    """The backend for a run on ``device``: ``nccl`` on CUDA, ``gloo`` on the CPU.

    >>> backend_for("cpu"), backend_for("cuda:1")
    ('gloo', 'nccl')
    """
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


# ----------------------------------------------------------------- collectives
def _comm_device() -> torch.device:
    if get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def barrier() -> None:
    """Wait until every rank gets here (nothing to wait for in a single process)."""
    if get_world_size() > 1:
        if get_backend() == "nccl":
            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()


def all_reduce(tensor: Tensor, op: str = "sum") -> Tensor:
    """``tensor`` reduced over every rank with ``op`` (sum, max, min, product); a new
    tensor on ``tensor``'s device (``tensor`` itself is left as it was)."""
    check_choice("op", op, _OPS)
    if get_world_size() == 1:
        return tensor.clone()
    out = tensor.detach().to(_comm_device(), copy=True)
    dist.all_reduce(out, op=getattr(dist.ReduceOp, _OPS[op]))
    return out.to(tensor.device)


def broadcast(tensor: Tensor, src: int = 0) -> Tensor:
    """Rank ``src``'s ``tensor`` on every rank (each passes a tensor of the same shape
    and dtype); a new tensor on ``tensor``'s device."""
    if get_world_size() == 1:
        return tensor.clone()
    out = tensor.detach().contiguous().to(_comm_device(), copy=True)
    dist.broadcast(out, src=src)
    return out.to(tensor.device)


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s picklable ``obj`` on every rank."""
    if get_world_size() == 1:
        return obj
    box = [obj]
    device = _comm_device() if get_backend() == "nccl" else None
    dist.broadcast_object_list(box, src=src, device=device)
    return box[0]


#: dtypes a gathered tensor may have (its index travels with the shape).
_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.int32,
           torch.int16, torch.int8, torch.uint8, torch.bool, torch.complex64, torch.complex128)
_MAX_DIMS = 8


def all_gather(tensor: Tensor, counts: Optional[Sequence[int]] = None) -> Tensor:
    """Every rank's ``tensor`` concatenated along the first dimension, in rank order.

    The first dimension may differ between ranks (0 included); the other dimensions
    and the dtype must agree between ranks that have rows, and a rank without rows
    takes them from the others (so it may pass any empty tensor). The bytes travel
    as they are: every rank ends with the same bits. Returned on ``tensor``'s device.
    ``counts``, each rank's number of rows when every rank knows them (the slices of a
    global batch), saves the exchange of shapes: nothing is then read on the host, so
    a step on a GPU does not wait for it.
    """
    world = get_world_size()
    if world == 1:
        return tensor
    if counts is not None:
        return _gather_known(tensor, list(counts))
    if tensor.dim() > _MAX_DIMS or tensor.dtype not in _DTYPES:
        raise ValueError(
            f"tensor must have at most {_MAX_DIMS} dimensions and one of the dtypes {_DTYPES}, "
            f"got shape {tuple(tensor.shape)} and dtype {tensor.dtype}"
        )
    device = _comm_device()
    rows = tensor.shape[0] if tensor.dim() else 1
    meta = torch.full((3 + _MAX_DIMS,), -1, dtype=torch.int64)
    meta[0], meta[1], meta[2] = rows, _DTYPES.index(tensor.dtype), max(tensor.dim(), 1)
    meta[3 : 3 + max(tensor.dim(), 1) - 1] = torch.tensor(tensor.shape[1:], dtype=torch.int64)
    metas = torch.stack(_gather_equal(meta.to(device))).cpu()
    counts = metas[:, 0].tolist()
    with_rows = [r for r in range(world) if counts[r] > 0]
    if not with_rows:
        return tensor
    ref = metas[with_rows[0]]
    for r in with_rows:
        if not torch.equal(metas[r, 1:], ref[1:]):
            raise ValueError(
                "tensor must have the same trailing shape and dtype on every rank, got "
                f"{_describe(ref)} on rank {with_rows[0]} and {_describe(metas[r])} on rank {r}"
            )
    dtype = _DTYPES[int(ref[1])]
    trailing = tuple(int(d) for d in ref[3 : 3 + int(ref[2]) - 1])
    if counts[get_rank()] == 0:
        tensor = torch.empty((0, *trailing), dtype=dtype, device=tensor.device)
    row_bytes = torch.Size(trailing).numel() * torch.empty((), dtype=dtype).element_size()
    most = max(counts)
    mine = tensor.detach().contiguous().reshape(-1).view(torch.uint8)
    padded = torch.zeros(most * row_bytes, dtype=torch.uint8, device=device)
    padded[: mine.numel()] = mine.to(device)
    out = _gather_equal(padded)
    parts = [out[r][: counts[r] * row_bytes] for r in range(world)]
    joined = torch.cat(parts).view(dtype).reshape(sum(counts), *trailing)
    return joined.to(tensor.device)


def _gather_known(tensor: Tensor, counts: List[int]) -> Tensor:
    """:func:`all_gather` of rows whose count on every rank is known (``counts``)."""
    if len(counts) != get_world_size() or counts[get_rank()] != tensor.shape[0]:
        raise ValueError(f"counts must give every rank's rows ({get_world_size()} ranks, this one "
                         f"{tensor.shape[0]}), got {counts}")
    device, most = _comm_device(), max(counts)
    padded = torch.zeros((most, *tensor.shape[1:]), dtype=tensor.dtype, device=device)
    padded[: tensor.shape[0]] = tensor.to(device)
    parts = _gather_equal(padded)
    return torch.cat([part[:n] for part, n in zip(parts, counts)]).to(tensor.device)


def _gather_equal(tensor: Tensor) -> list:
    """Every rank's ``tensor`` (same shape everywhere), as a list in rank order."""
    out = [torch.empty_like(tensor) for _ in range(get_world_size())]
    dist.all_gather(out, tensor)
    return out


def _describe(meta: Tensor) -> str:
    trailing = tuple(int(d) for d in meta[3 : 3 + int(meta[2]) - 1])
    return f"rows of shape {trailing} and dtype {_DTYPES[int(meta[1])]}"


def sum_counts(counts: Optional[Tensor]) -> Optional[Tensor]:
    """1-D count vectors summed over ranks, the shorter ones padded with zeros (None
    on a rank that counted nothing). None if every rank passed None."""
    if get_world_size() == 1:
        return counts
    device = counts.device if counts is not None else torch.device("cpu")
    length = torch.tensor([-1 if counts is None else len(counts)], dtype=torch.int64)
    longest = int(all_reduce(length, op="max"))
    if longest < 0:
        return None
    padded = torch.zeros(longest, dtype=torch.int64, device=device)
    if counts is not None:
        padded[: len(counts)] = counts
    return all_reduce(padded)


# ------------------------------------------------ work split over the ranks
def shares(total: int, parts: int) -> list:
    """``total`` in ``parts`` contiguous shares differing by at most one, larger first.

    >>> shares(7, 3)
    [3, 2, 2]
    """
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def share_bounds(total: int, rank: int, world_size: int) -> Tuple[int, int]:
    """``[start, stop)`` of rank ``rank``'s contiguous share of ``total`` items.

    >>> [share_bounds(7, r, 3) for r in range(3)]
    [(0, 3), (3, 5), (5, 7)]
    """
    sizes = shares(total, world_size)
    start = sum(sizes[:rank])
    return start, start + sizes[rank]


def map_batches(fn: Callable[[int, int], Tensor], n: int, batch_size: int, *,
                gather: bool) -> Tensor:
    """``fn(start, stop)`` over consecutive batches of ``batch_size`` of ``n`` rows, concatenated.

    With ``gather`` in a process group, each rank computes a contiguous run of the
    batches (the same batches a single process would compute) and the results are
    all-gathered, so every rank holds the same bits, whatever its floating-point
    quirks. ``n`` must be the same on every rank and above 0.
    """
    world = get_world_size() if gather else 1
    n_batches = -(-n // batch_size)
    first, stop = share_bounds(n_batches, get_rank() if world > 1 else 0, world)
    chunks = [fn(b * batch_size, min((b + 1) * batch_size, n)) for b in range(first, stop)]
    mine = torch.cat(chunks) if chunks else torch.empty(0)
    return all_gather(mine) if world > 1 else mine


# ------------------------------------------------------------ rank-0-only IO
def on_main(fn: Callable, *args, **kwargs) -> Any:
    """``fn(*args, **kwargs)`` on rank 0 (files, prints); None on the other ranks."""
    return fn(*args, **kwargs) if is_main() else None


def main_only(fn: Callable) -> Callable:
    """Decorator: the function runs on rank 0 only (and returns None elsewhere)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return on_main(fn, *args, **kwargs)

    return wrapper


def run_on_main(fn: Callable, *args, **kwargs) -> Any:
    """``fn`` on rank 0, its result (or error) on every rank.

    For IO that must happen once (writing a checkpoint): the other ranks wait for
    it and raise the same error if it fails, so no rank is left waiting in a
    later collective.
    """
    outcome: Tuple[bool, Any] = (True, None)
    if is_main():
        try:
            outcome = (True, fn(*args, **kwargs))
        except Exception as err:  # handed to every rank below
            outcome = (False, err)
    if get_world_size() > 1:
        ok, value = outcome
        shared = broadcast_object((ok, value if ok else f"{type(value).__name__}: {value}"))
        if not is_main() and not shared[0]:
            raise RuntimeError(f"rank 0 failed: {shared[1]}")
        if not is_main():
            outcome = shared
    if not outcome[0]:
        raise outcome[1]
    return outcome[1]


# ------------------------------------------------ starting and ending a group
def launched_by_torchrun() -> bool:
    """True when ``torchrun`` (or another launcher setting its variables: :func:`clreplay.launch.launch`)
    started this process."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def init_from_env(*, device: str | torch.device = "cpu", backend: Optional[str] = None,
                  timeout: timedelta = DEFAULT_TIMEOUT) -> Tuple[int, int]:
    """Join the process group described by torchrun's variables (``RANK``, ``WORLD_SIZE``,
    ``MASTER_ADDR``, ``MASTER_PORT``; ``LOCAL_RANK`` picks the GPU); return (rank, world size).

    ``backend`` defaults to :func:`backend_for` ``device``. A group already initialized
    is kept as it is.
    """
    if is_initialized():
        return get_rank(), get_world_size()
    missing = [name for name in ("RANK", "WORLD_SIZE") if name not in os.environ]
    if missing:
        raise ValueError(
            f"environment must set {', '.join(missing)} to join a process group (torchrun sets "
            "RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT), got none"
        )
    backend = backend or backend_for(device)
    if backend == "nccl":
        torch.cuda.set_device(get_local_rank())
    dist.init_process_group(backend, init_method="env://", timeout=timeout)
    return get_rank(), get_world_size()


def teardown() -> None:
    """Leave the process group (no-op without one)."""
    if is_initialized():
        dist.destroy_process_group()
