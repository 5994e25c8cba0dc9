"""Storage policies and selection strategies looked up by name (for the command line)."""

from __future__ import annotations

from typing import Callable, Dict, List, Optional

from torch import nn

from clreplay._validation import check_choice
from clreplay.replay.class_balanced import ClassBalancedStoragePolicy
from clreplay.replay.experience_balanced import ExperienceBalancedStoragePolicy
from clreplay.replay.selection import (
    ClassExemplarsSelectionStrategy,
    ClosestToCenterSelectionStrategy,
    HerdingSelectionStrategy,
    RandomExemplarsSelectionStrategy,
)
from clreplay.replay.storage import StoragePolicy

_SELECTIONS: Dict[str, Callable[..., ClassExemplarsSelectionStrategy]] = {
    "random": lambda model, layer_name, seed: RandomExemplarsSelectionStrategy(seed=seed),
    "herding": lambda model, layer_name, seed: HerdingSelectionStrategy(model, layer_name),
    "closest": lambda model, layer_name, seed: ClosestToCenterSelectionStrategy(model, layer_name),
}

_POLICIES: Dict[str, Callable[..., StoragePolicy]] = {
    "experience": lambda mem_size, selection, seed: ExperienceBalancedStoragePolicy(
        {}, mem_size, seed=seed
    ),
    "class": lambda mem_size, selection, seed: ClassBalancedStoragePolicy(
        {}, mem_size, selection_strategy=selection, seed=seed
    ),
}

#: Policies that order their samples with a selection strategy.
POLICIES_WITH_SELECTION = {"class"}


def list_policies() -> List[str]:
    return sorted(_POLICIES)


def list_selections() -> List[str]:
    return sorted(_SELECTIONS)


def make_selection_strategy(
    name: str, *, model: Optional[nn.Module] = None, layer_name: str = "", seed: Optional[int] = None
) -> ClassExemplarsSelectionStrategy:
    """The selection strategy registered as ``name`` (feature-based ones need ``model``)."""
    check_choice("selection", name, list_selections())
    if name != "random" and model is None:
        raise ValueError(f"selection {name!r} needs a model to compute features, got model=None")
    return _SELECTIONS[name](model, layer_name, seed)


def make_storage_policy(
    name: str,
    mem_size: int,
    *,
    selection: Optional[ClassExemplarsSelectionStrategy] = None,
    seed: Optional[int] = None,
) -> StoragePolicy:
    """The storage policy registered as ``name``, with a fresh empty memory.

    >>> make_storage_policy("class", 100).mem_size
    100
    """
    check_choice("policy", name, list_policies())
    return _POLICIES[name](mem_size, selection, seed)
