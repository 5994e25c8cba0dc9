"""Every method over 2 processes (gloo, one thread each) trains as 1 process on the same global batches.

One group of 2 processes (torch's elastic agent, spawned) trains every method in a row
on a tiny stream and returns, per rank, the weights after each experience, the final
memory and accuracies; each test compares the ranks with each other (DDP keeps them
identical) and with a single process training on the whole global batches.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import torch

from clreplay.benchmarks import class_incremental, make_synthetic
from clreplay.evaluation import EvaluationPlugin
from clreplay.launch import launch
from clreplay.models import make_mlp
from clreplay.run_config import RunConfig
from clreplay.strategies import get_method, list_methods
from clreplay.training import Naive, StrategyPlugin

N_FEATURES, N_CLASSES, MEM = 8, 6, 24

#: Every registered method as `clreplay run --method` builds it, and ER's online replay.
CASES = [*list_methods(), "online-er"]
#: Small settings: memory draws of 6 rows (3 per rank) and A-GEM's reference batch of 11
#: (6 and 5); the stream's last batch of each experience has 1 row (a rank's slice is empty).
OPTIONS = {"passes": 2, "sample_size": 11, "alpha": 0.5}
#: The methods whose contrastive losses pair every row with every other: each rank trains on
#: the whole global batch (ContrastiveReplayPlugin.replicated_batches).
REPLICATED = ("scr", "onpro")


def plugins_of(case: str, model):
    """The plugins of ``case``, built from its registry record like the command line builds them."""
    name = "er" if case == "online-er" else case
    method = get_method(name)
    takes = {option.name for option in method.options}
    config = RunConfig(method=name, mem_size=MEM, batch_size=8, online=case == "online-er",
                       batch_size_mem=6 if "batch_size_mem" in method.replay_options and case != "er" else None,
                       method_options={k: v for k, v in OPTIONS.items() if k in takes}).validate()
    return method.build(config, model)


class Steps(StrategyPlugin):
    """The loss of each step (this rank's share) and how many rows it trained on."""

    def __init__(self):
        self.losses, self.rows = [], []

    def after_training_iteration(self, strategy, **kwargs):
        self.losses.append(float(strategy.loss.detach()))
        self.rows.append(len(strategy.mb))


def train(method: str, distributed: bool) -> dict:
    """Weights after each experience, the memory's rows and columns, the accuracies."""
    train_data, test_data = make_synthetic(147, N_FEATURES, N_CLASSES, noise=3.0, seed=0)
    bench = class_incremental(train_data, test_data, 3, seed=0)
    model = make_mlp(N_FEATURES, N_CLASSES, [16], seed=0)
    plugins, steps = plugins_of(method, model), Steps()
    plugin = plugins[0]
    evaluator = EvaluationPlugin(loggers=[], initial_eval=False)  # counts the forward rows, over the ranks
    strategy = Naive(model, torch.optim.SGD(model.parameters(), lr=0.03, momentum=0.9), train_mb_size=8,
                     train_epochs=1, eval_mb_size=16, plugins=[*plugins, steps], seed=0,
                     distributed=distributed, evaluator=evaluator)
    weights = []
    for experience in bench.train_stream:
        strategy.train(experience)
        weights.append({k: v.detach().clone() for k, v in model.state_dict().items()})
    store = plugin.storage_policy.store
    memory = {key: {name: store.read(name, store.rows_of(group)).clone() for name in sorted(store.columns)}
              for key, group in plugin.ext_mem.items()}
    return {"weights": weights, "memory": memory, "accuracies": strategy.eval(bench.test_stream),
            "rows": steps.rows, "samples": strategy.clock.train_samples, "forward_rows": evaluator.forward_rows}


def _every_method():
    return {method: train(method, True) for method in CASES}


@pytest.fixture(scope="module")
def two_ranks():
    return launch(_every_method, 2, threads=1, timeout=timedelta(seconds=120))


@pytest.mark.parametrize("method", CASES)
def test_two_processes_take_the_steps_of_one_process_on_the_same_global_batches(two_ranks, method):
    single = train(method, False)
    rank0, rank1 = (two_ranks[r][method] for r in (0, 1))
    assert len(single["weights"]) == 3
    for after, expected in enumerate(single["weights"]):
        for name, value in expected.items():
            assert torch.equal(rank0["weights"][after][name], rank1["weights"][after][name])  # one model
            where = f"{method}, after experience {after}, {name}"
            torch.testing.assert_close(rank0["weights"][after][name], value, rtol=1e-5, atol=1e-6,
                                       msg=lambda m, where=where: f"{where}: {m}")
    if method in REPLICATED:  # every rank trained on the whole global batch
        assert rank0["rows"] == rank1["rows"] == single["rows"]
    else:  # each rank trained on about half of every global batch, and counted the global samples
        assert [a + b for a, b in zip(rank0["rows"], rank1["rows"])] == single["rows"]
        assert all(abs(a - b) <= 1 for a, b in zip(rank0["rows"], rank1["rows"]))
    assert rank0["samples"] == single["samples"] > 0
    # The rows forwarded, summed over the ranks: one process's, but where every rank repeats work
    # (the replicated methods; MIR scores every candidate on every rank).
    assert rank0["forward_rows"] == rank1["forward_rows"]
    if method not in (*REPLICATED, "mir"):
        assert rank0["forward_rows"] == single["forward_rows"]
    else:
        assert all(a > b for a, b in zip(rank0["forward_rows"], single["forward_rows"]))
    assert rank0["accuracies"] == rank1["accuracies"] == single["accuracies"]
    memory = single["memory"]
    # BiC holds round(0.1 * 24) = 2 samples out of its replay memory, for its bias correction.
    assert sum(len(group["y"]) for group in memory.values()) == MEM - (2 if method == "bic" else 0)
    for r in (rank0, rank1):
        assert r["memory"].keys() == memory.keys()
        for key, columns in memory.items():
            assert r["memory"][key].keys() == columns.keys()
            for name, value in columns.items():
                if name in ("x", "y", "t", "origin"):  # the same samples (herding: the same choices)
                    assert torch.equal(r["memory"][key][name], value), (method, key, name)
                else:  # logits: as one process's, to float tolerance
                    torch.testing.assert_close(r["memory"][key][name], value, rtol=1e-5, atol=1e-5,
                                               equal_nan=True)
