"""No training step waits for the device: every method, policy and batch source.

On a GPU, CUDA's own sync detector runs every step of every method with the data and
the memory on the device (``torch.cuda.set_sync_debug_mode("error")`` from the start
of a step to its end; what happens between experiences may read the device). Without
a GPU the same steps run on the CPU under a stand-in: a dispatch mode that marks every
tensor computed from the model's parameters or from the data (what would live on the
GPU) and fails on the operations that would make the host wait for such a tensor
(``.item()``/``bool()``/``int()``, ``nonzero``, boolean indexing, ``unique``,
``masked_select``). Tensors the host builds for its own decisions (the reservoir's
draws, positions in the memory) are not marked: those decisions belong on the host.
"""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.weak import WeakIdKeyDictionary

from clreplay.benchmarks import Experience
from clreplay.data import ClassificationDataset
from clreplay.models import make_mlp
from clreplay.run_config import RunConfig
from clreplay.strategies import METHODS, get_method
from clreplay.training import Naive, StrategyPlugin

#: Operations that make the host wait for their inputs' values on a GPU.
_WAITS = {"aten::_local_scalar_dense", "aten::nonzero", "aten::masked_select", "aten::_unique2",
          "aten::unique_dim", "aten::unique_consecutive", "aten::repeat_interleave"}


class DeviceTaint(TorchDispatchMode):
    """Marks tensors computed from marked ones; fails on a wait for a marked tensor while armed."""

    def __init__(self):
        super().__init__()
        self.marked = WeakIdKeyDictionary()
        self.armed = False

    def mark(self, *tensors):
        for tensor in tensors:
            self.marked[tensor] = True

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        inputs = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        tainted = any(t in self.marked for t in inputs)
        name = func._schema.name
        if self.armed and tainted:
            boolean_index = name in ("aten::index", "aten::index_put", "aten::index_put_") and any(
                isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in tree_flatten(args[1])[0])
            if name in _WAITS or boolean_index:
                raise AssertionError(f"{name} waits for a device tensor inside a training step")
        out = func(*args, **kwargs)
        if tainted:
            for tensor in tree_flatten(out)[0]:
                if isinstance(tensor, torch.Tensor):
                    self.marked[tensor] = True
        return out


class Arm(StrategyPlugin):
    """First and last plugin: the check is on from the start of a step to its end."""

    def __init__(self, guard, on):
        self.guard, self.on = guard, on

    def before_training_iteration(self, strategy, **kwargs):
        if self.on:
            self.guard(True)

    def after_training_iteration(self, strategy, **kwargs):
        if not self.on:
            self.guard(False)


def stream(device):
    experiences = []
    for e in range(3):
        g = torch.Generator().manual_seed(e)
        y = torch.tensor([2 * e, 2 * e + 1] * 16)
        x = torch.randn(32, 8, generator=g) + y.unsqueeze(1).float()
        data = ClassificationDataset(x, y, task_labels=e).to(device)
        experiences.append(Experience(data, e, [2 * e, 2 * e + 1]))
    return experiences


#: OnPro's adaptive prototypical feedback picks, every step, pairs of classes and samples of
#: each class from the memory on the host (as the authors' code does): its steps wait.
HOST_DRIVEN = {"onpro": "OnPro's APF draws class pairs and their memory samples on the host every step"}
CASES = [pytest.param(case, marks=pytest.mark.xfail(strict=True, reason=HOST_DRIVEN[case]))
         if case in HOST_DRIVEN else case for case in [*METHODS, "online-er"]]


def run_case(case, device, guard, mark=lambda *tensors: None):
    config = RunConfig(mem_size=24, batch_size=8, epochs=2, hidden=[8], seed=0)
    if case == "online-er":
        config = RunConfig(**{**config.__dict__, "online": True, "batch_size_mem": 4}).validate()
    else:
        options = {"sample_size": 4} if case == "agem" else {"passes": 2} if case == "gdumb" else {}
        mem = 4 if "batch_size_mem" in get_method(case).replay_options else None
        config = RunConfig(**{**config.__dict__, "method": case, "method_options": options,
                              "batch_size_mem": mem}).validate()
    model = make_mlp(8, 6, [8], seed=0).to(device)
    mark(*model.parameters())
    plugins = get_method(config.method).build(config, model)
    strategy = Naive(model, torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9), train_mb_size=8,
                     train_epochs=2, device=device, plugins=[Arm(guard, True), *plugins, Arm(guard, False)],
                     seed=0)
    experiences = stream(device)
    for experience in experiences:
        data = experience.dataset
        mark(data.storage, data.targets_storage, data.task_labels)
        strategy.train(experience)
    return strategy


@pytest.mark.parametrize("case", CASES)
def test_no_step_waits_for_a_device_tensor_on_the_cpu_stand_in(case):
    taint = DeviceTaint()

    def guard(on):
        taint.armed = on

    with taint:
        strategy = run_case(case, "cpu", guard, mark=taint.mark)
    assert strategy.clock.train_iterations > 10


def test_the_stand_in_catches_a_wait():
    taint = DeviceTaint()
    x = torch.ones(3)
    with taint:
        taint.mark(x)
        taint.armed = True
        with pytest.raises(AssertionError, match="_local_scalar_dense waits"):
            bool((x * 2 > 1).all())
        with pytest.raises(AssertionError, match="aten::index waits"):
            x[x > 0]
        torch.arange(3).tolist()  # the host's own tensors may be read


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: CPU runs use the stand-in above")
@pytest.mark.parametrize("case", CASES)
def test_no_step_synchronises_with_the_gpu(case):
    def guard(on):
        torch.cuda.set_sync_debug_mode("error" if on else "default")

    try:
        strategy = run_case(case, "cuda", guard)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert strategy.clock.train_iterations > 10
