import pytest
import torch

from clreplay.models import InputNormalization


def test_uint8_batch_is_scaled_and_normalised_per_channel():
    norm = InputNormalization(mean=[0.5, 0.0], std=[0.5, 2.0])
    x = torch.tensor([[[[0, 51]], [[255, 102]]]], dtype=torch.uint8)  # (1, 2, 1, 2)
    out = norm(x)
    assert out.dtype == torch.float32
    # channel 0: (v/255 - 0.5) / 0.5; channel 1: (v/255) / 2
    expected = torch.tensor([[[[-1.0, -0.6]], [[0.5, 0.2]]]])
    assert torch.allclose(out, expected, atol=1e-6)


def test_defaults_only_scale_and_stats_are_not_saved():
    norm = InputNormalization(channels=3)
    assert torch.equal(norm(torch.full((1, 3, 1, 1), 255, dtype=torch.uint8)), torch.ones(1, 3, 1, 1))
    assert norm.state_dict() == {}


def test_bad_arguments_and_inputs():
    with pytest.raises(ValueError, match=r"mean must hold 3 numbers \(one per channel\), got 2"):
        InputNormalization([0.1, 0.2], channels=3)
    with pytest.raises(ValueError, match="std must be a positive number, got 0.0"):
        InputNormalization([0.1], [0.0])
    with pytest.raises(ValueError, match=r"x must be a batch of images \(N, 3, H, W\), got shape \(2, 12\)"):
        InputNormalization(channels=3)(torch.zeros(2, 12))
