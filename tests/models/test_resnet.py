import torch

from clreplay.models import feature_layer_name, make_resnet18


def _resnet18_parameter_count(nf, n_classes, in_channels=3):
    """Counted by hand from the architecture (conv weights, batch-norm weight and bias,
    1x1 shortcuts where the shape changes, the classifier)."""
    total = in_channels * nf * 9 + 2 * nf  # conv1, bn1
    planes = nf
    for i in range(4):
        width = nf * 2**i
        for block in range(2):
            inp = planes if block == 0 else width
            total += inp * width * 9 + width * width * 9 + 4 * width
            if block == 0 and (i > 0):
                total += inp * width + 2 * width  # 1x1 shortcut + its batch norm
        planes = width
    return total + planes * n_classes + n_classes


def test_reduced_resnet18_structure():
    model = make_resnet18((3, 32, 32), 10, seed=0)
    assert sum(p.numel() for p in model.parameters()) == _resnet18_parameter_count(20, 10) == 1_094_750
    full = make_resnet18((3, 32, 32), 100, nf=64, seed=0)
    assert sum(p.numel() for p in full.parameters()) == _resnet18_parameter_count(64, 100)
    assert [m.conv1.stride for m in (model.layer1[0], model.layer2[0], model.layer3[0], model.layer4[0])] \
        == [(1, 1), (2, 2), (2, 2), (2, 2)]
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert feature_layer_name(model) == "pool"


def test_forward_backward_shapes_on_uint8_batches():
    model = make_resnet18((3, 32, 32), 10, seed=0)
    x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    embedding = {}
    model.pool.register_forward_hook(lambda m, i, o: embedding.setdefault("pool", o))
    out = model(x)
    assert out.shape == (4, 10) and embedding["pool"].shape == (4, 160)
    out.sum().backward()
    assert all(p.grad is not None and p.grad.shape == p.shape for p in model.parameters())
    # One channel, 28x28 (Fashion-MNIST): the strides give 28 -> 14 -> 7 -> 4.
    gray = make_resnet18((1, 28, 28), 10, seed=0)
    assert gray(torch.zeros(2, 1, 28, 28, dtype=torch.uint8)).shape == (2, 10)


def test_seeded_and_global_rng_untouched():
    state = torch.random.get_rng_state()
    a, b = make_resnet18((3, 8, 8), 2, seed=5), make_resnet18((3, 8, 8), 2, seed=5)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(make_resnet18((3, 8, 8), 2, seed=6).conv1.weight, a.conv1.weight)
