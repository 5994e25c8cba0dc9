"""clreplay: continual learning by rehearsal, exact and fast, on PyTorch."""

from clreplay.data import ClassificationDataset
from clreplay.replay import (
    ClassBalancedStoragePolicy,
    ClassExemplarsSelectionStrategy,
    ClosestToCenterSelectionStrategy,
    EntropySelectionStrategy,
    ExperienceBalancedStoragePolicy,
    FeatureBasedExemplarsSelectionStrategy,
    HerdingSelectionStrategy,
    MarginSelectionStrategy,
    OnlineReplayPlugin,
    ParametricStoragePolicy,
    RandomExemplarsSelectionStrategy,
    ReplayPlugin,
    ReservoirSamplingStoragePolicy,
    StoragePolicy,
    StreamingStoragePolicy,
)
from clreplay.training import BaseStrategy, Naive, StrategyPlugin

__version__ = "0.1.0"

__all__ = [
    "BaseStrategy",
    "ClassBalancedStoragePolicy",
    "ClassExemplarsSelectionStrategy",
    "ClassificationDataset",
    "ClosestToCenterSelectionStrategy",
    "EntropySelectionStrategy",
    "ExperienceBalancedStoragePolicy",
    "FeatureBasedExemplarsSelectionStrategy",
    "HerdingSelectionStrategy",
    "MarginSelectionStrategy",
    "Naive",
    "OnlineReplayPlugin",
    "ParametricStoragePolicy",
    "RandomExemplarsSelectionStrategy",
    "ReplayPlugin",
    "ReservoirSamplingStoragePolicy",
    "StoragePolicy",
    "StreamingStoragePolicy",
    "StrategyPlugin",
    "__version__",
]
