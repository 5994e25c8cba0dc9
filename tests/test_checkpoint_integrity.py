"""Checkpoints prove their integrity: a digest of the content, states no run can reach
refused, and saves to one path from several writers that never race."""

import threading
from dataclasses import replace

import pytest
import torch

import clreplay.checkpoint.atomic as checkpoint_module
from clreplay.checkpoint import (
    CheckpointError,
    load_checkpoint,
    payload_digest,
    read_checkpoint,
    save_checkpoint,
)
from clreplay.run import RunConfig, build_benchmark, build_strategy

SMALL = RunConfig(epochs=1, n_experiences=5, mem_size=50, hidden=[16])


@pytest.fixture(scope="module")
def bench():
    return build_benchmark(SMALL)


def trained(config, bench, n):
    strategy = build_strategy(config, bench, append_logs=False)
    for experience in bench.train_stream[:n]:
        strategy.train(experience)
    return strategy


def same_state(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(),
                                                  b.model.state_dict().values()))


def flip_bits_in_tensor(path, tensor, positions):
    """Flip bits of ``tensor``'s bytes where they lie in the file (found by content)."""
    data = bytearray(path.read_bytes())
    raw = tensor.contiguous().view(torch.uint8).numpy().tobytes()
    start = data.find(raw)
    assert start >= 0 and data.find(raw, start + 1) < 0
    for bit in positions:
        data[start + bit // 8] ^= 1 << (bit % 8)
    path.write_bytes(bytes(data))


def test_bit_flips_in_the_weights_are_refused(tmp_path, bench):
    strategy = trained(SMALL, bench, 1)
    path = save_checkpoint(strategy, tmp_path / "c.pt", config=SMALL)
    flip_bits_in_tensor(path, strategy.model.state_dict()["0.weight"], [3, 77, 1001, 4242, 8191])
    fresh = build_strategy(SMALL, bench, append_logs=False)
    before = fresh.state_dict()
    with pytest.raises(CheckpointError, match=(
            rf"^checkpoint '{path}' is corrupt: its content does not match the SHA-256 digest stored "
            r"in it \(stored '[0-9a-f]{16}'\.\.\., computed '[0-9a-f]{16}'\.\.\.\), so it was refused")):
        load_checkpoint(fresh, path, config=SMALL)
    assert all(torch.equal(a, b) for a, b in zip(before["model"].values(), fresh.model.state_dict().values()))


def test_changed_plain_values_are_refused(tmp_path, bench):
    path = save_checkpoint(trained(SMALL, bench, 1), tmp_path / "c.pt", config=SMALL)
    payload = read_checkpoint(path)
    payload["strategy"]["plugins"][-1]["accuracy_matrix"][0][0] = 1.0  # keeps the stored digest
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="does not match the SHA-256 digest"):
        read_checkpoint(path)


def test_digest_is_stable_and_type_aware():
    a = {"x": torch.arange(3), "n": 1, "f": 1.0, "l": [1], "t": (1,)}
    assert payload_digest(a) == payload_digest(dict(a))
    assert payload_digest(a) != payload_digest({**a, "n": 1.0})
    assert payload_digest(a) != payload_digest({**a, "l": (1,)})
    assert payload_digest(a) != payload_digest({**a, "x": torch.arange(3).double()})
    assert payload_digest({"sha256": "anything", **a}) == payload_digest(a)


@pytest.mark.parametrize("version", [1, 2])
def test_files_of_earlier_format_versions_are_refused_naming_the_version(tmp_path, bench, version):
    path = save_checkpoint(trained(SMALL, bench, 0), tmp_path / "c.pt")
    payload = read_checkpoint(path)
    payload["version"] = version
    if version == 1:
        del payload["sha256"]
    else:
        payload["sha256"] = payload_digest(payload)
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=rf"has format version {version} \(saved before the method "
                       r"contract.*cannot be continued exactly\); this clreplay reads version 3: start "
                       "afresh"):
        read_checkpoint(path)


def resaved(path, payload):
    """Write ``payload`` with a matching digest: only the state checks can refuse it."""
    payload["sha256"] = payload_digest(payload)
    torch.save(payload, path)
    return path


@pytest.mark.parametrize("counter, n_experiences, message", [
    (-1, 5, r"next_experience must be a non-negative int, got -1"),
    (6, 5, r"6 experiences trained, but the stream has 5"),
])
def test_impossible_counters_are_refused(tmp_path, bench, counter, n_experiences, message):
    strategy = trained(SMALL, bench, 2)
    payload = read_checkpoint(save_checkpoint(strategy, tmp_path / "c.pt", config=SMALL))
    payload["next_experience"] = payload["strategy"]["clock"]["train_exp_counter"] = counter
    path = resaved(tmp_path / "c.pt", payload)
    fresh = build_strategy(SMALL, bench, append_logs=False)
    with pytest.raises(CheckpointError, match=rf"holds a state no run can reach \({message}\) and was refused"):
        load_checkpoint(fresh, path, config=SMALL, n_experiences=n_experiences)
    assert fresh.clock.train_exp_counter == 0


def test_counter_and_clock_must_agree(tmp_path, bench):
    payload = read_checkpoint(save_checkpoint(trained(SMALL, bench, 2), tmp_path / "c.pt"))
    payload["next_experience"] = 1
    path = resaved(tmp_path / "c.pt", payload)
    with pytest.raises(CheckpointError, match=r"clock.train_exp_counter 2 differs from next_experience 1"):
        load_checkpoint(build_strategy(SMALL, bench, append_logs=False), path)


def test_a_memory_larger_than_mem_size_is_refused(tmp_path, bench):
    small = replace(SMALL, mem_size=20)
    payload = read_checkpoint(save_checkpoint(trained(SMALL, bench, 2), tmp_path / "c.pt", config=small))
    replay = payload["strategy"]["plugins"][0]
    replay["mem_size"] = replay["storage_policy"]["mem_size"] = 20  # but 50 samples stored
    payload["structure"]["plugins"][0]["mem_size"] = 20
    path = resaved(tmp_path / "c.pt", payload)
    fresh = build_strategy(small, bench, append_logs=False)
    untouched = build_strategy(small, bench, append_logs=False)
    # The storage policy itself refuses the state while it loads (memory-store issue).
    with pytest.raises(CheckpointError, match=(
            r"does not fit this strategy \(ValueError: the saved memory holds 50 samples, more than "
            r"mem_size \(20\)\); the strategy was left as it was")):
        load_checkpoint(fresh, path, config=small)
    assert len(fresh.plugins[0].ext_mem) == 0 and fresh.clock.train_exp_counter == 0
    assert same_state(fresh, untouched)


def test_a_save_in_flight_is_never_deleted_by_another(tmp_path, bench, monkeypatch):
    """Writer A is inside torch.save when writer B saves to the same path: before the
    fix, B's cleanup of stale temporaries deleted A's file and A's rename failed."""
    strategy = trained(SMALL, bench, 1)
    path = tmp_path / "c.pt"
    a_writing, a_go = threading.Event(), threading.Event()
    real_save = torch.save
    errors = []

    def slow_save(obj, f):
        if threading.current_thread().name == "A":
            f.write(b"partial")
            a_writing.set()
            a_go.wait()
        real_save(obj, f)

    monkeypatch.setattr(checkpoint_module.torch, "save", slow_save)

    def save():
        try:
            save_checkpoint(strategy, path)
        except Exception as err:  # reported below
            errors.append(err)

    a = threading.Thread(target=save, name="A")
    b = threading.Thread(target=save, name="B")
    a.start()
    a_writing.wait()
    b.start()
    b.join(timeout=0.3)  # B now waits for A's turn (before the fix it had finished)
    a_go.set()
    a.join()
    b.join()
    assert errors == []
    assert read_checkpoint(path)["next_experience"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]  # no temporary, no lock file
