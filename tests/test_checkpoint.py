import os
import pickle
import stat
from dataclasses import replace

import pytest
import torch

import clreplay.checkpoint.atomic as checkpoint_module
import clreplay.checkpoint.compat
from clreplay.checkpoint import (
    CHECKPOINT_FILENAME,
    CheckpointError,
    load_checkpoint,
    payload_digest,
    read_checkpoint,
    resume_if_saved,
    save_checkpoint,
)
from clreplay.replay.registry import list_policies
from clreplay.run import RunConfig, build_benchmark, build_strategy, run_experiment
from clreplay.training import Naive, StrategyPlugin

SMALL = RunConfig(epochs=1, n_experiences=5, mem_size=50, hidden=[32])


@pytest.fixture(scope="module")
def bench():
    return build_benchmark(SMALL)


def trained(config, bench, n):
    strategy = build_strategy(config, bench)
    for experience in bench.train_stream[:n]:
        strategy.train(experience)
    return strategy


def same_tensors(a, b):
    """Equal nested state (dicts, lists, tuples, tensors compared bit for bit: NaN equals NaN)."""
    if isinstance(a, torch.Tensor):
        return (isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape
                and torch.equal(a.contiguous().view(-1).view(torch.uint8),
                                b.contiguous().view(-1).view(torch.uint8)))
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(same_tensors(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(same_tensors, a, b))
    if isinstance(a, float) and a != a:
        return isinstance(b, float) and b != b
    return a == b


# --------------------------------------------------------------- exact resume
@pytest.mark.parametrize(
    "policy, selection", [(name, "random") for name in list_policies()] + [("class", "herding")]
)
def test_resumed_run_is_bit_identical(tmp_path, bench, policy, selection):
    config = replace(SMALL, policy=policy, selection=selection)
    uninterrupted = trained(config, bench, 5)

    first = trained(config, bench, 2)
    save_checkpoint(first, tmp_path / "c.pt", config=config)
    resumed = build_strategy(config, bench)
    start = load_checkpoint(resumed, tmp_path / "c.pt", config=config)
    assert start == 2 == resumed.clock.train_exp_counter
    for experience in bench.train_stream[start:]:
        resumed.train(experience)

    a, b = uninterrupted.state_dict(), resumed.state_dict()
    assert same_tensors(a["model"], b["model"])
    assert same_tensors(a["optimizer"], b["optimizer"])  # momentum buffers included
    assert torch.equal(a["generator"], b["generator"])
    assert a["clock"] == b["clock"]
    replay_a, replay_b = a["plugins"][0], b["plugins"][0]
    assert same_tensors(replay_a, replay_b)  # memory: keys, order, samples, generators
    assert uninterrupted.evaluator.accuracy_matrix == resumed.evaluator.accuracy_matrix


def test_checkpoint_holds_the_whole_run(tmp_path, bench):
    config = replace(SMALL, output=str(tmp_path), checkpoint_dir=str(tmp_path), device="cpu")
    strategy = trained(config, bench, 2)
    path = save_checkpoint(strategy, tmp_path / "sub" / "c.pt", config=config)
    payload = read_checkpoint(path)
    assert payload["format"] == "clreplay-checkpoint" and payload["next_experience"] == 2
    # Where a run writes and computes is not part of what it is.
    assert {"output", "checkpoint_dir", "device"}.isdisjoint(payload["config"])
    assert payload["config"]["mem_size"] == 50 and payload["config"]["hidden"] == [32]
    state = payload["strategy"]
    assert state["clock"]["train_exp_counter"] == 2
    momentum = [s["momentum_buffer"] for s in state["optimizer"]["state"].values()]
    assert len(momentum) == 4 and all(m.abs().sum() > 0 for m in momentum)
    memory = state["plugins"][0]["storage_policy"]
    assert [key for key, _ in memory["groups"]] == [0, 1]
    assert [len(rows) for _, rows in memory["groups"]] == [25, 25]
    assert memory["store"]["size"] == 50 and memory["store"]["columns"]["x"].shape == (50, 64)
    assert memory["rng"]["generator"].dtype == torch.uint8
    assert state["plugins"][-1]["accuracy_matrix"] == strategy.evaluator.accuracy_matrix
    assert payload["structure"]["model"]["0.weight"] == "float32 (32, 64)"
    assert payload["structure"]["plugins"][0] == {
        "type": "ReplayPlugin", "mem_size": 50,
        "storage_policy": {"name": "experience", "type": "ExperienceBalancedStoragePolicy"},
    }


# ------------------------------------------------------------- atomic writes
def test_a_failed_save_leaves_the_previous_checkpoint(tmp_path, bench, monkeypatch):
    path = tmp_path / "c.pt"
    strategy = trained(SMALL, bench, 1)
    save_checkpoint(strategy, path, config=SMALL)
    before = path.read_bytes()
    strategy.train(bench.train_stream[1])

    def torn_save(obj, f):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint_module.torch, "save", torn_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(strategy, path, config=SMALL)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]  # no temporary left
    assert read_checkpoint(path)["next_experience"] == 1

    def no_rename(src, dst):
        raise KeyboardInterrupt  # killed between writing and renaming

    monkeypatch.setattr(checkpoint_module.os, "replace", no_rename)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(strategy, path, config=SMALL)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]


def test_save_flushes_the_file_and_the_folder(tmp_path, bench, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def recording_fsync(fd):
        synced.append("folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(checkpoint_module.os, "fsync", recording_fsync)
    save_checkpoint(trained(SMALL, bench, 0), tmp_path / "c.pt")
    assert synced == ["file", "folder"]


def test_temporaries_of_killed_saves_are_cleaned(tmp_path, bench):
    stale = tmp_path / ".c.pt.abc123.tmp"
    stale.write_bytes(b"half")
    other = tmp_path / "notes.tmp"
    other.write_bytes(b"keep")
    save_checkpoint(trained(SMALL, bench, 0), tmp_path / "c.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt", "notes.tmp"]


# -------------------------------------------------------------- safe loading
class Payload:
    """Unpickling this creates ``marker``: the code a malicious checkpoint would run."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_malicious_checkpoint_is_refused_and_never_runs(tmp_path, bench):
    marker = tmp_path / "payload_ran"
    strategy = trained(SMALL, bench, 0)
    weights = [p.detach().clone() for p in strategy.model.parameters()]

    zipped = tmp_path / "zipped.pt"  # torch's format, a pickled object inside
    torch.save({"format": "clreplay-checkpoint", "version": 1, "x": Payload(marker)}, zipped)
    raw = tmp_path / "raw.pt"  # a bare pickle
    raw.write_bytes(pickle.dumps(Payload(marker), protocol=2))
    for path in (zipped, raw):
        with pytest.raises(CheckpointError, match=f"{path}' holds non-tensor objects "
                           r"\(a pickled _?io.open\) and was refused"):  # _io on Python 3.12
            load_checkpoint(strategy, path)
    framed = tmp_path / "framed.pt"  # protocol 5: refused before its first object
    framed.write_bytes(pickle.dumps(Payload(marker), protocol=5))
    with pytest.raises(CheckpointError, match="holds non-tensor objects or data the safe loader"):
        load_checkpoint(strategy, framed)
    assert not marker.exists()
    assert all(torch.equal(a, b) for a, b in zip(weights, strategy.model.parameters()))

    # The payload is live: an unsafe loader would have run it.
    with open(raw, "rb") as f:
        pickle.load(f).close()
    assert marker.exists()


def test_files_that_are_not_checkpoints(tmp_path, bench):
    strategy = trained(SMALL, bench, 1)
    good = save_checkpoint(strategy, tmp_path / "good.pt")
    data = good.read_bytes()
    cases = {
        "empty.pt": (b"", "not a readable checkpoint file"),
        "garbage.pt": (b"garbage" * 20, "holds non-tensor objects or data the safe loader"),
        "truncated.pt": (data[: len(data) // 2], "not a readable checkpoint file"),
    }
    for name, (content, message) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(CheckpointError, match=message):
            load_checkpoint(strategy, tmp_path / name)
    torch.save({"model": strategy.model.state_dict()}, tmp_path / "weights.pt")
    with pytest.raises(CheckpointError, match="is not a clreplay checkpoint"):
        load_checkpoint(strategy, tmp_path / "weights.pt")
    payload = read_checkpoint(good)
    payload["version"] = 99
    torch.save(payload, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="format version 99; this clreplay reads version 3"):
        load_checkpoint(strategy, tmp_path / "future.pt")
    with pytest.raises(FileNotFoundError, match="missing.pt' does not exist"):
        load_checkpoint(strategy, tmp_path / "missing.pt")


# ------------------------------------------------------ another configuration
def test_other_configuration_is_refused_naming_what_differs(tmp_path, bench):
    path = save_checkpoint(trained(SMALL, bench, 1), tmp_path / "c.pt", config=SMALL)

    other = replace(SMALL, mem_size=60)
    strategy = build_strategy(other, bench)
    weights = [p.detach().clone() for p in strategy.model.parameters()]
    with pytest.raises(CheckpointError, match=r"mem_size: saved 50, now 60.*plugins\[0\]\.mem_size: saved 50, now 60"):
        load_checkpoint(strategy, path, config=other)
    assert all(torch.equal(a, b) for a, b in zip(weights, strategy.model.parameters()))
    assert strategy.clock.train_exp_counter == 0 and len(strategy.plugins[0].ext_mem) == 0

    wider = replace(SMALL, hidden=[48])
    with pytest.raises(CheckpointError, match=r"hidden\[0\]: saved 32, now 48.*model\['0.weight'\]: saved 'float32 \(32, 64\)', now 'float32 \(48, 64\)'"):
        load_checkpoint(build_strategy(wider, bench), path, config=wider)

    faster = replace(SMALL, lr=0.1)
    with pytest.raises(CheckpointError, match=r"different configuration and was refused: lr: saved 0.05, now 0.1 \("):
        load_checkpoint(build_strategy(faster, bench), path, config=faster)

    herding = replace(SMALL, policy="class", selection="herding")
    with pytest.raises(CheckpointError, match=r"plugins\[0\]\.storage_policy\.type: saved 'ExperienceBalancedStoragePolicy', now 'ClassBalancedStoragePolicy'"):
        load_checkpoint(build_strategy(herding, bench), path)  # the structure is checked without config

    elsewhere = replace(SMALL, output="out", checkpoint_dir="ck", device="cpu")
    assert load_checkpoint(build_strategy(SMALL, bench), path, config=elsewhere) == 1


def test_a_checkpoint_saved_before_a_config_field_existed_reads_its_old_value(tmp_path, bench,
                                                                            monkeypatch):
    # As if init had been added since checkpoints of this format were first saved.
    monkeypatch.setitem(clreplay.checkpoint.compat.ADDED_CONFIG_FIELDS, "init", "default")
    path = save_checkpoint(trained(SMALL, bench, 1), tmp_path / "c.pt", config=SMALL)
    payload = read_checkpoint(path)
    del payload["config"]["init"]  # as saved before RunConfig.init existed
    payload["sha256"] = payload_digest(payload)
    torch.save(payload, tmp_path / "old.pt")
    assert load_checkpoint(build_strategy(SMALL, bench), tmp_path / "old.pt", config=SMALL) == 1
    xavier = replace(SMALL, init="xavier")
    with pytest.raises(CheckpointError, match=r"init: saved 'default', now 'xavier'"):
        load_checkpoint(build_strategy(xavier, bench), tmp_path / "old.pt", config=xavier)


def test_checkpoint_without_configuration_cannot_match_one(tmp_path, bench):
    path = save_checkpoint(trained(SMALL, bench, 1), tmp_path / "c.pt")
    assert load_checkpoint(build_strategy(SMALL, bench), path) == 1
    with pytest.raises(CheckpointError, match="saved without a configuration"):
        load_checkpoint(build_strategy(SMALL, bench), path, config=SMALL)


class Versioned(StrategyPlugin):
    def __init__(self, version):
        self.version = version

    def state_dict(self):
        return {"version": self.version}

    def load_state_dict(self, state):
        if state["version"] != self.version:
            raise ValueError(f"version must be {self.version}, got {state['version']}")


def make_linear(plugin, seed):
    model = torch.nn.Linear(3, 2)
    with torch.no_grad():
        model.weight.fill_(seed)
    return Naive(model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), plugins=[plugin])


def test_a_state_that_does_not_fit_leaves_the_strategy_as_it_was(tmp_path):
    path = save_checkpoint(make_linear(Versioned(1), seed=1), tmp_path / "c.pt")
    strategy = make_linear(Versioned(2), seed=2)
    with pytest.raises(CheckpointError, match="does not fit this strategy.*version must be 2, got 1.*left as it was"):
        load_checkpoint(strategy, path)
    assert torch.equal(strategy.model.weight, torch.full((2, 3), 2.0))


def test_state_that_is_not_plain_data_is_refused_before_writing(tmp_path):
    class Leaky(StrategyPlugin):
        def state_dict(self):
            return {"callback": print}

    with pytest.raises(TypeError, match=r"strategy.state_dict\(\).plugins\[0\].callback must hold only tensors and plain data .* got a builtin_function_or_method"):
        save_checkpoint(make_linear(Leaky(), seed=0), tmp_path / "c.pt")
    assert list(tmp_path.iterdir()) == []


def test_saving_inside_an_experience_outside_an_iteration_end_is_refused(tmp_path, bench):
    class SaveDuringTraining(StrategyPlugin):
        def after_training_exp(self, strategy, **kwargs):
            save_checkpoint(strategy, tmp_path / "c.pt")

    model = torch.nn.Linear(64, 10)
    strategy = Naive(model, torch.optim.SGD(model.parameters(), lr=0.1),
                     plugins=[SaveDuringTraining()])
    with pytest.raises(ValueError, match=r"strategy must be between experiences or at the end of a "
                                         r"training iteration \(after_training_iteration\) to be checkpointed"):
        strategy.train(bench.train_stream[0])
    assert not (tmp_path / "c.pt").exists()


def test_bad_arguments(tmp_path):
    strategy = make_linear(StrategyPlugin(), seed=0)
    with pytest.raises(TypeError, match="strategy must be a BaseStrategy, got Linear"):
        save_checkpoint(strategy.model, tmp_path / "c.pt")
    with pytest.raises(TypeError, match="path must be a str or os.PathLike, got int"):
        save_checkpoint(strategy, 3)
    with pytest.raises(ValueError, match="path must name a file, got the folder"):
        save_checkpoint(strategy, tmp_path)
    with pytest.raises(TypeError, match="config must be a dataclass instance, a mapping or None, got list"):
        save_checkpoint(strategy, tmp_path / "c.pt", config=[1])
    with pytest.raises(TypeError, match="config must hold only JSON-like plain data"):
        save_checkpoint(strategy, tmp_path / "c.pt", config={"model": strategy.model})
    with pytest.raises(TypeError, match="strategy must be a BaseStrategy, got NoneType"):
        load_checkpoint(None, tmp_path / "c.pt")


# ----------------------------------------------------------------- the main job
def test_run_experiment_saves_and_resumes(tmp_path):
    config = replace(SMALL, n_experiences=2, checkpoint_dir=str(tmp_path / "ck"))
    assert resume_if_saved(build_strategy(config, build_benchmark(config)), config.checkpoint_dir) == 0
    first = run_experiment(config, log=lambda _: None)
    assert (tmp_path / "ck" / CHECKPOINT_FILENAME).exists()
    lines = []
    again = run_experiment(config, log=lines.append)
    assert f"resumed from {tmp_path / 'ck' / CHECKPOINT_FILENAME}: 2 of 2 experiences already trained" in lines
    assert again["accuracy_matrix"] == first["accuracy_matrix"]
    with pytest.raises(CheckpointError, match="epochs: saved 1, now 2"):
        run_experiment(replace(config, epochs=2), log=lambda _: None)
