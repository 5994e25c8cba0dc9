import pytest
import torch

from clreplay.models import feature_layer_name, make_image_mlp, make_mlp


def test_mlp_is_seeded_and_leaves_global_rng_alone():
    state = torch.random.get_rng_state()
    a, b = make_mlp(8, 3, [4], seed=1), make_mlp(8, 3, [4], seed=1)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(make_mlp(8, 3, [4], seed=2)[0].weight, a[0].weight)
    assert feature_layer_name(make_mlp(8, 3, [4, 4])) == "3"


def test_bad_sizes():
    with pytest.raises(ValueError, match="hidden must be a positive int, got 0"):
        make_mlp(8, 3, [0])


def test_image_mlp_flattens_and_matches_the_flat_mlp():
    # The image MLP on uint8 pixels equals make_mlp on the pixels divided by 255.
    x = torch.arange(2 * 1 * 3 * 3, dtype=torch.uint8).view(2, 1, 3, 3) * 14
    image_model = make_image_mlp((1, 3, 3), 4, [5], seed=3)
    flat_model = make_mlp(9, 4, [5], seed=3)
    expected = flat_model(x.view(2, 9).float() / 255)
    assert torch.allclose(image_model(x), expected, atol=1e-6)
    assert feature_layer_name(image_model) == str(len(image_model) - 2)
    assert isinstance(image_model[len(image_model) - 2], torch.nn.ReLU)
