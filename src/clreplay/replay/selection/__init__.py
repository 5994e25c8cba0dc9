"""Exemplar selection: in which order a group's samples are kept."""

from clreplay.replay.selection.base import (
    ClassExemplarsSelectionStrategy,
    RandomExemplarsSelectionStrategy,
    check_sorted_indices,
)
from clreplay.replay.selection.feature_based import (
    ClosestToCenterSelectionStrategy,
    FeatureBasedExemplarsSelectionStrategy,
    HerdingSelectionStrategy,
    closest_to_center_order,
    herding_order,
)
from clreplay.replay.selection.features import extract_features
from clreplay.replay.selection.uncertainty import (
    EntropySelectionStrategy,
    MarginSelectionStrategy,
    OutputBasedSelectionStrategy,
    entropy_order,
    margin_order,
)

__all__ = [
    "ClassExemplarsSelectionStrategy",
    "ClosestToCenterSelectionStrategy",
    "EntropySelectionStrategy",
    "FeatureBasedExemplarsSelectionStrategy",
    "HerdingSelectionStrategy",
    "MarginSelectionStrategy",
    "OutputBasedSelectionStrategy",
    "RandomExemplarsSelectionStrategy",
    "check_sorted_indices",
    "closest_to_center_order",
    "entropy_order",
    "extract_features",
    "herding_order",
    "margin_order",
]
