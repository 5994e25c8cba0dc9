"""What an Avalanche user's plugins and models meet in the loop: Avalanche's hooks (called,
or refused by name), ``strategy._criterion``, uint8 images reaching a float model,
``train(eval_streams=...)`` and what ``strategy.eval`` returns."""

import pickle

import pytest
import torch
from torch import nn

from clreplay.benchmarks import class_incremental
from clreplay.data import ClassificationDataset, InputNormalization
from clreplay.training import EvalResults, Naive, StrategyPlugin


def digits_like(n=40, classes=4, *, dtype=torch.float32):
    gen = torch.Generator().manual_seed(0)
    y = torch.arange(n) % classes
    if dtype == torch.uint8:
        x = torch.randint(0, 256, (n, 1, 4, 4), dtype=torch.uint8, generator=gen)
    else:
        x = torch.randn(n, 16, generator=gen) + y.unsqueeze(1)
    data = ClassificationDataset(x, y)
    return class_incremental(data, data, 2, seed=0)


def strategy_of(model, plugins=(), **kwargs):
    return Naive(model, torch.optim.SGD(model.parameters(), lr=0.01), train_mb_size=8,
                 plugins=list(plugins), seed=0, **kwargs)


class Recorder(StrategyPlugin):
    def __init__(self):
        self.calls = []

    def before_eval_forward(self, strategy, **kwargs):
        self.calls.append(("before", strategy.mb_output is None or strategy.mb_output.shape[0]))

    def after_eval_forward(self, strategy, **kwargs):
        self.calls.append(("after", strategy.mb_output.shape[0]))


def test_eval_forward_hooks_are_called_around_each_forward():
    bench = digits_like()
    recorder = Recorder()
    strategy = strategy_of(nn.Linear(16, 4), [recorder], eval_mb_size=15)
    strategy.eval(bench.test_stream[0])  # 20 samples: batches of 15 and 5
    # Before: never called (Avalanche's hooks the loop did not have).
    assert [call[0] for call in recorder.calls] == ["before", "after", "before", "after"]
    assert [call[1] for call in recorder.calls if call[0] == "after"] == [15, 5]


@pytest.mark.parametrize("hook", ["before_train_dataset_adaptation", "after_train_dataset_adaptation",
                                  "before_eval_dataset_adaptation", "after_eval_dataset_adaptation"])
def test_a_hook_the_loop_does_not_call_is_refused_by_name(hook):
    plugin = type("Adapt", (StrategyPlugin,), {hook: lambda self, strategy, **kwargs: None})()
    # Before: accepted, and never called.
    with pytest.raises(ValueError, match=rf"^plugins\[1\] \(Adapt\) defines {hook}\(\), a hook of "
                       r"Avalanche's loop that clreplay's never calls: "):
        strategy_of(nn.Linear(16, 4), [StrategyPlugin(), plugin])


def test_criterion_under_avalanches_name_is_the_loss_function():
    bench = digits_like()
    seen = []

    class HalfLoss(StrategyPlugin):
        def before_training_exp(self, strategy, **kwargs):
            base = strategy._criterion  # reading it: the strategy's loss function
            strategy._criterion = lambda output, y: seen.append(len(y)) or 0.5 * base(output, y)

    strategy = strategy_of(nn.Linear(16, 4), [HalfLoss()])
    plain = strategy_of(nn.Linear(16, 4))
    assert plain._criterion is plain.loss_fn and isinstance(plain.loss_fn, nn.CrossEntropyLoss)
    strategy.train(bench.train_stream[0])
    # Before: the assignment made a new attribute the loop never read.
    assert seen == [8, 8, 4] and strategy.loss_fn is strategy._criterion
    strategy.mb = None
    torch.manual_seed(0)
    model = nn.Linear(16, 4)
    strategy = strategy_of(model, [HalfLoss()])
    strategy.train(bench.train_stream[0])
    assert strategy.loss.item() == pytest.approx(
        0.5 * nn.functional.cross_entropy(strategy.mb_output, strategy.mb_y).item())


def test_uint8_images_into_a_float_model_say_how_to_fix_it():
    bench = digits_like(dtype=torch.uint8)
    assert bench.input_dtype == torch.uint8
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(16, 4))
    message = (r"^the model got a batch of torch\.uint8 samples, shape \(8, 1, 4, 4\), and failed on them: "
               r"mat1 and mat2 must have the same dtype, but got Byte and Float\. Image benchmarks keep "
               r"their images as uint8 .* start yours with clreplay\.data\.InputNormalization")
    # Before: torch's RuntimeError from deep inside F.linear, and nothing about the fix.
    with pytest.raises(TypeError, match=message):
        strategy_of(mlp).train(bench.train_stream[0])
    with pytest.raises(TypeError, match=r"^the model got a batch of torch\.uint8 samples, shape \(20, 1, 4, 4\)"):
        strategy_of(mlp, eval_mb_size=20).eval(bench.test_stream[0])
    fixed = strategy_of(nn.Sequential(InputNormalization(), mlp))
    fixed.train(bench.train_stream[0])
    assert fixed.mb_output.dtype == torch.float32


def test_other_runtime_errors_pass_unchanged():
    class Broken(nn.Module):
        def __init__(self, message):
            super().__init__()
            self.w, self.message = nn.Parameter(torch.zeros(1)), message

        def forward(self, x):
            raise RuntimeError(self.message)

    # Float inputs: a dtype word in the message is not about them.
    with pytest.raises(RuntimeError, match="^expected scalar type Half"):
        strategy_of(Broken("expected scalar type Half")).train(digits_like().train_stream[0])
    # uint8 inputs, but an error that is not about types.
    with pytest.raises(RuntimeError, match="^shape mismatch"):
        strategy_of(Broken("shape mismatch")).train(digits_like(dtype=torch.uint8).train_stream[0])


def test_eval_streams_are_refused():
    with pytest.raises(TypeError, match=r"^train\(\) got eval_streams, which clreplay does not take"):
        strategy_of(nn.Linear(16, 4)).train(digits_like().train_stream[0], eval_streams=[[]])


def test_eval_returns_the_accuracies_with_avalanches_names_beside_them():
    bench = digits_like()
    strategy = strategy_of(nn.Linear(16, 4))
    strategy.train(bench.train_stream[0])
    results = strategy.eval(bench.test_stream)
    assert isinstance(results, EvalResults) and strategy.eval_results is results
    assert results == {0: results[0], 1: 0.0} and list(results) == [0, 1] and len(results) == 2
    correct = {e.current_experience: (strategy.model(e.dataset.get_batch(torch.arange(20))[0]).argmax(1)
                                      == e.dataset.targets).sum().item() for e in bench.test_stream}
    assert results[0] == correct[0] / 20
    assert results.metrics == {
        "Top1_Acc_Exp/eval_phase/test_stream/Task000/Exp000": correct[0] / 20,
        "Top1_Acc_Exp/eval_phase/test_stream/Task000/Exp001": correct[1] / 20,
        "Top1_Acc_Stream/eval_phase/test_stream/Task000": (correct[0] + correct[1]) / 40,
    }
    assert results["Top1_Acc_Stream/eval_phase/test_stream/Task000"] == (correct[0] + correct[1]) / 40
    assert results.get("Top1_Acc_Exp/eval_phase/test_stream/Task000/Exp001") == correct[1] / 20
    assert results.get("nothing", -1) == -1 and results.get(7) is None
    with pytest.raises(KeyError, match="no metric of that name in this evaluation; its metrics are"):
        results["Top1_Acc_Stream/eval_phase/train_stream/Task000"]
    with pytest.raises(KeyError):
        results[5]
    again = pickle.loads(pickle.dumps(results))
    assert again == results and again.metrics == results.metrics and repr(again) == repr(dict(results))
