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
