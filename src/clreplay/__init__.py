"""clreplay: continual learning by rehearsal, exact and fast, on PyTorch."""

from clreplay.data import ClassificationDataset
from clreplay.replay import (
    ClassBalancedStoragePolicy,
    ClassExemplarsSelectionStrategy,
    ClosestToCenterSelectionStrategy,
    ExperienceBalancedStoragePolicy,
    FeatureBasedExemplarsSelectionStrategy,
    HerdingSelectionStrategy,
    RandomExemplarsSelectionStrategy,
    ReplayPlugin,
    StoragePolicy,
)
from clreplay.training import BaseStrategy, Naive, StrategyPlugin

__version__ = "0.1.0"

__all__ = [
    "BaseStrategy",
    "ClassBalancedStoragePolicy",
    "ClassExemplarsSelectionStrategy",
    "ClassificationDataset",
    "ClosestToCenterSelectionStrategy",
    "ExperienceBalancedStoragePolicy",
    "FeatureBasedExemplarsSelectionStrategy",
    "HerdingSelectionStrategy",
    "Naive",
    "RandomExemplarsSelectionStrategy",
    "ReplayPlugin",
    "StoragePolicy",
    "StrategyPlugin",
    "__version__",
]
