"""Precision, compiled models, channels-last batches and threads: how steps compute, not what."""

import functools
from dataclasses import replace

import pytest
import torch
from torch import nn

from clreplay import ReplayPlugin
from clreplay.benchmarks import split_digits
from clreplay.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from clreplay.models import make_cnn, make_mlp
from clreplay.run import RunConfig, build_benchmark, build_strategy, run_experiment
from clreplay.strategies import AGEMPlugin
from clreplay.training import Naive
from clreplay.training.acceleration import Acceleration

AOT_EAGER = functools.partial(torch.compile, backend="aot_eager")  # compiles without a C++ toolchain


def train(experiences=2, **options):
    model = make_mlp(64, 10, [32], seed=0)
    strategy = Naive(model, torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9), train_mb_size=32,
                     train_epochs=2, plugins=[ReplayPlugin(100)], seed=0, **options)
    bench = split_digits()
    for experience in bench.train_stream[:experiences]:
        strategy.train(experience)
    return strategy, bench


def weights(strategy):
    return torch.cat([p.detach().flatten() for p in strategy.model.parameters()])


@pytest.mark.parametrize("precision, dtype", [("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_low_precision_runs_the_forward_in_autocast_and_keeps_fp32_weights(precision, dtype):
    seen = []

    class Dtypes(ReplayPlugin):
        def after_forward(self, strategy, **kwargs):
            seen.append(strategy.mb_output.dtype)

    model = make_mlp(64, 10, [32], seed=0)
    strategy = Naive(model, torch.optim.SGD(model.parameters(), lr=0.05), train_mb_size=32,
                     plugins=[Dtypes(50)], seed=0, precision=precision)
    bench = split_digits()
    strategy.train(bench.train_stream[0])
    assert set(seen) == {dtype}
    assert all(p.dtype == torch.float32 for p in model.parameters())
    reference, _ = train(experiences=1)
    low, _ = train(experiences=1, precision=precision)
    # Rounding moves the weights a little, not the learning.
    assert not torch.equal(weights(low), weights(reference))
    assert torch.allclose(weights(low), weights(reference), atol=0.05)
    assert low.eval(bench.test_stream[:1])[0] > 0.95


def test_fp16_gradients_are_unscaled_before_plugins_read_them():
    grads = {}

    class Read(ReplayPlugin):
        def after_backward(self, strategy, **kwargs):
            grads[strategy.acceleration.precision] = [p.grad.clone() for p in strategy.model.parameters()]

    for precision in ("fp32", "fp16"):
        model = make_mlp(64, 10, [32], seed=0)
        strategy = Naive(model, torch.optim.SGD(model.parameters(), lr=0.0), train_mb_size=32,
                         plugins=[Read(50)], seed=0, precision=precision)
        strategy.train(split_digits().train_stream[0])
    # The scaler multiplies the loss by 65536: seen scaled, the gradients would be that much larger.
    for a, b in zip(grads["fp32"], grads["fp16"]):
        assert torch.allclose(a, b, rtol=0.05, atol=1e-3)
    agem = AGEMPlugin(mem_size=50, sample_size=16)
    model = make_mlp(64, 10, [32], seed=0)
    strategy = Naive(model, torch.optim.SGD(model.parameters(), lr=0.05), train_mb_size=16,
                     plugins=[agem], seed=0, precision="fp16")
    strategy.train(split_digits().train_stream[:2])
    assert agem.projections > 0 and torch.isfinite(weights(strategy)).all()


def test_the_fp16_scaler_is_saved_and_resumes_exactly(tmp_path):
    config = RunConfig(epochs=1, n_experiences=3, hidden=[16], mem_size=40, precision="fp16").validate()
    bench = build_benchmark(config)
    whole = build_strategy(config, bench)
    for experience in bench.train_stream:
        whole.train(experience)
    first = build_strategy(config, bench)
    first.train(bench.train_stream[0])
    save_checkpoint(first, tmp_path / "c.pt", config=config)
    assert first.state_dict()["scaler"]["scale"] > 0
    resumed = build_strategy(config, bench)
    assert load_checkpoint(resumed, tmp_path / "c.pt", config=config) == 1
    for experience in bench.train_stream[1:]:
        resumed.train(experience)
    assert torch.equal(weights(resumed), weights(whole))
    other = replace(config, precision="bf16")
    with pytest.raises(CheckpointError, match="precision: saved 'fp16', now 'bf16'"):
        load_checkpoint(build_strategy(other, bench), tmp_path / "c.pt", config=other)
    with pytest.raises(ValueError, match="trained with an fp16 gradient scaler, this strategy's precision is 'fp32'"):
        Acceleration(nn.Linear(1, 1), torch.device("cpu")).load_state_dict(first.state_dict()["scaler"])


def test_a_compiled_model_trains_the_same_weights_and_resumes_exactly():
    eager, bench = train()
    compiled, _ = train(compile=AOT_EAGER)
    assert torch.equal(weights(eager), weights(compiled))
    assert compiled.acceleration.model is compiled.model  # plugins and checkpoints read the module
    half, _ = train(experiences=1, compile=AOT_EAGER)
    resumed, _ = train(experiences=0, compile=AOT_EAGER)
    resumed.load_state_dict(half.state_dict())
    resumed.train(bench.train_stream[1])
    assert torch.equal(weights(resumed), weights(compiled))


def test_channels_last_keeps_image_models_and_batches_in_that_order():
    model = make_cnn((3, 8, 8), 4, seed=0, channels=(4, 8))
    acceleration = Acceleration(model, torch.device("cpu"), channels_last=True)
    conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    seen = []
    model.register_forward_pre_hook(lambda _m, args: seen.append(args[0].is_contiguous(
        memory_format=torch.channels_last)))
    x = torch.randint(0, 255, (5, 3, 8, 8), dtype=torch.uint8)
    out = acceleration.forward(x)
    reference = make_cnn((3, 8, 8), 4, seed=0, channels=(4, 8))(x)
    assert seen == [True] and torch.allclose(out, reference, atol=1e-5)


def test_the_run_sets_its_threads_and_refuses_bad_values(tmp_path):
    before = torch.get_num_threads()
    try:
        run_experiment(RunConfig(epochs=0, n_experiences=2, hidden=[8], threads=2), log=lambda _: None)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ValueError, match="threads must be a positive int, got 0"):
        RunConfig(threads=0).validate()
    with pytest.raises(ValueError, match="precision must be one of 'fp32', 'bf16', 'fp16', got 'fp8'"):
        RunConfig(precision="fp8").validate()
    with pytest.raises(ValueError, match="compile must be one of 'off', 'default', 'reduce-overhead', "
                                         "'max-autotune', got 'fast'"):
        RunConfig(compile="fast").validate()
    with pytest.raises(ValueError, match="channels_last applies to image models"):
        RunConfig(channels_last=True).validate()
    results = run_experiment(RunConfig(epochs=1, n_experiences=2, hidden=[8], precision="bf16",
                                       output=str(tmp_path)), log=lambda _: None)
    assert results["config"]["precision"] == "bf16" and results["config"]["threads"] == 1
