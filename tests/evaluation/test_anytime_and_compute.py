"""Anytime accuracy (points every N iterations, saved for a resume) and the forward rows a method
spends per stream sample, counted from the batches a spy sees."""

import torch
from torch import nn

from clreplay.benchmarks import split_digits
from clreplay.evaluation import AnytimeEvaluation, EvaluationPlugin, ForwardRows
from clreplay.models import make_mlp
from clreplay.run import RunConfig, run_experiment
from clreplay.strategies import get_method
from clreplay.training import Naive, StrategyPlugin


def test_anytime_points_are_the_mean_accuracy_on_the_experiences_seen_so_far():
    bench = split_digits(n_experiences=2)
    model = nn.Linear(64, 10)
    anytime = AnytimeEvaluation(bench.test_stream, every=10)
    strategy = Naive(model, torch.optim.SGD(model.parameters(), lr=0.1), train_mb_size=32, plugins=[anytime],
                     seed=0)
    strategy.train(bench.train_stream[0])
    assert strategy.clock.train_iterations == 20  # the last point is the end of the experience
    last = anytime.points[-1]
    assert last["experience"] == 0 and last["accuracy"] == strategy.eval(bench.test_stream[:1])[0]
    strategy.train(bench.train_stream[1])
    assert [p["iteration"] for p in anytime.points] == list(range(10, strategy.clock.train_iterations + 1, 10))
    accuracies = strategy.eval(bench.test_stream)
    if anytime.points[-1]["iteration"] == strategy.clock.train_iterations:  # a point at the very end
        assert anytime.points[-1]["accuracy"] == sum(accuracies.values()) / 2
    fresh = AnytimeEvaluation(bench.test_stream, every=10)
    fresh.load_state_dict(anytime.state_dict())
    assert fresh.report() == anytime.report()


class Spy(StrategyPlugin):
    def __init__(self):
        self.rows, self.stream, self.replayed = 0, 0, 0

    def after_forward(self, strategy, **kwargs):
        mb = strategy.mb
        self.rows += len(mb)
        self.stream += len(mb.stream)
        self.replayed += len(mb.segment("replay")) if "replay" in mb else 0


def _counted(method, **options):
    bench = split_digits(n_experiences=2)
    config = RunConfig(method=method, mem_size=30, batch_size=10, batch_size_mem=5, epochs=1, hidden=[16],
                       method_options=options).validate()
    model = make_mlp(64, 10, [16], seed=0)
    spy, evaluator = Spy(), EvaluationPlugin(bench.test_stream)
    strategy = Naive(model, torch.optim.SGD(model.parameters(), lr=0.05), train_mb_size=10,
                     plugins=[*get_method(method).build(config, model), spy], evaluator=evaluator, seed=0)
    strategy.train(bench.train_stream)
    return evaluator.report()["compute"], spy


def test_forward_rows_count_every_pass_through_the_network_and_its_copies():
    compute, spy = _counted("derpp")  # one forward of the stream and both draws
    assert compute["forward_rows"][0] + compute["forward_rows"][1] == spy.rows
    assert sum(compute["stream_samples"]) == spy.stream
    compute, spy = _counted("cls-er")  # and the two EMA models on the replayed rows
    assert sum(compute["forward_rows"]) == spy.rows + 2 * spy.replayed
    assert compute["forward_rows_per_sample"] == (spy.rows + 2 * spy.replayed) / spy.stream


def test_the_counter_ignores_other_modules_and_evaluation():
    model = nn.Sequential(nn.Linear(4, 3))
    counter = ForwardRows()
    counter.start(model)
    model(torch.zeros(5, 4))
    nn.Linear(4, 2)(torch.zeros(9, 4))
    counter.stop()
    model(torch.zeros(5, 4))
    assert counter.rows == 5


def test_results_hold_the_anytime_curve_and_the_compute(capsys):
    results = run_experiment(RunConfig(epochs=1, n_experiences=2, hidden=[16], anytime_every=5),
                             log=print)
    assert results["anytime_every"] == 5 and len(results["anytime_curve"]) >= 2
    assert results["anytime_accuracy"] == sum(p["accuracy"] for p in results["anytime_curve"]) / len(
        results["anytime_curve"])
    assert results["compute"]["forward_rows_per_sample"] >= 1.0
    out = capsys.readouterr().out
    assert "anytime accuracy (every 5 iterations): " in out and "forward rows per stream sample: " in out


def test_compare_shows_anytime_accuracy_and_forward_rows():
    from clreplay.evaluation import format_comparison

    runs = {m: run_experiment(RunConfig(method=m, epochs=1, n_experiences=2, hidden=[16], anytime_every=10,
                                        batch_size_mem=8 if m != "er" else None), log=lambda _: None)
            for m in ("er", "derpp")}
    lines = format_comparison(runs).splitlines()
    assert "anytime acc" in lines[0] and "rows/sample" in lines[0]
    derpp = lines[3].split()
    assert derpp[0] == "derpp" and float(derpp[-2]) == round(runs["derpp"]["compute"]["forward_rows_per_sample"], 2)
    assert float(derpp[-3]) == round(runs["derpp"]["anytime_accuracy"], 4)
