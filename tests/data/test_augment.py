import pytest
import torch
import torch.nn.functional as F

from clreplay.data.augment import (
    Compose,
    Normalize,
    RandomCrop,
    RandomHorizontalFlip,
    crop_with_offsets,
    standard_augmentation,
)


def _images(n=6, c=2, h=5, w=4):
    return (torch.arange(n * c * h * w) % 251).to(torch.uint8).view(n, c, h, w) + 1


def test_crop_with_offsets_by_hand():
    x = torch.tensor([[[[1, 2, 3], [4, 5, 6], [7, 8, 9]]]], dtype=torch.uint8)
    # Padded by 1, the window at (0, 0) shifts the image down-right, (2, 2) up-left.
    assert crop_with_offsets(x, torch.tensor([0]), torch.tensor([0]), 1).tolist() == \
        [[[[0, 0, 0], [0, 1, 2], [0, 4, 5]]]]
    assert crop_with_offsets(x, torch.tensor([2]), torch.tensor([2]), 1).tolist() == \
        [[[[5, 6, 0], [8, 9, 0], [0, 0, 0]]]]
    assert crop_with_offsets(x, torch.tensor([1]), torch.tensor([1]), 1).tolist() == x.tolist()


def test_random_crop_follows_its_documented_draws():
    x = _images()
    crop = RandomCrop(2, seed=7)
    out = crop(x)
    offsets = torch.randint(0, 5, (2, 6), generator=torch.Generator().manual_seed(7))
    padded = F.pad(x, (2, 2, 2, 2))
    for i in range(6):  # reference: one sample at a time
        top, left = offsets[0, i], offsets[1, i]
        assert torch.equal(out[i], padded[i, :, top : top + 5, left : left + 4])
    assert out.dtype == torch.uint8 and out.shape == x.shape
    assert torch.equal(RandomCrop(2, seed=7)(x), out)  # same seed, same crops
    assert not torch.equal(RandomCrop(2, seed=8)(x), out)


def test_flip_follows_its_documented_draws():
    x = _images(n=8)
    out = RandomHorizontalFlip(seed=3)(x)
    flipped = torch.rand(8, generator=torch.Generator().manual_seed(3)) < 0.5
    assert 0 < int(flipped.sum()) < 8
    for i in range(8):
        assert torch.equal(out[i], x[i].flip(2) if flipped[i] else x[i])


def test_normalize_and_compose():
    x = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    out = Normalize([0.5, 0.5, 0.0], [0.5, 0.25, 1.0])(x)
    assert out[0, :, 0, 0].tolist() == [1.0, 2.0, 1.0]
    assert torch.equal(Compose([])(x), x)


def test_state_round_trip_continues_the_stream():
    x = _images()
    a = standard_augmentation(seed=1)
    a(x)
    saved = a.state_dict()
    expected = a(x)
    b = standard_augmentation(seed=1)
    b.load_state_dict(saved)
    assert torch.equal(b(x), expected)
    with pytest.raises(KeyError, match="Compose state must hold 2 transform states"):
        b.load_state_dict({"transforms": []})


def test_bad_arguments():
    with pytest.raises(ValueError, match="padding must be a non-negative int, got -1"):
        RandomCrop(-1)
    with pytest.raises(ValueError, match=r"p must be a probability in \[0, 1\], got 2"):
        RandomHorizontalFlip(2)
    with pytest.raises(ValueError, match=r"x must be a batch of images \(N, C, H, W\), got shape \(4, 3\)"):
        RandomCrop(1)(torch.zeros(4, 3))
