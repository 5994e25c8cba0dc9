"""Gradient sums over 2 forked gloo processes: unused parameters, a growing model, inert hooks."""

import copy
from datetime import timedelta
from pathlib import Path

import torch
from torch import nn

from clreplay import distributed as idist
from clreplay.training.gradients import GradientReducer


class Heads(nn.Module):
    """A trunk and one head per rank (multi-head: each rank's slice uses one head), plus a
    head no rank uses."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.trunk = nn.Linear(3, 4)
        self.heads = nn.ModuleList([nn.Linear(4, 1) for _ in range(3)])

    def forward(self, x, head):
        return self.heads[head](self.trunk(x))


def _local_grads(model, x, head):
    clone = copy.deepcopy(model)
    clone(x, head).sum().backward()
    return {name: (p.grad.clone() if p.grad is not None else None) for name, p in clone.named_parameters()}


def _grads(model):
    return {name: (None if p.grad is None else p.grad.clone()) for name, p in model.named_parameters()}


def _reduce(folder):
    rank = idist.get_rank()
    out = _reduce_with(rank, 64)  # several buckets of several parameters
    # Every parameter alone in its bucket: summed in place, in its own gradient.
    out["alone"] = _reduce_with(rank, 1)
    torch.save(out, Path(folder) / f"rank{rank}.pt")


def _reduce_with(rank, bucket_bytes):
    model = Heads()
    reducer = GradientReducer(model, bucket_bytes=bucket_bytes)
    x = torch.full((2, 3), float(rank + 1))
    # Every rank reduces every parameter (zeros where it has no gradient), in one order.
    expected = {name: idist.all_reduce(torch.zeros_like(p) if g is None else g)
                for (name, g), p in zip(_local_grads(model, x, rank).items(), model.parameters())}
    reducer.start()
    model(x, rank).sum().backward()
    reducer.finish()
    out = {"summed": _grads(model), "expected": expected}
    # Outside the window the hooks do nothing: the gradients stay this rank's own.
    model.zero_grad(set_to_none=True)
    model(x, rank).sum().backward()
    out["outside"], out["local"] = _grads(model), _local_grads(model, x, rank)
    # A parameter added later is summed from the next window on.
    model.scale = nn.Parameter(torch.tensor(float(rank + 2)))
    model.zero_grad(set_to_none=True)
    reducer.start()
    (model(x, 0).sum() * model.scale).backward()
    reducer.finish()
    out["grown"] = float(model.scale.grad)
    # A gradient from before the window (a method's own backward pass) is summed too,
    # and one whose memory is not dense is summed all the same.
    model.zero_grad(set_to_none=True)
    model.trunk.weight.grad = torch.full((3, 4), float(rank + 1)).t()  # not contiguous
    reducer.start()
    model(x, rank).sum().backward()
    reducer.finish()
    out["before_window"] = model.trunk.weight.grad.clone()
    return out


def test_gradients_are_summed_bucket_by_bucket_whatever_each_rank_used(tmp_path):
    idist.launch(_reduce, 2, str(tmp_path), threads=1, start_method="fork",
                 timeout=timedelta(seconds=60))
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    ranks += [out["alone"] for out in ranks]
    for out in ranks:
        summed, expected = out["summed"], out["expected"]
        assert set(summed) == set(expected)
        assert summed["heads.2.weight"] is None and summed["heads.2.bias"] is None  # no rank used it
        for name in expected:
            if not name.startswith("heads.2"):
                assert torch.equal(summed[name], expected[name]), name  # the same sums, bit for bit
        # heads.0 had a gradient on rank 0 only: the sum is rank 0's gradient.
        assert not torch.equal(summed["heads.0.weight"], torch.zeros(1, 4))
        for name, value in out["local"].items():
            assert (value is None and out["outside"][name] is None) or torch.equal(value, out["outside"][name])
    for a, b in (ranks[:2], ranks[2:]):
        assert a["summed"]["heads.0.weight"].tolist() == b["summed"]["heads.0.weight"].tolist()
        # d(scale * s_r)/d(scale) = s_r on each rank, summed; both ranks hold the same number.
        assert a["grown"] == b["grown"] != 0.0
        # The grads from before the window (1 and 2 everywhere) are in the sums: 3 more.
        torch.testing.assert_close(a["before_window"], a["summed"]["trunk.weight"] + 3.0,
                                   rtol=0, atol=1e-6)
        assert torch.equal(a["before_window"], b["before_window"])
