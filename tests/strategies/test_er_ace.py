"""ER-ACE: the masked logits and the asymmetric loss by hand."""

import math
from types import SimpleNamespace

import pytest
import torch
from conftest import make_dataset
from torch import nn

from clreplay.benchmarks import Experience
from clreplay.data import DatasetBatchSource, MiniBatch
from clreplay.strategies import ERACEPlugin, mask_logits
from clreplay.training import Naive


def test_masked_logits_take_no_part_in_the_softmax():
    logits = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    masked = mask_logits(logits, torch.tensor([True, False, True]))
    assert masked[:, [0, 2]].tolist() == [[1.0, 3.0], [4.0, 6.0]]
    assert (masked[:, 1] == torch.finfo(torch.float32).min).all()
    loss = nn.functional.cross_entropy(masked, torch.tensor([2, 0]))
    # Row 0: -log(e^3 / (e^1 + e^3)) = log(1 + e^-2); row 1: log(1 + e^2).
    expected = (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(2))) / 2
    assert abs(loss.item() - expected) < 1e-6
    probabilities = torch.softmax(masked, dim=1)
    assert (probabilities[:, 1] == 0).all()


def _batch(labels, n_memory):
    n = len(labels)
    zeros = torch.zeros(n, dtype=torch.long)
    mb = MiniBatch(torch.zeros(n - n_memory, 1), torch.tensor(labels[: n - n_memory]), zeros[: n - n_memory])
    if n_memory:
        mb = mb.append(torch.zeros(n_memory, 1), torch.tensor(labels[n - n_memory :]), zeros[:n_memory],
                       name="replay", rows=torch.arange(n_memory))
    return mb


def _new_experience(ace):
    ace.before_training_exp(SimpleNamespace(batch_source=DatasetBatchSource(make_dataset([0]), 1),
                                            train_mb_size=1, resuming_experience=False))


@pytest.mark.parametrize("loss_fn", [nn.CrossEntropyLoss(), lambda out, y: nn.functional.cross_entropy(out, y)],
                         ids=["plain", "any"])
def test_stream_ce_over_the_current_experience_memory_ce_over_every_class(loss_fn):
    ace = ERACEPlugin(mem_size=10)
    strategy = SimpleNamespace(loss_fn=loss_fn)
    # Experience 0 brings classes 0 and 1.
    _new_experience(ace)
    strategy.mb, strategy.mb_output = _batch([0, 1], 0), torch.zeros(2, 4)
    assert abs(ace.criterion(strategy).item() - math.log(2)) < 1e-6  # 2 classes unmasked
    # Experience 1: class 2 arrives; one stream row, one replayed row of class 0.
    _new_experience(ace)
    out = torch.tensor([[0.0, 0.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    strategy.mb, strategy.mb_output = _batch([2, 0], 1), out
    loss = ace.criterion(strategy)
    stream = 0.0  # only class 2 is present so far: its probability is 1
    memory = -math.log(math.e / (math.e + 1 + 1 + 1))  # the ordinary CE, over the 4 outputs
    assert abs(loss.item() - (stream + memory)) < 1e-6
    assert ace.present_classes == [2]


def test_present_classes_reset_with_each_experience():
    model = nn.Linear(2, 4)
    ace = ERACEPlugin(mem_size=4, batch_size_mem=2)
    strategy = Naive(model, torch.optim.SGD(model.parameters(), lr=0.1), train_mb_size=2,
                     plugins=[ace], seed=0)
    strategy.train(Experience(make_dataset([0, 1] * 3), 0, [0, 1]))
    assert ace.present_classes == [0, 1]
    strategy.train(Experience(make_dataset([2, 3] * 3, start=6), 1, [2, 3]))
    assert ace.present_classes == [2, 3]
