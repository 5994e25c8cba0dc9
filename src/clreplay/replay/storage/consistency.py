"""The check that every rank of a distributed run holds the same replay memory.

Every rank keeps a full copy of the memory and applies the same decisions to it.
:func:`check_replicated` verifies it after a memory update: each rank computes
:func:`memory_checksums` and the ranks compare them with two ``all_reduce`` calls
(max and min); a difference stops the run on every rank with a
:class:`MemoryMismatchError` naming the first group that differs.

A *full* check reads every byte of the memory: every column of every group's
rows, the rows and their order (exact checksums, see
:mod:`~clreplay.replay.storage.checksum`). A *light* check, for the updates after
each step of online replay, costs what the step wrote: each group's rows and
order, and the store's ``write_digest``, a checksum of every value written since
the memory started to be replicated. Replay runs a full check after every
offline update and at the end of every online experience, and a light one after
every online step.

>>> import torch
>>> from clreplay.data import ClassificationDataset
>>> from clreplay.replay.storage.store import GroupPlan, MemoryStore
>>> class Memory:  # what the checksums read: a store and ext_mem views of it
...     store, ext_mem = MemoryStore(4), {}
>>> data = ClassificationDataset(torch.arange(6.).view(3, 2), torch.tensor([4, 5, 6]))
>>> rows = Memory.store.apply({"a": GroupPlan.of_new(torch.tensor([2, 0]))}, data, origin=0)
>>> Memory.ext_mem["a"] = Memory.store.view(rows["a"])
>>> keys, sums = memory_checksums(Memory)
>>> keys, tuple(sums.shape)
(['a'], (3, 4))
"""

from __future__ import annotations

from typing import Hashable, List, Optional, Tuple

import torch
from torch import Tensor

from clreplay import distributed as idist
from clreplay.replay.storage import checksum


class MemoryMismatchError(RuntimeError):
    """The replay memories of the ranks of a distributed run differ."""


def memory_checksums(policy, *, full: bool = True) -> Tuple[List[Hashable], Tensor]:
    """The group keys of ``policy.ext_mem`` and a float64 tensor of ``2 + groups`` rows of
    :data:`~clreplay.replay.storage.checksum.K` checksums.

    Row 0 covers the keys (in order) and the extra columns' specs, row 1 the store's
    ``write_digest`` (zeros unless it tracks writes), row ``2 + i`` the ``i``-th group:
    its store rows in order and, when ``full``, every column of the store at those
    rows (a group that is not a view of the store: its samples, labels and task labels).
    """
    store, ext_mem = policy.store, policy.ext_mem
    keys = list(ext_mem)
    sums = torch.zeros(2 + len(keys), checksum.K, dtype=torch.float64)
    specs = sorted((name, spec.shape, str(spec.dtype)) for name, spec in store.extras.items())
    sums[0] = checksum.text_digest(repr([repr(k) for k in keys]) + repr(specs))
    if store.write_digest is not None:
        sums[1] = store.write_digest.cpu()
    for i, key in enumerate(keys):
        group = ext_mem[key]
        if len(group) == 0:
            continue
        rows = store.rows_of(group)
        if rows is None:
            x, y, t = group.get_batch(torch.arange(len(group)))
            columns = {"x": x, "y": y, "t": t}
        else:
            columns = {"rows": rows}
            if full:
                columns.update({name: store.read(name, rows) for name in store.columns})
        per_row = sum(checksum.digest_rows(name, value).cpu() for name, value in sorted(columns.items()))
        sums[2 + i] = checksum.combine(per_row)
    return keys, sums


def _differing_rows(sums: Tensor) -> List[int]:
    """Rows of ``sums`` that are not the same on every rank (every rank gets the same list)."""
    extremes = idist.all_reduce(torch.cat([sums, -sums]), op="max")
    high, low = extremes[: len(sums)], -extremes[len(sums) :]
    return torch.nonzero((high != low).any(dim=1)).flatten().tolist()


class ReplicaWatch:
    """Light checks after every step that never wait for the device.

    Each step's light checksums (the groups' rows and order, the digest of every value
    written) are folded into one row per rank and compared over the ranks on the device
    (one ``all_reduce``); the first step whose memories differ is kept there, and read
    once, at the end of the epoch (:meth:`report`), which then names the group that
    differs. A no-op in a single process.
    """

    def __init__(self) -> None:
        self._first: Optional[Tensor] = None  # the first step that differed (-1: none), on the device

    def step(self, policy, strategy, step: int) -> None:
        if not idist.is_distributed(strategy):
            return
        keys, sums = memory_checksums(policy, full=False)
        sums = torch.cat([sums[:2].flatten(), checksum.combine(sums[2:]) if len(keys) else sums[0] * 0])
        extremes = idist.all_reduce(torch.cat([sums, -sums]), op="max")
        differ = (extremes[: len(sums)] != -extremes[len(sums):]).any()
        first = torch.full((), -1, dtype=torch.long, device=differ.device) if self._first is None else self._first
        self._first = torch.where((first < 0) & differ, torch.full_like(first, step), first)

    def report(self, policy, strategy, *, where: str) -> None:
        """Raise :class:`MemoryMismatchError` if a step of the epoch left the ranks' memories
        different (``where``: "of experience 2", for the message); then watch afresh."""
        first, self._first = self._first, None
        if first is None or int(first) < 0:
            return
        check_replicated(policy, strategy, full=False, when=f"step {int(first)} {where}", assume_differ=True)


def check_replicated(policy, strategy, *, when: str, full: bool = True, assume_differ: bool = False) -> None:
    """Raise :class:`MemoryMismatchError` on every rank unless every rank's memory in
    ``policy`` is the same (a no-op unless ``strategy`` runs over several processes).

    ``when`` says which update is checked (e.g. ``"experience 2"``), for the message;
    ``full=False`` makes the light check (see the module's description), which turns
    into a full one if the values written differ, to name the group that differs.
    """
    if not idist.is_distributed(strategy):
        return
    keys, sums = memory_checksums(policy, full=full)
    counts = idist.all_reduce(torch.tensor([len(keys), -len(keys)], dtype=torch.int64), op="max")
    rank = idist.get_rank()
    where = f"replay memory differs between ranks after {when}"
    if int(counts[0]) != -int(counts[1]):
        raise MemoryMismatchError(
            f"{where}: the ranks hold between {-int(counts[1])} and {int(counts[0])} groups "
            f"(rank {rank} holds {keys!r})"
        )
    differ = _differing_rows(sums)
    if not differ and not assume_differ:
        return
    if not differ:
        differ = [1]  # the values written differed at the step named, though the sums agree now
    if differ[0] == 0:
        raise MemoryMismatchError(
            f"{where}: the group keys or the extra columns differ (rank {rank} holds groups {keys!r})"
        )
    if differ == [1] and not full:  # read every byte to find the group
        differ = [1] + [i for i in _differing_rows(memory_checksums(policy)[1]) if i > 1]
    groups = [keys[i - 2] for i in differ if i > 1]
    if not groups:
        raise MemoryMismatchError(
            f"{where}: the values written since the memory is replicated differ, though the "
            f"stored bytes are now equal (rank {rank} holds groups {keys!r})"
        )
    raise MemoryMismatchError(
        f"{where}: first differing group {groups[0]!r} (of {len(groups)} differing: {groups!r}); "
        f"rank {rank} holds {len(policy.ext_mem[groups[0]])} samples in it"
    )
