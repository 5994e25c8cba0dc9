"""Augmentation costs < 10% of a ResNet-18 training step (issue 13).

One process, side by side, alternating: ``standard_augmentation`` (random crop with
4 pixels of zero padding, then a horizontal flip, batched on the tensor) of a batch
of 128 CIFAR-shaped ``uint8`` images, against one training step of the reduced
ResNet-18 (nf=20) on that batch: forward (normalisation included), cross-entropy,
backward, SGD step. Median over repeats; the ratio augmentation / step must stay
below 0.10.

    python bench/bench_augment.py
"""

from __future__ import annotations

import sys

import _harness as h
import torch

from clreplay.data.augment import standard_augmentation
from clreplay.models import make_resnet18

TARGET = 0.10


def main(argv=None) -> int:
    args = h.parse_args(
        __doc__.splitlines()[0], argv,
        batch={"type": int, "default": 128, "help": "images per batch"},
        repeats={"type": int, "default": 9, "help": "measured runs of each (median)"},
        inner={"type": int, "default": 20, "help": "augmentations per timed run"},
    )
    batch, repeats, inner = (16, 1, 2) if args.quick else (args.batch, args.repeats, args.inner)
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (batch, 3, 32, 32), dtype=torch.uint8, generator=gen)
    y = torch.randint(0, 10, (batch,), generator=gen)
    model = make_resnet18((3, 32, 32), 10, seed=0, mean=(0.4914, 0.4822, 0.4465),
                          std=(0.2470, 0.2435, 0.2615))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    criterion = torch.nn.CrossEntropyLoss()
    augment = standard_augmentation(seed=0)

    def augmentation() -> float:
        start = h.clock()
        for _ in range(inner):
            augment(x)
        return (h.clock() - start) / inner

    def step() -> float:
        start = h.clock()
        optimizer.zero_grad(set_to_none=True)
        criterion(model(x), y).backward()
        optimizer.step()
        return h.clock() - start

    with h.no_gc():
        times = h.alternate({"augmentation": augmentation, "step": step}, repeats)
    aug, train = h.median(times["augmentation"]), h.median(times["step"])
    ratio = aug / train
    print(f"{h.machine()}")
    print(f"batch of {batch} images 3x32x32 uint8")
    print(f"augmentation (crop pad 4 + flip): {aug * 1e3:8.3f} ms")
    print(f"ResNet-18 (nf=20) training step:  {train * 1e3:8.3f} ms")
    print(f"ratio augmentation / step: {ratio:.4f} (target < {TARGET}) "
          f"{h.verdict(ratio, TARGET, higher_is_better=False)}")
    passed = ratio < TARGET
    h.emit("augmentation / ResNet-18 step (128 CIFAR images)", f"< {TARGET}", ratio, "x",
           passed, augmentation_ms=aug * 1e3, step_ms=train * 1e3, batch=batch)
    return 0 if passed or args.quick else 1


if __name__ == "__main__":
    sys.exit(main())
