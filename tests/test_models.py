import pytest
import torch

from clreplay.models import feature_layer_name, make_mlp


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
