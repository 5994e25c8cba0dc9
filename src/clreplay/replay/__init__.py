"""The replay system: plugin, storage policies, exemplar selection and batch mixing."""

from clreplay.replay.allocation import balanced_sizes
from clreplay.replay.batching import ReplayBatchSource, split_evenly
from clreplay.replay.class_balanced import ClassBalancedStoragePolicy
from clreplay.replay.experience_balanced import ExperienceBalancedStoragePolicy
from clreplay.replay.plugin import ReplayPlugin
from clreplay.replay.selection import (
    ClassExemplarsSelectionStrategy,
    ClosestToCenterSelectionStrategy,
    FeatureBasedExemplarsSelectionStrategy,
    HerdingSelectionStrategy,
    RandomExemplarsSelectionStrategy,
    closest_to_center_order,
    herding_order,
)
from clreplay.replay.storage import StoragePolicy

__all__ = [
    "ClassBalancedStoragePolicy",
    "ClassExemplarsSelectionStrategy",
    "ClosestToCenterSelectionStrategy",
    "ExperienceBalancedStoragePolicy",
    "FeatureBasedExemplarsSelectionStrategy",
    "HerdingSelectionStrategy",
    "RandomExemplarsSelectionStrategy",
    "ReplayBatchSource",
    "ReplayPlugin",
    "StoragePolicy",
    "balanced_sizes",
    "closest_to_center_order",
    "herding_order",
    "split_evenly",
]
