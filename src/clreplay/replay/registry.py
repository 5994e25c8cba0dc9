"""Storage policies and selection strategies looked up by name (for the command line)."""

from __future__ import annotations

from typing import Callable, Dict, List, Optional

from torch import nn

from clreplay._validation import check_choice
from clreplay.replay.class_balanced import ClassBalancedStoragePolicy
from clreplay.replay.experience_balanced import ExperienceBalancedStoragePolicy
from clreplay.replay.parametric import ParametricStoragePolicy
from clreplay.replay.reservoir import ReservoirSamplingStoragePolicy
from clreplay.replay.selection import (
    ClassExemplarsSelectionStrategy,
    ClosestToCenterSelectionStrategy,
    HerdingSelectionStrategy,
    RandomExemplarsSelectionStrategy,
)
from clreplay.replay.storage import StoragePolicy
from clreplay.replay.uncertainty import EntropySelectionStrategy, MarginSelectionStrategy

_SELECTIONS: Dict[str, Callable[..., ClassExemplarsSelectionStrategy]] = {
    "random": lambda model, layer_name, seed: RandomExemplarsSelectionStrategy(seed=seed),
    "herding": lambda model, layer_name, seed: HerdingSelectionStrategy(model, layer_name),
    "closest": lambda model, layer_name, seed: ClosestToCenterSelectionStrategy(model, layer_name),
    "entropy": lambda model, layer_name, seed: EntropySelectionStrategy(),
    "margin": lambda model, layer_name, seed: MarginSelectionStrategy(),
}

#: Selections that read the strategy's model at selection time, not a given one.
_SELECTIONS_WITHOUT_MODEL = {"random", "entropy", "margin"}

_POLICIES: Dict[str, Callable[..., StoragePolicy]] = {
    "experience": lambda mem_size, selection, seed, **options: ExperienceBalancedStoragePolicy(
        {}, mem_size, seed=seed
    ),
    "class": lambda mem_size, selection, seed, **options: ClassBalancedStoragePolicy(
        {}, mem_size, selection_strategy=selection, seed=seed
    ),
    "reservoir": lambda mem_size, selection, seed, **options: ReservoirSamplingStoragePolicy(
        {}, mem_size, seed=seed, **options
    ),
    "parametric": lambda mem_size, selection, seed, **options: ParametricStoragePolicy(
        {}, mem_size, selection_strategy=selection, seed=seed, **options
    ),
}

#: Policies that order their samples with a selection strategy.
POLICIES_WITH_SELECTION = {"class", "parametric"}

#: Keyword options beyond mem_size, selection and seed, by policy.
POLICY_OPTIONS = {"reservoir": {"memmap_dir"}, "parametric": {"groupby", "memmap_dir"}}


def list_policies() -> List[str]:
    return sorted(_POLICIES)


def list_selections() -> List[str]:
    return sorted(_SELECTIONS)


def make_selection_strategy(
    name: str, *, model: Optional[nn.Module] = None, layer_name: str = "", seed: Optional[int] = None
) -> ClassExemplarsSelectionStrategy:
    """The selection strategy registered as ``name`` (feature-based ones need ``model``)."""
    check_choice("selection", name, list_selections())
    if name not in _SELECTIONS_WITHOUT_MODEL and model is None:
        raise ValueError(f"selection {name!r} needs a model to compute features, got model=None")
    return _SELECTIONS[name](model, layer_name, seed)


def make_storage_policy(
    name: str,
    mem_size: int,
    *,
    selection: Optional[ClassExemplarsSelectionStrategy] = None,
    seed: Optional[int] = None,
    **options,
) -> StoragePolicy:
    """The storage policy registered as ``name``, with a fresh empty memory.

    ``options`` (``groupby``, ``memmap_dir``) go to the policies that take them
    (:data:`POLICY_OPTIONS`); an option left at None is not passed.

    >>> make_storage_policy("class", 100).mem_size
    100
    >>> make_storage_policy("parametric", 100, groupby="class").groupby
    'class'
    """
    check_choice("policy", name, list_policies())
    options = {key: value for key, value in options.items() if value is not None}
    allowed = POLICY_OPTIONS.get(name, set())
    for key in options:
        if key not in allowed:
            takers = sorted(p for p, keys in POLICY_OPTIONS.items() if key in keys)
            raise ValueError(
                f"{key} applies to the {' and '.join(repr(p) for p in takers) or 'no'} "
                f"policies, got {key}={options[key]!r} with policy {name!r}"
            )
    return _POLICIES[name](mem_size, selection, seed, **options)
