"""Batch mixing: how replayed samples join the current data in each mini-batch."""

from clreplay.replay.mixing.balanced import (
    AppendMemoryBatchSource,
    ReplayBatchSource,
    memory_shares,
    split_evenly,
)
from clreplay.replay.mixing.draws import MemoryReader, group_by_task, sample_without_replacement
from clreplay.replay.mixing.online import OnlineReplayBatchSource

__all__ = [
    "AppendMemoryBatchSource",
    "MemoryReader",
    "OnlineReplayBatchSource",
    "ReplayBatchSource",
    "group_by_task",
    "memory_shares",
    "sample_without_replacement",
    "split_evenly",
]
