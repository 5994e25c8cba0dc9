"""Checkpoints: save a whole run to one file and resume it exactly.

The package: :mod:`~clreplay.checkpoint.format` (marker, version, digest),
:mod:`~clreplay.checkpoint.atomic` (atomic writes), :mod:`~clreplay.checkpoint.compat`
(does a file belong to this run), :mod:`~clreplay.checkpoint.files` (save, read, resume)
and :mod:`~clreplay.checkpoint.periodic` (saves inside an experience).

A checkpoint is built from ``strategy.state_dict()`` (model, optimiser with its
momentum buffers, clock, the strategy's generator, and every plugin's state: the
replay memory with its keys, order and generators, the evaluation history) plus
a description of the run it belongs to: the run's configuration and the shapes of
the model's tensors and the plugins' kinds. Resuming from it continues the run
bit for bit as if it had never stopped.

Files are written atomically (a temporary file in the same folder, flushed and
fsynced, then renamed over the old one), so a kill at any instant leaves either
the previous checkpoint or the new one; saves to one path from several processes
take turns (a lock file beside it), so none deletes another's file in flight.
They are read with ``torch.load(weights_only=True)`` only: tensors and plain
data, never code; a file that carries pickled objects is refused. Each file
holds the SHA-256 digest of its content (every tensor's bytes and every plain
value), and a file whose content does not match it (a flipped bit) is refused,
as is a state no run can reach (a negative experience counter, one beyond the
stream, a replay memory larger than its ``mem_size``).

>>> import tempfile, torch
>>> from clreplay.training import Naive
>>> def make():
...     model = torch.nn.Linear(4, 2)
...     return Naive(model, torch.optim.SGD(model.parameters(), lr=0.1), seed=0)
>>> with tempfile.TemporaryDirectory() as folder:
...     path = save_checkpoint(make(), f"{folder}/run.pt", config={"lr": 0.1})
...     load_checkpoint(make(), path, config={"lr": 0.1})
0
"""


from clreplay.checkpoint.atomic import remove_stale_temporaries
from clreplay.checkpoint.compat import (
    ADDED_CONFIG_FIELDS,
    IGNORED_CONFIG_FIELDS,
    check_checkpoint,
    describe_strategy,
)
from clreplay.checkpoint.files import (
    CHECKPOINT_FILENAME,
    checkpoint_path,
    load_checkpoint,
    read_checkpoint,
    restore_checkpoint,
    resume_if_saved,
    save_checkpoint,
)
from clreplay.checkpoint.format import FORMAT, VERSION, CheckpointError, payload_digest
from clreplay.checkpoint.periodic import CheckpointEvery

__all__ = [
    "ADDED_CONFIG_FIELDS",
    "CHECKPOINT_FILENAME",
    "FORMAT",
    "IGNORED_CONFIG_FIELDS",
    "VERSION",
    "CheckpointError",
    "CheckpointEvery",
    "check_checkpoint",
    "checkpoint_path",
    "describe_strategy",
    "load_checkpoint",
    "payload_digest",
    "read_checkpoint",
    "remove_stale_temporaries",
    "restore_checkpoint",
    "resume_if_saved",
    "save_checkpoint",
]
