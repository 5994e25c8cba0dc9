"""ER: experience replay, the default method (:class:`~clreplay.ReplayPlugin`, unchanged).

Chaudhry et al., "On Tiny Episodic Memories in Continual Learning", 2019: each
mini-batch joins current samples with samples replayed from a memory, and the
loss is the ordinary cross-entropy over the joint batch (their Eq. 1 over
``B ∪ B_M``). The storage policy, selection, online updates and batch options
are the run's replay options (``--policy``, ``--selection``, ``--online``, ...).
"""

from __future__ import annotations

from typing import List

from torch import nn

from clreplay.models import feature_layer_name
from clreplay.replay.online import OnlineReplayPlugin
from clreplay.replay.plugin import ReplayPlugin
from clreplay.replay.registry import (
    POLICIES_WITH_SELECTION,
    make_selection_strategy,
    make_storage_policy,
)
from clreplay.strategies.method import Method


def build_replay_plugin(config, model: nn.Module) -> ReplayPlugin | OnlineReplayPlugin:
    """The replay plugin a run configuration describes (policy, selection, online, options)."""
    selection = None
    if config.policy in POLICIES_WITH_SELECTION:
        selection = make_selection_strategy(
            config.selection, model=model, layer_name=feature_layer_name(model)
        )
    policy = make_storage_policy(config.policy, config.mem_size, selection=selection,
                                 groupby=config.groupby, memmap_dir=config.memmap_dir)
    if config.online:  # each sample offered once, in the first epoch (the online protocol)
        return OnlineReplayPlugin(config.mem_size, policy, batch_size_mem=config.batch_size_mem)
    return ReplayPlugin(config.mem_size, policy, batch_size_mem=config.batch_size_mem,
                        task_balanced=config.task_balanced)


def _build(config, model: nn.Module) -> List:
    return [build_replay_plugin(config, model)]


ER = Method(
    name="er",
    summary="experience replay: current and replayed samples in one cross-entropy (ReplayPlugin)",
    paper="Chaudhry et al., On Tiny Episodic Memories in Continual Learning, 2019",
    build=_build,
    replay_options=("batch_size_mem", "memmap_dir"),
    protocol="the memory updated after each experience by --policy; with --online, from every step of "
             "the first epoch (each sample offered once)",
)
