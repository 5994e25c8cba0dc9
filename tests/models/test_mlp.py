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


def test_xavier_init_is_glorot_uniform_with_zero_biases():
    model = make_mlp(300, 10, [100], seed=0, init="xavier")
    for layer, (fan_in, fan_out) in ((model[0], (300, 100)), (model[2], (100, 10))):
        bound = (6 / (fan_in + fan_out)) ** 0.5
        w = layer.weight
        assert torch.equal(layer.bias, torch.zeros(fan_out))
        assert w.abs().max() <= bound and w.abs().max() > 0.95 * bound  # uniform over +-bound
        assert abs(w.var().item() - bound**2 / 3) < 0.05 * bound**2 / 3
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(),
                                                  make_mlp(300, 10, [100], seed=0, init="xavier").parameters()))
    # A re-initialisation (GDumb's) draws from the same rule.
    from clreplay.strategies.gdumb import reinitialise
    reinitialise(model, 1)
    assert torch.equal(model[0].bias, torch.zeros(100)) and model[0].weight.abs().max() <= (6 / 400) ** 0.5
    # The default init is torch's: the biases are drawn too.
    assert make_mlp(300, 10, [100], seed=0)[0].bias.abs().max() > 0
    with pytest.raises(ValueError, match="init must be one of 'default', 'xavier', got 'he'"):
        make_mlp(8, 3, [4], init="he")


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
