"""The memory store: named columns of samples, in tensors or memory-mapped files."""

from clreplay.replay.storage.memmap import MappedFile, mapped_empty
from clreplay.replay.storage.store import CORE_COLUMNS, ColumnSpec, GroupPlan, MemoryStore

__all__ = ["CORE_COLUMNS", "ColumnSpec", "GroupPlan", "MappedFile", "MemoryStore", "mapped_empty"]
