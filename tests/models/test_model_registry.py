import pytest
import torch

from clreplay.models import feature_layer_name, list_models, make_cnn, make_model


def test_every_model_runs_on_its_inputs_and_names_its_embedding():
    images = torch.zeros(3, 1, 28, 28, dtype=torch.uint8)
    for name in list_models():
        model = make_model(name, (1, 28, 28), 10, seed=0)
        layer = dict(model.named_modules())[feature_layer_name(model)]
        captured = []
        layer.register_forward_hook(lambda m, i, o, out=captured: out.append(o))
        assert model(images).shape == (3, 10)
        assert captured[0].flatten(1).shape[0] == 3
    flat = make_model("mlp", (64,), 10, hidden=[32])
    assert flat(torch.zeros(2, 64)).shape == (2, 10) and feature_layer_name(flat) == "1"


def test_cnn_shapes():
    model = make_cnn((3, 32, 32), 10, seed=0)
    assert model.embedding[1].in_features == 64 * 8 * 8
    assert make_model("cnn", (1, 28, 28), 10, width=8).embedding[1].in_features == 16 * 7 * 7


def test_bad_names_and_shapes():
    with pytest.raises(ValueError, match="model must be one of 'cnn', 'mlp', 'resnet18', got 'resnet'"):
        make_model("resnet", (3, 32, 32), 10)
    with pytest.raises(ValueError, match=r"model 'resnet18' needs image inputs .* got input_shape \(784,\)"):
        make_model("resnet18", (784,), 10)
    with pytest.raises(ValueError, match="width applies to models"):
        make_model("mlp", (784,), 10, width=3)
    with pytest.raises(ValueError, match="init applies to model 'mlp', got init='xavier' with model 'cnn'"):
        make_model("cnn", (1, 28, 28), 10, init="xavier")
    image_mlp = make_model("mlp", (1, 8, 8), 10, hidden=[16], init="xavier")
    assert torch.equal(image_mlp[2].bias, torch.zeros(16))  # after the normalisation and the flatten
    with pytest.raises(ValueError, match=r"input_shape must be at least 4x4 pixels, got \(1, 3, 3\)"):
        make_model("cnn", (1, 3, 3), 10)
    with pytest.raises(TypeError, match="model must name its embedding layer"):
        feature_layer_name(torch.nn.Linear(2, 2))
