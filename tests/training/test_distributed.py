"""The distributed helpers: identities in one process, collectives over 2 gloo processes."""

from datetime import timedelta
from types import SimpleNamespace

import pytest
import torch

from clreplay import distributed as idist
from clreplay.launch import launch
from clreplay.training import RunContext


def test_one_process_reads_as_rank_0_of_1_and_collectives_are_identities():
    assert (idist.is_initialized(), idist.get_rank(), idist.get_world_size()) == (False, 0, 1)
    assert idist.is_main() and idist.get_backend() is None
    idist.barrier()
    t = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert idist.all_gather(t) is t
    reduced = idist.all_reduce(t, op="max")
    assert torch.equal(reduced, t) and reduced is not t
    assert torch.equal(idist.broadcast(t), t)
    assert idist.broadcast_object({"a": 1}) == {"a": 1}
    assert idist.sum_counts(None) is None
    assert idist.sum_counts(torch.tensor([1, 2])).tolist() == [1, 2]


def test_rank_0_io_runs_here_and_errors_come_back_unchanged():
    calls = []
    assert idist.on_main(calls.append, 1) is None and calls == [1]
    assert idist.main_only(lambda: "written")() == "written"
    assert idist.run_on_main(lambda x: x * 2, 21) == 42
    with pytest.raises(ZeroDivisionError):
        idist.run_on_main(lambda: 1 / 0)


def test_shares_split_work_contiguously_larger_first():
    assert idist.shares(7, 3) == [3, 2, 2]
    assert idist.shares(1, 2) == [1, 0]
    assert [idist.share_bounds(5, r, 2) for r in range(2)] == [(0, 3), (3, 5)]


def test_map_batches_calls_the_function_on_the_batches_one_process_would_use():
    calls = []

    def rows(start, stop):
        calls.append((start, stop))
        return torch.arange(start, stop)

    assert idist.map_batches(rows, 7, 3, gather=True).tolist() == list(range(7))
    assert calls == [(0, 3), (3, 6), (6, 7)]


def test_backend_and_whether_a_component_is_distributed():
    assert (idist.backend_for("cpu"), idist.backend_for("cuda")) == ("gloo", "nccl")
    assert not idist.is_distributed(SimpleNamespace(device="cpu"))
    assert not idist.is_distributed(SimpleNamespace(context=RunContext(seed=1)))
    assert idist.is_distributed(SimpleNamespace(context=RunContext(rank=1, world_size=2)))


def test_bad_arguments_name_what_was_expected(monkeypatch):
    with pytest.raises(ValueError, match="op must be one of 'sum', 'max', 'min', 'product', got 'avg'"):
        idist.all_reduce(torch.zeros(1), op="avg")
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert not idist.launched_by_torchrun()
    with pytest.raises(ValueError, match="environment must set RANK, WORLD_SIZE to join a process group"):
        idist.init_from_env()


def _collectives():
    rank = idist.get_rank()
    out = {"rank": rank, "local_rank": idist.get_local_rank(), "world": idist.get_world_size(),
           "threads": torch.get_num_threads()}
    # rank 0 has no rows (and passes a tensor of another shape), rank 1 has three.
    mine = torch.empty(0) if rank == 0 else torch.arange(6, dtype=torch.float64).view(3, 2)
    out["gathered"] = idist.all_gather(mine)
    # with every rank's count known, no shapes are exchanged (rows keep their trailing shape)
    known = torch.empty(0, 2, dtype=torch.float64) if rank == 0 else mine
    out["known"] = idist.all_gather(known, counts=[0, 3])
    try:
        idist.all_gather(known, counts=[0, 3, 1])  # raised on every rank: no one waits
    except ValueError as err:
        out["counts_error"] = str(err)
    out["bools"] = idist.all_gather(torch.tensor([rank == 0, True]))
    out["counts"] = idist.sum_counts(None if rank == 0 else torch.tensor([1, 2, 3]))
    out["max"] = idist.all_reduce(torch.tensor([float(rank)]), op="max")
    out["broadcast"] = idist.broadcast(torch.tensor([rank + 10]))
    out["object"] = idist.broadcast_object({"from": rank})
    out["batches"] = idist.map_batches(lambda s, e: torch.arange(s, e) * 10, 7, 3, gather=True)
    try:
        idist.all_gather(torch.zeros(2, 3 if rank == 0 else 4))
    except ValueError as err:
        out["shape_error"] = str(err)
    try:
        idist.run_on_main(lambda: 1 / 0)
    except (ZeroDivisionError, RuntimeError) as err:
        out["io_error"] = f"{type(err).__name__}: {err}"
    return out


def test_collectives_over_two_processes():
    r0, r1 = launch(_collectives, 2, threads=1, timeout=timedelta(seconds=60))
    assert (r0["rank"], r1["rank"], r1["local_rank"], r0["world"], r1["threads"]) == (0, 1, 1, 2, 1)
    for r in (r0, r1):
        assert r["gathered"].dtype == torch.float64 and r["gathered"].tolist() == [[0, 1], [2, 3], [4, 5]]
        assert r["known"].dtype == torch.float64 and r["known"].tolist() == [[0, 1], [2, 3], [4, 5]]
        assert r["bools"].tolist() == [True, True, False, True]
        assert r["counts"].tolist() == [1, 2, 3]
        assert r["max"].tolist() == [1.0] and r["broadcast"].tolist() == [10]
        assert r["object"] == {"from": 0}
        assert r["batches"].tolist() == [0, 10, 20, 30, 40, 50, 60]
        assert ("tensor must have the same trailing shape and dtype on every rank, got rows of "
                "shape (3,) and dtype torch.float32 on rank 0 and rows of shape (4,)") in r["shape_error"]
    assert r0["counts_error"] == "counts must give every rank's rows (2 ranks, this one 0), got [0, 3, 1]"
    assert r1["counts_error"] == "counts must give every rank's rows (2 ranks, this one 3), got [0, 3, 1]"
    assert r0["io_error"] == "ZeroDivisionError: division by zero"
    assert r1["io_error"] == "RuntimeError: rank 0 failed: ZeroDivisionError: division by zero"
