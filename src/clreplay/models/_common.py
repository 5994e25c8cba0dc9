"""Helpers of the model builders: seeded initialisation, image-shape checks."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence, Tuple

from clreplay._seeding import derive_seed, global_rng_seeded
from clreplay._validation import check_positive_int, check_seed


@contextmanager
def seeded_init(seed: int) -> Iterator[None]:
    """Run the block with torch's global CPU generator seeded with the ``"init"`` stream of
    the run seed ``seed``, then put the caller's generator state back (layers draw their
    initial weights from it)."""
    seed = check_seed("seed", seed)
    with global_rng_seeded(derive_seed(0 if seed is None else seed, "init")):
        yield


def check_image_shape(input_shape: Sequence[int]) -> Tuple[int, int, int]:
    """``(channels, height, width)`` as ints, or a ValueError/TypeError naming ``input_shape``."""
    if isinstance(input_shape, (str, bytes)) or not hasattr(input_shape, "__len__"):
        raise TypeError(f"input_shape must be (channels, height, width), got {input_shape!r}")
    if len(input_shape) != 3:
        raise ValueError(
            f"input_shape must be (channels, height, width) of an image, got {tuple(input_shape)}"
        )
    c, h, w = (check_positive_int("input_shape", d) for d in input_shape)
    return c, h, w
