"""RunContext: what every component of a run learns once, at setup (see :mod:`clreplay._seeding`)."""

from __future__ import annotations

from typing import Mapping, Optional, Tuple

from clreplay import distributed as idist
from clreplay._seeding import RunContext
from clreplay._validation import check_seed


def resolve_context(seed, context: Optional[RunContext], distributed) -> Tuple[RunContext, Optional[dict]]:
    """A strategy's run context from its ``seed``, ``context`` and ``distributed`` arguments
    (checked), and the DistributedDataParallel options a dict ``distributed`` gives."""
    seed = check_seed("seed", seed)
    if context is not None and not isinstance(context, RunContext):
        raise TypeError(f"context must be a RunContext or None, got {type(context).__name__}")
    if context is not None and seed is not None and context.seed != seed:
        raise ValueError(f"seed ({seed}) must equal context.seed ({context.seed}) when both are given")
    options, distributed = (dict(distributed), True) if isinstance(distributed, Mapping) else (None, distributed)
    if not isinstance(distributed, bool):
        raise TypeError(f"distributed must be a bool or a dict of DistributedDataParallel options, "
                        f"got {distributed!r}")
    if context is None:
        context = RunContext(seed=0 if seed is None else seed, rank=idist.get_rank() if distributed else 0,
                             world_size=idist.get_world_size() if distributed else 1)
    return context, options


__all__ = ["RunContext", "resolve_context"]
