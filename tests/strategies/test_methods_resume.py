"""Every method through a checkpoint and a resume ends exactly like an uninterrupted run."""

from dataclasses import replace

import pytest
import torch
from test_checkpoint import same_tensors, trained

from clreplay.checkpoint import load_checkpoint, save_checkpoint
from clreplay.run import RunConfig, build_benchmark, build_strategy
from clreplay.strategies import list_methods

SMALL = RunConfig(epochs=1, n_experiences=5, mem_size=40, hidden=[16], batch_size=16, batch_size_mem=8,
                  lr=0.1, momentum=0.0)
OPTIONS = {"agem": {"sample_size": 8}, "gdumb": {"passes": 2}}


def config_of(method):
    batch_size_mem = SMALL.batch_size_mem if method in ("er", "der", "derpp", "xder", "er-ace", "icarl") else None
    return replace(SMALL, method=method, method_options=dict(OPTIONS.get(method, {})),
                   batch_size_mem=batch_size_mem).validate()


@pytest.fixture(scope="module")
def bench():
    return build_benchmark(SMALL)


@pytest.mark.parametrize("method", list_methods())
def test_kill_and_resume_gives_the_same_accuracy_matrix(tmp_path, bench, method):
    config = config_of(method)
    uninterrupted = trained(config, bench, 5)
    first = trained(config, bench, 2)
    save_checkpoint(first, tmp_path / "c.pt", config=config)
    del first  # killed: only the file remains
    resumed = build_strategy(config, bench)
    start = load_checkpoint(resumed, tmp_path / "c.pt", config=config)
    assert start == 2
    for experience in bench.train_stream[start:]:
        resumed.train(experience)
    assert resumed.evaluator.accuracy_matrix == uninterrupted.evaluator.accuracy_matrix
    a, b = uninterrupted.state_dict(), resumed.state_dict()
    assert same_tensors(a["model"], b["model"])
    # The method's plugin (the evaluator, last, holds timings): memory, stored logits,
    # previous model, generators.
    assert same_tensors(a["plugins"][:-1], b["plugins"][:-1])


def test_checkpoint_keeps_stored_logits_and_the_previous_model(tmp_path, bench):
    der = trained(config_of("der"), bench, 2)
    state = der.state_dict()["plugins"][0]["storage_policy"]["store"]
    assert state["columns"]["logits"].shape == (40, 10) and state["specs"]["logits"][0] == [10]
    assert state["columns"]["logits"].abs().sum() > 0 and not state["columns"]["logits"].isnan().any()
    icarl = trained(config_of("icarl"), bench, 2)
    plugin_state = icarl.state_dict()["plugins"][0]
    assert same_tensors(plugin_state["old_model"], icarl.model.state_dict())
    assert plugin_state["means"].shape[0] == max(plugin_state["old_classes"]) + 1
    assert torch.is_tensor(plugin_state["present"])


@pytest.mark.parametrize("method", list_methods())
def test_a_method_stopped_mid_epoch_resumes_to_the_same_matrix(tmp_path, bench, method):
    """``--checkpoint-every``: stopped at the end of an iteration inside experience 2's
    second epoch, resumed from the last checkpoint taken inside it."""
    from test_checkpoint_inside_experience import KillAt, Killed

    from clreplay.checkpoint import CheckpointEvery
    from clreplay.evaluation import EvaluationPlugin
    from clreplay.models import make_mlp
    from clreplay.strategies import get_method
    from clreplay.training import Naive

    config = replace(config_of(method), epochs=2)
    if method == "gdumb":  # 2 passes over its memory of 40 an epoch: 6 iterations
        config = replace(config, method_options={"passes": 4})

    def build(path, kill=(-1, -1, -1)):
        model = make_mlp(bench.n_features, bench.n_classes, config.hidden, seed=0)
        plugins = get_method(method).build(config, model) + [CheckpointEvery(path, 3), KillAt(*kill)]
        return Naive(model, torch.optim.SGD(model.parameters(), lr=config.lr), train_mb_size=config.batch_size,
                     train_epochs=config.epochs, plugins=plugins, seed=config.seed,
                     evaluator=EvaluationPlugin(bench.test_stream))

    reference = build(tmp_path / "ref.pt")
    for experience in bench.train_stream[:3]:
        reference.train(experience)
    stopped = build(tmp_path / "c.pt", kill=(1, 1, 5))
    with pytest.raises(Killed):
        for experience in bench.train_stream[:3]:
            stopped.train(experience)
    resumed = build(tmp_path / "c.pt")
    start = load_checkpoint(resumed, tmp_path / "c.pt")
    assert start == 1 and resumed.resumes_inside_experience
    for experience in bench.train_stream[start:3]:
        resumed.train(experience)
    assert resumed.evaluator.accuracy_matrix == reference.evaluator.accuracy_matrix
    assert same_tensors(resumed.model.state_dict(), reference.model.state_dict())
