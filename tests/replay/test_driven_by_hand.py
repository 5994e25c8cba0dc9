"""A policy driven by hand needs only the attributes it reads; a wrong one is named."""

from types import SimpleNamespace
from unittest.mock import MagicMock

import pytest
import torch

from clreplay import (
    ClassBalancedStoragePolicy,
    ClassificationDataset,
    EntropySelectionStrategy,
    HerdingSelectionStrategy,
)
from clreplay.benchmarks import Experience
from clreplay.models import make_mlp


def experience():
    gen = torch.Generator().manual_seed(0)
    return Experience(ClassificationDataset(torch.randn(30, 4, generator=gen), torch.arange(30) % 3),
                      0, [0, 1, 2])


def herding_policy():
    model = make_mlp(4, 3, [8], seed=0)
    return ClassBalancedStoragePolicy({}, 9, selection_strategy=HerdingSelectionStrategy(model, "1"))


def test_a_mock_strategy_gets_an_error_naming_eval_mb_size():
    strategy = MagicMock()
    strategy.experience, strategy.device = experience(), "cpu"
    # Before: "'>' not supported between instances of 'MagicMock' and 'int'", from the run context.
    with pytest.raises(TypeError, match=r"^strategy\.eval_mb_size must be a positive int or None "
                       r"\(the batch size of the selection's forward passes\), got MagicMock$"):
        herding_policy()(strategy)
    strategy.device = MagicMock()
    with pytest.raises(TypeError, match=r"^strategy\.device must be a torch\.device or a str .* got MagicMock$"):
        herding_policy()(strategy)


def test_a_mock_with_the_attributes_set_stores_what_a_plain_object_stores():
    mock = MagicMock()
    mock.experience, mock.device, mock.eval_mb_size = experience(), "cpu", 8
    by_mock, by_hand = herding_policy(), herding_policy()
    by_mock(mock)
    by_hand(SimpleNamespace(experience=experience()))  # no device, no batch size: cpu, one batch
    assert {k: v.targets.tolist() for k, v in by_mock.ext_mem.items()} == {0: [0] * 3, 1: [1] * 3, 2: [2] * 3}
    for key in by_hand.ext_mem:
        assert torch.equal(by_mock.ext_mem[key].get_batch(torch.arange(3))[0],
                           by_hand.ext_mem[key].get_batch(torch.arange(3))[0])


def test_uncertainty_selection_names_what_it_misses():
    model = make_mlp(4, 3, [8], seed=0)
    policy = ClassBalancedStoragePolicy({}, 9, selection_strategy=EntropySelectionStrategy())
    with pytest.raises(TypeError, match="strategy must have a 'model' attribute"):
        policy(SimpleNamespace(experience=experience()))
    with pytest.raises(TypeError, match=r"^strategy\.predict must be callable"):
        policy(SimpleNamespace(experience=experience(), model=model, predict=3))
    strategy = MagicMock()
    strategy.experience, strategy.model = experience(), model
    with pytest.raises(TypeError, match=r"^strategy\.device must be"):
        policy(strategy)


def test_a_missing_experience_is_named():
    with pytest.raises(TypeError, match="strategy must have an 'experience' attribute"):
        herding_policy()(SimpleNamespace(device="cpu"))
