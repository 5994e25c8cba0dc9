"""Random corrupt inputs: a clear ValueError/TypeError/CheckpointError before any training,
or a correct run — never a traceback from inside torch, never a silent wrong number."""

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clreplay.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from clreplay.run import RunConfig, build_benchmark, build_strategy, run_experiment

# Few examples, tiny data, and a fixed seed for hypothesis itself: fast and repeatable.
SETTINGS = settings(max_examples=25, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def clean_arrays():
    rng = np.random.default_rng(0)
    y_train, y_test = np.arange(16) % 4, np.arange(8) % 4
    centres = rng.normal(size=(4, 3)).astype(np.float32) * 3
    x_train = centres[y_train] + rng.normal(size=(16, 3)).astype(np.float32)
    x_test = centres[y_test] + rng.normal(size=(8, 3)).astype(np.float32)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def run(path):
    """Run on ``path``; return (results or the error, the log lines before it)."""
    lines = []
    config = RunConfig(benchmark="split_npz", data=str(path), n_experiences=2, epochs=1, hidden=[4],
                       mem_size=4, batch_size=4)
    try:
        return run_experiment(config, log=lines.append), lines
    except (ValueError, TypeError) as err:  # CheckpointError is a ValueError
        return err, lines


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    path = tmp_path_factory.mktemp("ref") / "clean.npz"
    np.savez(path, **clean_arrays())
    results, _ = run(path)
    return results["accuracy_matrix"]


corruption = st.one_of(
    st.tuples(st.just("value"), st.sampled_from(["x_train", "x_test"]), st.integers(0, 200),
              st.sampled_from([np.nan, np.inf, -np.inf])),
    st.tuples(st.just("labels"), st.sampled_from(["y_train", "y_test"]),
              st.sampled_from(["float", "negative", "shift", "scale", "gap"])),
    st.tuples(st.just("truncate"), st.floats(0.0, 0.99)),
    st.tuples(st.just("bytes"), st.lists(st.integers(0, 10 ** 6), min_size=1, max_size=4)),
)


def corrupt(path, how):
    arrays = clean_arrays()
    kind = how[0]
    if kind == "value":
        _, key, position, value = how
        flat = arrays[key].reshape(-1)
        flat[position % flat.size] = value
    elif kind == "labels":
        _, key, change = how
        y = arrays[key]
        arrays[key] = {"float": y * 0.7, "negative": y - 1, "shift": y + 1, "scale": y * 5,
                       "gap": np.where(y == 3, 9, y)}[change]
        if change in ("shift", "scale", "gap"):  # the same relabelling on both splits
            other = "y_test" if key == "y_train" else "y_train"
            arrays[other] = {"shift": arrays[other] + 1, "scale": arrays[other] * 5,
                             "gap": np.where(arrays[other] == 3, 9, arrays[other])}[change]
    np.savez(path, **arrays)
    data = bytearray(path.read_bytes())
    if kind == "truncate":
        path.write_bytes(bytes(data[: int(len(data) * how[1])]))
    elif kind == "bytes":
        for position in how[1]:
            data[position % len(data)] ^= 0xFF
        path.write_bytes(bytes(data))


@SETTINGS
@given(how=corruption)
def test_corrupt_data_is_refused_before_training_or_runs_correctly(tmp_path, reference, how):
    path = tmp_path / "data.npz"
    corrupt(path, how)
    outcome, lines = run(path)
    if isinstance(outcome, Exception):
        assert not any(line.startswith("experience ") for line in lines), "error after training began"
        assert str(path) in str(outcome), repr(outcome)  # it names the file
        return
    # A run that goes through must give the numbers of the clean data: relabelled classes are
    # mapped back to 0..3 in the same order, bytes that did not change the arrays change nothing.
    assert outcome["accuracy_matrix"] == reference


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    config = RunConfig(epochs=1, n_experiences=5, mem_size=20, hidden=[8])
    bench = build_benchmark(config)
    strategy = build_strategy(config, bench, append_logs=False)
    strategy.train(bench.train_stream[0])
    path = save_checkpoint(strategy, tmp_path_factory.mktemp("ck") / "c.pt", config=config)
    return config, bench, path.read_bytes(), strategy.state_dict()


def same(a, b):
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(map(same, a, b))
    return a == b


@SETTINGS
@given(bits=st.lists(st.integers(0, 10 ** 7), min_size=1, max_size=5))
def test_bit_flips_in_checkpoints_are_refused_or_harmless(tmp_path, saved, bits):
    config, bench, content, state = saved
    data = bytearray(content)
    for bit in bits:
        position = bit % (8 * len(data))
        data[position // 8] ^= 1 << (position % 8)
    path = tmp_path / "c.pt"
    path.write_bytes(bytes(data))
    strategy = build_strategy(config, bench, append_logs=False)
    try:
        load_checkpoint(strategy, path, config=config)
    except CheckpointError:
        return
    assert same(strategy.state_dict(), state)  # flips in bytes that carry no content
