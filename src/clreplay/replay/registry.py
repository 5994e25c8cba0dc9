"""Storage policies and selection strategies looked up by name (the command line, reports).

Each component class describes itself (``name``, ``summary``, ``options``,
``needs_model``: :class:`~clreplay.components.Described`); the tables below only
list the classes, so a new policy is one class plus one line here.
"""

from __future__ import annotations

from typing import List, Optional

from torch import nn

from clreplay._validation import check_choice
from clreplay.components import Registry
from clreplay.replay import policies, selection
from clreplay.replay.policies import StoragePolicy
from clreplay.replay.selection import ClassExemplarsSelectionStrategy

POLICIES = Registry("policy", [
    policies.ExperienceBalancedStoragePolicy,
    policies.ClassBalancedStoragePolicy,
    policies.ReservoirSamplingStoragePolicy,
    policies.ParametricStoragePolicy,
])

SELECTIONS = Registry("selection", [
    selection.RandomExemplarsSelectionStrategy,
    selection.HerdingSelectionStrategy,
    selection.ClosestToCenterSelectionStrategy,
    selection.EntropySelectionStrategy,
    selection.MarginSelectionStrategy,
])

#: Policies that order their samples with a selection strategy.
POLICIES_WITH_SELECTION = {name for name, cls in POLICIES.items() if cls.uses_selection}

#: Keyword options beyond mem_size, selection and seed, by policy: what the policy is
#: (its ``options``) and where it keeps the memory (every policy takes ``memmap_dir``).
POLICY_OPTIONS = {name: {"memmap_dir", *(o.name for o in cls.options)} for name, cls in POLICIES.items()}


def describe_choices(table) -> str:
    """``name (summary), ...`` of a registry table, for help texts."""
    return ", ".join(f"{name} ({cls.summary})" for name, cls in sorted(table.items()))


def list_policies() -> List[str]:
    return sorted(POLICIES)


def list_selections() -> List[str]:
    return sorted(SELECTIONS)


def make_selection_strategy(
    name: str, *, model: Optional[nn.Module] = None, layer_name: str = "", seed: Optional[int] = None
) -> ClassExemplarsSelectionStrategy:
    """The selection strategy registered as ``name`` (feature-based ones need ``model``)."""
    check_choice("selection", name, list_selections())
    cls = SELECTIONS[name]
    if issubclass(cls, selection.FeatureBasedExemplarsSelectionStrategy):  # features of a given model
        if model is None:
            raise ValueError(f"selection {name!r} needs a model to compute features, got model=None")
        return cls(model, layer_name)
    if cls is selection.RandomExemplarsSelectionStrategy:
        return cls(seed=seed)
    return cls()


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
    allowed = POLICY_OPTIONS[name]
    for key in options:
        if key not in allowed:
            takers = sorted(p for p, keys in POLICY_OPTIONS.items() if key in keys)
            raise ValueError(
                f"{key} applies to the {' and '.join(repr(p) for p in takers) or 'no'} "
                f"policies, got {key}={options[key]!r} with policy {name!r}"
            )
    cls = POLICIES[name]
    if cls.uses_selection and selection is not None:
        options["selection_strategy"] = selection
    return cls({}, mem_size, seed=seed, **options)
