"""RunContext: what every component of a run learns once, at setup (see :mod:`clreplay._seeding`)."""

from clreplay._seeding import RunContext

__all__ = ["RunContext"]
