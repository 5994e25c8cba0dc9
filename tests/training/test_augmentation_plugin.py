import torch

from clreplay import ReplayPlugin
from clreplay.benchmarks import Experience
from clreplay.data import ClassificationDataset
from clreplay.training import AugmentationPlugin, Naive, StrategyPlugin


class Record(StrategyPlugin):
    def __init__(self):
        self.train, self.eval = [], []

    def after_forward(self, strategy, **kwargs):
        self.train.append(strategy.mb_x.clone())

    def after_eval_iteration(self, strategy, **kwargs):
        self.eval.append(strategy.mb_x.clone())


def test_every_training_batch_is_transformed_and_evaluation_is_not():
    x = torch.arange(12, dtype=torch.float32).view(12, 1)
    data = [ClassificationDataset(x[:6], torch.tensor([0] * 6)),
            ClassificationDataset(x[6:], torch.tensor([1] * 6))]
    record = Record()
    model = torch.nn.Linear(1, 2)
    strategy = Naive(model, torch.optim.SGD(model.parameters(), lr=0.0), train_mb_size=4,
                     plugins=[ReplayPlugin(4), AugmentationPlugin(lambda b: b + 1000), record], seed=0)
    for i, d in enumerate(data):
        strategy.train(Experience(d, i, [i]))
    seen = torch.cat(record.train).flatten()
    assert seen.min() >= 1000  # current and replayed samples alike
    assert sorted(set((seen - 1000).tolist())) == list(range(12))
    strategy.eval([Experience(data[0], 0, [0])])
    assert torch.equal(torch.cat(record.eval), x[:6])


def test_state_is_the_transforms():
    class Counter:
        def __init__(self):
            self.n = 0

        def __call__(self, b):
            self.n += 1
            return b

        def state_dict(self):
            return {"n": self.n}

        def load_state_dict(self, state):
            self.n = state["n"]

    plugin = AugmentationPlugin(Counter())
    plugin.transform.n = 5
    other = AugmentationPlugin(Counter())
    other.load_state_dict(plugin.state_dict())
    assert other.transform.n == 5


def test_online_replay_stores_the_samples_not_their_augmented_copies():
    from clreplay import OnlineReplayPlugin

    x = torch.arange(12, dtype=torch.float32).view(12, 1)
    online = OnlineReplayPlugin(12, batch_size_mem=2)
    model = torch.nn.Linear(1, 2)
    strategy = Naive(model, torch.optim.SGD(model.parameters(), lr=0.0), train_mb_size=4,
                     plugins=[online, AugmentationPlugin(lambda b: b + 1000)], seed=0)
    strategy.train(Experience(ClassificationDataset(x, torch.tensor([0] * 12)), 0, [0]))
    # The first batch was trained on while the memory was empty: its record is the
    # strategy's own, so the augmentation did not reach the stored samples.
    memory = online.ext_mem[0]
    assert sorted(memory[i][0].item() for i in range(len(memory))) == list(range(12))
