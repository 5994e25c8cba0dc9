"""clreplay: continual learning by rehearsal, exact and fast, on PyTorch."""

from clreplay.data import ClassificationDataset, MiniBatch
from clreplay.replay import (
    ClassBalancedStoragePolicy,
    ClassExemplarsSelectionStrategy,
    ClosestToCenterSelectionStrategy,
    EntropySelectionStrategy,
    ExperienceBalancedStoragePolicy,
    FeatureBasedExemplarsSelectionStrategy,
    HerdingSelectionStrategy,
    MarginSelectionStrategy,
    MemoryStore,
    OnlineReplayPlugin,
    ParametricStoragePolicy,
    RandomExemplarsSelectionStrategy,
    ReplayPlugin,
    ReservoirSamplingStoragePolicy,
    StoragePolicy,
    StreamingStoragePolicy,
)
from clreplay.training import BaseStrategy, Naive, RunContext, StrategyPlugin

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
    "MemoryStore",
    "MiniBatch",
    "Naive",
    "OnlineReplayPlugin",
    "ParametricStoragePolicy",
    "RandomExemplarsSelectionStrategy",
    "ReplayPlugin",
    "ReservoirSamplingStoragePolicy",
    "RunContext",
    "StoragePolicy",
    "StreamingStoragePolicy",
    "StrategyPlugin",
    "__version__",
]
