import pytest
import torch

from clreplay.training import HOOKS, BaseStrategy, StrategyPlugin


def test_base_plugin_hooks_do_nothing():
    plugin = StrategyPlugin()
    for hook in HOOKS:
        assert getattr(plugin, hook)(None, anything=1) is None
    assert plugin.state_dict() == {}


def _strategy(plugins):
    model = torch.nn.Linear(2, 2)
    return BaseStrategy(model, torch.optim.SGD(model.parameters(), lr=0.1), plugins=plugins)


def test_misspelled_hook_is_reported():
    class Typo(StrategyPlugin):
        def befor_training_exp(self, strategy, **kwargs):
            pass

    with pytest.raises(ValueError, match=r"plugins\[0\] \(Typo\) defines 'befor_training_exp', which is not a hook; did you mean 'before_training_exp'\?"):
        _strategy([Typo()])


def test_only_near_misses_of_hook_names_are_reported():
    class Own(StrategyPlugin):  # a method of the plugin's own, named like no hook in particular
        def after_everything(self, strategy, **kwargs):
            pass

    _strategy([Own()])

    class NearMiss(StrategyPlugin):
        def after_training_epch(self, strategy, **kwargs):
            pass

    with pytest.raises(ValueError, match=r"defines 'after_training_epch', which is not a hook; "
                                         r"did you mean 'after_training_epoch'\? \(rename it"):
        _strategy([NearMiss()])


def test_helper_methods_are_fine():
    class WithHelper(StrategyPlugin):
        def compute_something(self):
            return 1

    _strategy([WithHelper()])


def test_plugins_must_be_plugins():
    with pytest.raises(TypeError, match=r"plugins\[1\] must be a StrategyPlugin, got object"):
        _strategy([StrategyPlugin(), object()])


def test_a_plugin_may_own_the_loss_and_the_prediction_rule():
    class Owner(StrategyPlugin):
        def criterion(self, strategy):
            return strategy.mb_output.sum() * 0 + 7.0

        def predict(self, strategy, x):
            return -strategy.model(x)

    strategy = _strategy([StrategyPlugin(), Owner()])
    x = torch.ones(1, 2)
    assert torch.equal(strategy.predict(x), -strategy.model(x))
    strategy.mb_output = strategy.model(x)
    assert strategy.criterion().item() == 7.0


def test_two_plugins_cannot_own_one_seam():
    class Loss(StrategyPlugin):
        def criterion(self, strategy):
            return 0.0

    with pytest.raises(ValueError, match=r"plugins\[0\] \(Loss\) and plugins\[2\] \(Loss\) both define "
                                         r"criterion\(\); at most one plugin may own"):
        _strategy([Loss(), StrategyPlugin(), Loss()])
