"""What the replay memory of a run holds, for the evaluator's records."""

from __future__ import annotations

from typing import Dict

import torch


def memory_composition(strategy) -> dict:
    """The replay memory of the first plugin of ``strategy`` that has one (an
    ``ext_mem`` dict): ``size``, sample counts by ``groups`` (memory key) and by
    ``classes``, ``mem_size`` and ``policy``. Without a memory, size 0 and Nones.

    Keys are strings, so the dict survives a JSON round trip unchanged.
    """
    for plugin in strategy.plugins:
        ext_mem = getattr(plugin, "ext_mem", None)
        if isinstance(ext_mem, dict):
            break
    else:
        return {"size": 0, "groups": {}, "classes": {}, "mem_size": None, "policy": None}
    groups = {str(key): len(group) for key, group in ext_mem.items()}
    targets = [group.targets for group in ext_mem.values() if len(group)]
    classes: Dict[str, int] = {}
    if targets:
        labels, counts = torch.unique(torch.cat(targets), return_counts=True)
        classes = {str(c): n for c, n in zip(labels.tolist(), counts.tolist())}
    policy = getattr(plugin, "storage_policy", None)
    return {
        "size": sum(groups.values()),
        "groups": groups,
        "classes": classes,
        "mem_size": getattr(plugin, "mem_size", None),
        "policy": None if policy is None else type(policy).__name__,
    }
