"""A validation split held out of the training data: what a tune scores settings on.

The test set is never looked at: each training experience gives up a share of every
class's samples, which become that experience's "test" set, so the accuracy matrix,
the final average accuracy and the anytime accuracy of a tuning run are measured on
data the run did not train on and the benchmark's test stream is left alone.
"""

from __future__ import annotations

from dataclasses import replace
from typing import List, Tuple

import torch

from clreplay._seeding import derive_seed, make_generator
from clreplay.data.experience import Benchmark, Experience


def _split(experience: Experience, fraction: float, generator: torch.Generator) -> Tuple[Experience, Experience]:
    targets = experience.dataset.targets.cpu()
    held: List[torch.Tensor] = []
    for c in torch.unique(targets).tolist():
        rows = torch.nonzero(targets == c).flatten()
        take = min(max(1, round(fraction * len(rows))), len(rows) - 1) if len(rows) > 1 else 0
        held.append(rows[torch.randperm(len(rows), generator=generator)[:take]])
    held_rows = torch.sort(torch.cat(held)).values if held else torch.zeros(0, dtype=torch.long)
    keep = torch.ones(len(targets), dtype=torch.bool)
    keep[held_rows] = False
    data = experience.dataset
    train = data.subset(torch.nonzero(keep).flatten().to(data.device))
    val = data.subset(held_rows.to(data.device))
    return (replace(experience, dataset=train), replace(experience, dataset=val))


def validation_benchmark(benchmark: Benchmark, fraction: float = 0.1, *, seed: int = 0) -> Benchmark:
    """``benchmark`` whose training experiences lose a share ``fraction`` of every class's
    samples (at least one, drawn from the ``"validation"`` stream of ``seed``), which form the
    test stream in their place.

    >>> from clreplay.benchmarks import split_digits
    >>> bench = split_digits()
    >>> tuned = validation_benchmark(bench, 0.1)
    >>> len(tuned.train_stream[0]) + len(tuned.test_stream[0]) == len(bench.train_stream[0])
    True
    >>> len(tuned.test_stream[0]), tuned.test_stream[0].classes_in_this_experience == bench.test_stream[0].classes_in_this_experience
    (25, True)
    """
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
        raise ValueError(f"--holdout must be a share in (0, 1), got {fraction!r}")
    generator = make_generator(derive_seed(seed, "validation"))
    pairs = [_split(e, float(fraction), generator) for e in benchmark.train_stream]
    return replace(benchmark, train_stream=[p[0] for p in pairs], test_stream=[p[1] for p in pairs],
                   name=f"{benchmark.name} (validation)")
