"""A NaN or infinite loss stops training with an error naming where, without a host sync per step."""

from types import SimpleNamespace

import pytest
import torch
from torch import nn

import clreplay.run as run_module
from clreplay.benchmarks import Experience
from clreplay.checkpoint import CHECKPOINT_FILENAME, read_checkpoint
from clreplay.data import ClassificationDataset
from clreplay.run import RunConfig, run_experiment
from clreplay.training import Naive
from clreplay.training.guards import CHUNK, NonFiniteLossError, NonFiniteLossGuard


class PoisonAt:
    """Cross-entropy, but NaN (or ``value``) at the ``at``-th call (counted from 1)."""

    def __init__(self, at, value=float("nan")):
        self.at, self.value, self.calls = at, value, 0

    def __call__(self, output, target):
        self.calls += 1
        loss = nn.functional.cross_entropy(output, target)
        return loss * self.value if self.calls == self.at else loss


def strategy_with(criterion, epochs=3):
    model = nn.Linear(2, 2)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.5, -0.25], [0.125, 1.0]]))
        model.bias.zero_()
    return Naive(model, torch.optim.SGD(model.parameters(), lr=0.1), criterion, train_mb_size=10,
                 train_epochs=epochs, plugins=[NonFiniteLossGuard()], seed=0)


def experience(index=0, n=40):
    x = torch.randn(n, 2, generator=torch.Generator().manual_seed(index))
    return Experience(ClassificationDataset(x, torch.arange(n) % 2), index, [0, 1])


@pytest.mark.parametrize("value, shown", [(float("nan"), "nan"), (float("inf"), "inf")])
def test_error_names_experience_epoch_and_iteration(value, shown):
    # 4 iterations an epoch: call 4 + 4 + 3 = 11 is epoch 3, iteration 3 of experience 1.
    strategy = strategy_with(PoisonAt(12 + 11, value))
    strategy.train(experience(0))
    with pytest.raises(NonFiniteLossError, match=(
            rf"^training loss became {shown} at experience 2, epoch 3 of 3, iteration 3 of 4; training "
            r"stopped before the experience ended, so no checkpoint holds this state")):
        strategy.train(experience(1))
    assert strategy.clock.train_exp_counter == 1  # the experience did not count as done


def test_non_finite_weights_with_a_finite_loss_are_caught():
    strategy = strategy_with(PoisonAt(0), epochs=1)
    # A weight the forward pass does not use: the loss stays finite.
    strategy.model.register_parameter("spare", nn.Parameter(torch.tensor([float("inf")])))
    with pytest.raises(NonFiniteLossError, match=r"^model weights \['spare'\] stopped being finite at "
                                                 r"experience 1, epoch 1 of 1 \(the loss stayed finite\)"):
        strategy.train(experience(0))


def test_finite_training_is_untouched():
    guarded, plain = strategy_with(None), strategy_with(None)
    plain.plugins, plain._hooks = [], {k: [] for k in plain._hooks}
    for s in (guarded, plain):
        s.train(experience(0))
    assert torch.equal(guarded.model.weight, plain.model.weight)


def test_no_host_sync_per_iteration():
    # A loss on the meta device has no value: any read (item, bool, tolist) would raise.
    guard = NonFiniteLossGuard()
    guard.before_training_epoch(None)
    step = SimpleNamespace(loss=torch.tensor(1.0, device="meta"))
    for _ in range(2 * CHUNK + 5):
        guard.after_training_iteration(step)
    assert len(guard._chunks) == 2 and len(guard._pending) == 5


def test_run_stops_and_the_previous_checkpoint_stays_valid(tmp_path, monkeypatch):
    build = run_module.build_strategy

    def poisoned(config, benchmark, **kwargs):
        strategy = build(config, benchmark, **kwargs)
        # Experience 0 has 250 train samples: 8 iterations of 32; NaN in experience 1.
        strategy.loss_fn = PoisonAt(8 + 5)  # the loss function (criterion() is the seam)
        return strategy

    monkeypatch.setattr(run_module, "build_strategy", poisoned)
    config = RunConfig(epochs=1, n_experiences=5, mem_size=20, hidden=[8],
                       checkpoint_dir=str(tmp_path / "ck"), output=str(tmp_path / "out"))
    with pytest.raises(NonFiniteLossError, match="at experience 2, epoch 1 of 1, iteration 5 of "):
        run_experiment(config, log=lambda _: None)
    saved = read_checkpoint(tmp_path / "ck" / CHECKPOINT_FILENAME)
    assert saved["next_experience"] == 1
    assert not (tmp_path / "out" / "results.json").exists()


def test_cli_reports_divergence_in_one_line(tmp_path, monkeypatch, capsys):
    from clreplay.cli import main

    build = run_module.build_strategy

    def poisoned(config, benchmark, **kwargs):
        strategy = build(config, benchmark, **kwargs)
        strategy.loss_fn = PoisonAt(8 + 2, float("inf"))
        return strategy

    monkeypatch.setattr(run_module, "build_strategy", poisoned)
    code = main(["run", "--epochs", "1", "--hidden", "8", "--mem-size", "20",
                 "--checkpoint-dir", str(tmp_path / "ck")])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1
    assert err.startswith("clreplay run: error: training loss became inf at experience 2, epoch 1 of 1, "
                          "iteration 2 of ")
