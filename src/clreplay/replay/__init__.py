"""The replay system: plugins, storage policies, exemplar selection, the memory store, batch mixing.

Layers, from the bottom up:

* :mod:`~clreplay.replay.storage`: the :class:`MemoryStore`, named columns of
  samples (``x``, ``y``, ``t``, ``origin`` and extra columns a method registers),
  in tensors or memory-mapped files;
* :mod:`~clreplay.replay.selection`: in which order a group's samples are kept;
* :mod:`~clreplay.replay.policies`: which samples each group keeps (policies
  decide with index tensors, the store applies);
* :mod:`~clreplay.replay.mixing`: batch sources that mix replayed samples into
  the training batches, as :class:`~clreplay.data.MiniBatch` records;
* :class:`ReplayPlugin` and :class:`OnlineReplayPlugin` tie them to a strategy.
"""

from clreplay.replay.mixing import (
    AppendMemoryBatchSource,
    OnlineReplayBatchSource,
    ReplayBatchSource,
    group_by_task,
    sample_without_replacement,
    split_evenly,
)
from clreplay.replay.online import OnlineReplayPlugin
from clreplay.replay.plugin import ReplayPlugin
from clreplay.replay.policies import (
    ClassBalancedStoragePolicy,
    ExperienceBalancedStoragePolicy,
    ParametricStoragePolicy,
    ReservoirSamplingStoragePolicy,
    StoragePolicy,
    StreamingStoragePolicy,
    split_capacity,
)
from clreplay.replay.selection import (
    ClassExemplarsSelectionStrategy,
    ClosestToCenterSelectionStrategy,
    EntropySelectionStrategy,
    FeatureBasedExemplarsSelectionStrategy,
    HerdingSelectionStrategy,
    MarginSelectionStrategy,
    OutputBasedSelectionStrategy,
    RandomExemplarsSelectionStrategy,
    closest_to_center_order,
    entropy_order,
    extract_features,
    herding_order,
    margin_order,
)
from clreplay.replay.storage import ColumnSpec, GroupPlan, MappedFile, MemoryStore, mapped_empty

__all__ = [
    "AppendMemoryBatchSource",
    "ClassBalancedStoragePolicy",
    "ClassExemplarsSelectionStrategy",
    "ClosestToCenterSelectionStrategy",
    "ColumnSpec",
    "EntropySelectionStrategy",
    "ExperienceBalancedStoragePolicy",
    "FeatureBasedExemplarsSelectionStrategy",
    "GroupPlan",
    "HerdingSelectionStrategy",
    "MappedFile",
    "MarginSelectionStrategy",
    "MemoryStore",
    "OnlineReplayBatchSource",
    "OnlineReplayPlugin",
    "OutputBasedSelectionStrategy",
    "ParametricStoragePolicy",
    "RandomExemplarsSelectionStrategy",
    "ReplayBatchSource",
    "ReplayPlugin",
    "ReservoirSamplingStoragePolicy",
    "StoragePolicy",
    "StreamingStoragePolicy",
    "closest_to_center_order",
    "entropy_order",
    "extract_features",
    "group_by_task",
    "herding_order",
    "mapped_empty",
    "margin_order",
    "sample_without_replacement",
    "split_capacity",
    "split_evenly",
]
