"""The memory's storage: pure column storages (RAM tensors or memory-mapped files) and the
store that applies a policy's decisions to one."""

from clreplay.replay.storage.columns import ColumnSpec, ColumnStorage, TensorStorage
from clreplay.replay.storage.memmap import MappedFile, MemmapStorage, mapped_empty
from clreplay.replay.storage.store import CORE_COLUMNS, GroupPlan, MemoryStore

__all__ = ["CORE_COLUMNS", "ColumnSpec", "ColumnStorage", "GroupPlan", "MappedFile", "MemmapStorage",
           "MemoryStore", "TensorStorage", "mapped_empty"]
