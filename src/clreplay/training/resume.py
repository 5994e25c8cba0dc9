"""Resuming inside an experience: what a checkpoint taken at the end of an iteration holds.

At the start of each epoch the strategy notes its generator's state and its batch
source's (the epoch's draws come from them). A checkpoint taken inside the epoch
saves those and the epoch's loss so far (``in_progress``); a new strategy loaded
with it re-draws the same epoch from the noted states, puts every plugin back where
it was at the end of the saved iteration, and skips the batches already trained on.
Over several processes the state holds nothing particular to a rank, so it resumes
under any number of processes.
"""

from __future__ import annotations

from typing import Optional

import torch


def begin_epoch(strategy, resume: Optional[dict]) -> None:
    """Note the epoch's start (or, for the epoch a checkpoint was taken in, go back to it:
    its batches again, from the same draws)."""
    if resume is None:
        strategy._epoch_start = (strategy.generator.get_state(), strategy._batch_source.state_dict())
        strategy.epoch_loss_sum = torch.zeros((), device=strategy.device)
        strategy.clock.train_epoch_iterations = 0
    else:
        strategy._epoch_start = (resume["epoch_generator"], resume["epoch_source"])
        strategy.generator.set_state(strategy._epoch_start[0])
        strategy._batch_source.load_state_dict(strategy._epoch_start[1])


def resume_epoch(strategy, resume: dict) -> int:
    """After the epoch's ``before_training_epoch`` hooks, which reset what plugins keep per
    experience and epoch: the checkpoint's plugin states and loss; the first batch to train."""
    for plugin, state in zip(strategy.plugins, resume["plugins"]):
        plugin.load_state_dict(state)
    strategy.epoch_loss_sum = resume["epoch_loss_sum"].to(strategy.device)
    parallel = strategy._parallel
    if parallel is not None and parallel.rank != 0:
        # The saved sum is over every rank's share (see in_progress_state) and the epoch's
        # end sums the ranks' sums again: one rank carries it, under any world size.
        strategy.epoch_loss_sum = torch.zeros_like(strategy.epoch_loss_sum)
    return strategy.clock.train_epoch_iterations


def in_progress_state(strategy) -> dict:
    """What a checkpoint taken inside an experience adds: the epoch's starting draws and its
    loss so far (summed over the ranks: a collective every rank calls)."""
    generator, source = strategy._epoch_start
    loss_sum = strategy.epoch_loss_sum.detach().clone()
    if strategy._parallel is not None:  # each rank holds its shares' sum so far
        loss_sum = strategy._parallel.sum(loss_sum)
    return {"epoch_generator": generator, "epoch_source": source, "epoch_loss_sum": loss_sum}
