import pytest
import torch

from clreplay import (
    ClassBalancedStoragePolicy,
    ExperienceBalancedStoragePolicy,
    HerdingSelectionStrategy,
)
from clreplay.replay.registry import make_selection_strategy, make_storage_policy


def test_make_by_name():
    assert isinstance(make_storage_policy("experience", 10), ExperienceBalancedStoragePolicy)
    policy = make_storage_policy("class", 10, selection=make_selection_strategy("herding", model=torch.nn.Linear(2, 2)))
    assert isinstance(policy, ClassBalancedStoragePolicy)
    assert isinstance(policy.selection_strategy, HerdingSelectionStrategy)


def test_unknown_names_suggest_close_ones():
    with pytest.raises(ValueError, match="policy must be one of .* got 'experiance'; did you mean 'experience'"):
        make_storage_policy("experiance", 10)
    with pytest.raises(ValueError, match="selection must be one of .* got 'herd'"):
        make_selection_strategy("herd")
    with pytest.raises(ValueError, match="selection 'herding' needs a model to compute features, got model=None"):
        make_selection_strategy("herding")
