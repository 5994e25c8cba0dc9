"""Hyper-parameter search on a validation split: ``clreplay tune``.

:func:`~clreplay.tuning.validation.validation_benchmark` holds a share of every class of
the training data out as the test stream; :mod:`~clreplay.tuning.grid` turns a grid or a
list into points; :func:`~clreplay.tuning.search.run_tune` runs every point on every
seed in parallel processes, resumably, and :func:`~clreplay.tuning.search.summarise`
ranks them; :func:`~clreplay.tuning.search.write_outputs` writes the tables and the best
point as a preset.
"""

from clreplay.tuning.grid import grid_points, parse_grid, read_points
from clreplay.tuning.search import (
           config_of,
           preset_toml,
           run_point,
           run_tune,
           summarise,
           write_outputs,
)
from clreplay.tuning.validation import validation_benchmark

__all__ = ["config_of", "grid_points", "parse_grid", "preset_toml", "read_points", "run_point", "run_tune",
           "summarise", "validation_benchmark", "write_outputs"]
