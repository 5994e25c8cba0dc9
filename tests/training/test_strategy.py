import copy

import pytest
import torch
from torch import nn

from clreplay.benchmarks import Experience, class_incremental
from clreplay.data import ClassificationDataset
from clreplay.models import make_mlp
from clreplay.training import HOOKS, BaseStrategy, Naive, StrategyPlugin


class Spy(StrategyPlugin):
    def __init__(self, log, name):
        self.log, self.name = log, name


for _hook in HOOKS:
    def _record(self, strategy, _hook=_hook, **kwargs):
        self.log.append((self.name, _hook))
    setattr(Spy, _hook, _record)


def tiny_benchmark(n_per_class=6, n_classes=4, n_experiences=2):
    y = torch.arange(n_classes).repeat(n_per_class)
    x = torch.nn.functional.one_hot(y, n_classes).float() + 0.01 * torch.arange(len(y)).unsqueeze(1)
    ds = ClassificationDataset(x, y)
    return class_incremental(ds, ds, n_experiences, seed=None)


def make_strategy(plugins=(), *, epochs=1, mb=4, seed=0, model_seed=0, **kwargs):
    model = make_mlp(4, 4, [8], seed=model_seed)
    return Naive(model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
                 train_mb_size=mb, train_epochs=epochs, plugins=list(plugins), seed=seed, **kwargs)


def test_hook_order_recorded_by_a_spy():
    bench = tiny_benchmark()  # 12 samples per experience, batches of 6 -> 2 iterations
    log = []
    strategy = make_strategy([Spy(log, "a"), Spy(log, "b")], epochs=1, mb=6)
    strategy.train(bench.train_stream[0])
    hooks_a = [h for who, h in log if who == "a"]
    iteration = [
        "before_training_iteration", "before_forward", "after_forward", "before_backward",
        "after_backward", "before_update", "after_update", "after_training_iteration",
    ]
    assert hooks_a == (
        ["before_training", "before_training_exp", "before_training_epoch"]
        + iteration * 2
        + ["after_training_epoch", "after_training_exp", "after_training"]
    )
    # plugin order within each hook
    assert [who for who, _ in log] == ["a", "b"] * len(hooks_a)
    log.clear()
    strategy.eval(bench.test_stream)
    hooks_a = [h for who, h in log if who == "a"]
    assert hooks_a == (
        ["before_eval"]
        + (["before_eval_exp"] + ["before_eval_iteration", "before_eval_forward", "after_eval_forward",
                                  "after_eval_iteration"] * 2 + ["after_eval_exp"]) * 2
        + ["after_eval"]
    )


def test_hooks_receive_kwargs_and_see_the_batch():
    seen = {}

    class Look(StrategyPlugin):
        def after_forward(self, strategy, **kwargs):
            seen["kwargs"] = kwargs
            seen["shapes"] = (tuple(strategy.mb_x.shape), tuple(strategy.mb_output.shape))

        def after_backward(self, strategy, **kwargs):
            seen["loss"] = float(strategy.loss.detach())

    bench = tiny_benchmark()
    make_strategy([Look()], mb=12).train(bench.train_stream[0], tag="x")
    assert seen["kwargs"] == {"tag": "x"}
    assert seen["shapes"] == ((12, 4), (12, 4))
    assert seen["loss"] > 0


def test_zero_epochs_trains_nothing_but_fires_experience_hooks():
    bench = tiny_benchmark()
    log = []
    strategy = make_strategy([Spy(log, "a")], epochs=0)
    before = [p.clone() for p in strategy.model.parameters()]
    strategy.train(bench.train_stream[0])
    assert [h for _, h in log] == ["before_training", "before_training_exp", "after_training_exp", "after_training"]
    assert all(torch.equal(a, b) for a, b in zip(before, strategy.model.parameters()))
    assert strategy.clock.train_exp_counter == 1 and strategy.clock.train_iterations == 0


def test_same_seed_gives_bit_identical_weights():
    bench = tiny_benchmark()

    def run(seed):
        strategy = make_strategy(epochs=3, mb=5, seed=seed)
        strategy.train(bench.train_stream)
        return [p.detach().clone() for p in strategy.model.parameters()]

    a, b, c = run(1), run(1), run(2)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))


def test_clock_counts():
    bench = tiny_benchmark()
    strategy = make_strategy(epochs=2, mb=5)  # 12 samples -> 3 batches per epoch
    strategy.train(bench.train_stream)
    clock = strategy.clock
    assert clock.train_exp_counter == 2
    assert clock.train_iterations == 12 and clock.train_exp_iterations == 6
    assert clock.train_exp_epochs == 2 and clock.train_samples == 48


def test_eval_accuracy_exact_and_state_restored():
    # A fixed linear model that predicts argmax of the input
    model = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.eye(2))
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])
    y = torch.tensor([0, 1, 1, 1])  # 2 of 4 right
    exp = Experience(ClassificationDataset(x, y), 3, [0, 1])
    strategy = BaseStrategy(model, torch.optim.SGD(model.parameters(), lr=0.1), eval_mb_size=3)
    model.train()
    assert strategy.eval(exp) == {3: 0.5}
    assert model.training and strategy.experience is None


def test_eval_inside_a_training_hook_restores_training_state():
    bench = tiny_benchmark()
    results = []

    class EvalAfterExp(StrategyPlugin):
        def after_training_exp(self, strategy, **kwargs):
            results.append(strategy.eval(bench.test_stream))
            assert strategy.experience is bench.train_stream[len(results) - 1]
            assert strategy.model.training

    make_strategy([EvalAfterExp()], epochs=2).train(bench.train_stream)
    assert len(results) == 2 and set(results[0]) == {0, 1}


def test_state_dict_round_trip_continues_identically():
    bench = tiny_benchmark()
    ref = make_strategy(epochs=2, mb=5)
    ref.train(bench.train_stream[0])
    state = copy.deepcopy(ref.state_dict())  # state_dict holds live tensors
    ref.train(bench.train_stream[1])

    other = make_strategy(epochs=2, mb=5, model_seed=9, seed=4)
    other.load_state_dict(state)
    other.train(bench.train_stream[1])
    for a, b in zip(ref.model.parameters(), other.model.parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("value", [0, -3])
def test_train_mb_size_at_least_one(value):
    with pytest.raises(ValueError, match=f"train_mb_size must be a positive int, got {value}"):
        make_strategy(mb=value)


def test_argument_types():
    model = nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(TypeError, match="model must be a torch.nn.Module, got str"):
        BaseStrategy("model", opt)
    with pytest.raises(TypeError, match="optimizer must be a torch.optim.Optimizer, got NoneType"):
        BaseStrategy(model, None)
    with pytest.raises(ValueError, match="train_epochs must be a non-negative int, got -1"):
        BaseStrategy(model, opt, train_epochs=-1)
    with pytest.raises(TypeError, match=r"train_mb_size must be a positive int, got 2.5 \(float\)"):
        BaseStrategy(model, opt, train_mb_size=2.5)
    with pytest.raises(ValueError, match="device must name a torch device, got 'gpu0'"):
        BaseStrategy(model, opt, device="gpu0")
    with pytest.raises(TypeError, match="experience must be an Experience, got int"):
        BaseStrategy(model, opt).train([1])
