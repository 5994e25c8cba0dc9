"""Storage policies: which samples a replay memory keeps (they decide; the store applies)."""

from clreplay.replay.policies.allocation import split_capacity
from clreplay.replay.policies.base import StoragePolicy, check_storage_policy, experience_of
from clreplay.replay.policies.class_balanced import ClassBalancedStoragePolicy
from clreplay.replay.policies.experience_balanced import ExperienceBalancedStoragePolicy
from clreplay.replay.policies.parametric import GROUPBY, ParametricStoragePolicy
from clreplay.replay.policies.reservoir import ReservoirSamplingStoragePolicy
from clreplay.replay.policies.streaming import StreamingStoragePolicy

__all__ = [
    "GROUPBY",
    "ClassBalancedStoragePolicy",
    "ExperienceBalancedStoragePolicy",
    "ParametricStoragePolicy",
    "ReservoirSamplingStoragePolicy",
    "StoragePolicy",
    "StreamingStoragePolicy",
    "check_storage_policy",
    "experience_of",
    "split_capacity",
]
