"""The replay system: plugin, storage policies, exemplar selection and batch mixing."""

from clreplay.replay.allocation import balanced_sizes
from clreplay.replay.batching import ReplayBatchSource, split_evenly
from clreplay.replay.class_balanced import ClassBalancedStoragePolicy
from clreplay.replay.experience_balanced import ExperienceBalancedStoragePolicy
from clreplay.replay.memmap import MappedFile, mapped_empty
from clreplay.replay.mixing import group_by_task, sample_without_replacement
from clreplay.replay.online import OnlineReplayBatchSource, OnlineReplayPlugin
from clreplay.replay.parametric import ParametricStoragePolicy
from clreplay.replay.plugin import ReplayPlugin
from clreplay.replay.reservoir import ReservoirSamplingStoragePolicy
from clreplay.replay.selection import (
    ClassExemplarsSelectionStrategy,
    ClosestToCenterSelectionStrategy,
    FeatureBasedExemplarsSelectionStrategy,
    HerdingSelectionStrategy,
    RandomExemplarsSelectionStrategy,
    closest_to_center_order,
    herding_order,
)
from clreplay.replay.slab import MappedDataset, Slab
from clreplay.replay.storage import StoragePolicy
from clreplay.replay.streaming import StreamingStoragePolicy
from clreplay.replay.uncertainty import (
    EntropySelectionStrategy,
    MarginSelectionStrategy,
    OutputBasedSelectionStrategy,
    entropy_order,
    margin_order,
)

__all__ = [
    "ClassBalancedStoragePolicy",
    "ClassExemplarsSelectionStrategy",
    "ClosestToCenterSelectionStrategy",
    "EntropySelectionStrategy",
    "ExperienceBalancedStoragePolicy",
    "FeatureBasedExemplarsSelectionStrategy",
    "HerdingSelectionStrategy",
    "MappedDataset",
    "MappedFile",
    "MarginSelectionStrategy",
    "OnlineReplayBatchSource",
    "OnlineReplayPlugin",
    "OutputBasedSelectionStrategy",
    "ParametricStoragePolicy",
    "RandomExemplarsSelectionStrategy",
    "ReplayBatchSource",
    "ReplayPlugin",
    "ReservoirSamplingStoragePolicy",
    "Slab",
    "StoragePolicy",
    "StreamingStoragePolicy",
    "balanced_sizes",
    "closest_to_center_order",
    "entropy_order",
    "group_by_task",
    "herding_order",
    "mapped_empty",
    "margin_order",
    "sample_without_replacement",
    "split_evenly",
]
