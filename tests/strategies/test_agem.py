"""A-GEM: the projection on 2-D gradients, and the plugin's update."""

import pytest
import torch
from conftest import make_dataset
from torch import nn

from clreplay.benchmarks import Experience
from clreplay.replay.mixing.draws import MemorySampler
from clreplay.strategies import AGEMPlugin, project_gradient
from clreplay.training import Naive


def test_conflicting_gradient_is_projected():
    g, g_ref = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0])
    # g.g_ref = -1, g_ref.g_ref = 2: g - (-1/2) g_ref = (1, 0) + (-0.5, 0.5)
    projected = project_gradient(g, g_ref)
    assert projected.tolist() == [0.5, 0.5]
    assert torch.dot(projected, g_ref).item() == 0.0


def test_no_projection_when_gradients_agree_or_are_orthogonal():
    for g, g_ref in [([1.0, 1.0], [1.0, 0.0]), ([0.0, 2.0], [3.0, 0.0]), ([1.0, 2.0], [0.0, 0.0])]:
        g = torch.tensor(g)
        assert torch.equal(project_gradient(g, torch.tensor(g_ref)), g)


def test_plugin_replaces_the_gradient_by_its_projection():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = nn.Linear(2, 2)
    agem = AGEMPlugin(mem_size=4, sample_size=4, seed=0)
    strategy = Naive(model, torch.optim.SGD(model.parameters(), lr=0.0), train_mb_size=2,
                     plugins=[agem], seed=0)
    strategy.train(Experience(make_dataset([0, 0, 0, 0]), 0, [0]))  # memory: four samples of class 0
    assert len(agem.storage_policy) == 4
    # A step on class 1 only: its gradient pulls against class 0's.
    x, y = torch.tensor([[1.0, 1.0], [2.0, 1.0]]), torch.tensor([1, 1])
    loss = nn.functional.cross_entropy(model(x), y)
    g = torch.cat([t.reshape(-1) for t in torch.autograd.grad(loss, list(model.parameters()))])
    state = agem.generator.get_state()
    ref_batch = MemorySampler(agem.storage_policy).draw(4, agem.generator)
    agem.generator.set_state(state)
    ref_loss = nn.functional.cross_entropy(model(ref_batch.x), ref_batch.y)
    g_ref = torch.cat([t.reshape(-1) for t in torch.autograd.grad(ref_loss, list(model.parameters()))])
    assert torch.dot(g, g_ref) < 0
    model.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    agem.after_backward(strategy)
    got = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
    assert torch.allclose(got, project_gradient(g, g_ref), atol=1e-7)
    assert abs(torch.dot(got, g_ref).item()) < 1e-6


def test_sample_size_is_checked():
    with pytest.raises(ValueError, match="sample_size must be a positive int, got 0"):
        AGEMPlugin(10, 0)
