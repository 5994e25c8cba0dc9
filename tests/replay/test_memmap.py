"""Memory-mapped memories: files that never outlive the run, rows read through the file."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import by_hand, make_dataset

from clreplay import (
    ClassBalancedStoragePolicy,
    ExperienceBalancedStoragePolicy,
    OnlineReplayPlugin,
    ParametricStoragePolicy,
    ReplayPlugin,
    ReservoirSamplingStoragePolicy,
)
from clreplay.benchmarks import split_digits
from clreplay.models import make_mlp
from clreplay.replay import GroupPlan, MappedFile, MemoryStore, mapped_empty
from clreplay.training import Naive


def mapping_rss_kib(path: str) -> int:
    """Resident KiB of this process's mapping of ``path`` (from /proc/self/smaps; the
    file's name is gone, so the kernel lists it as ``path (deleted)``)."""
    rss, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        fields = line.split()
        if "-" in fields[0] and len(fields) >= 5:  # a mapping's header line
            inside = " ".join(fields[5:]).startswith(path)
        elif inside and fields[0] == "Rss:":
            rss += int(fields[1])
    return rss


def test_a_mapped_tensor_leaves_no_file_behind_and_stays_valid(tmp_path):
    x, mapped = mapped_empty(tmp_path, (3, 4), torch.float32)
    assert Path(mapped.path).parent == tmp_path and not os.path.exists(mapped.path)
    assert os.listdir(tmp_path) == []  # the name is gone at once: nothing to leak on a kill
    x.copy_(torch.arange(12.).view(3, 4))
    out = mapped.read_rows(torch.tensor([2, 0]), torch.empty(2, 4))
    assert out.tolist() == [[8.0, 9.0, 10.0, 11.0], [0.0, 1.0, 2.0, 3.0]]  # the file sees the mapping
    assert x.sum().item() == 66


def test_a_killed_process_leaves_no_memory_file(tmp_path):
    script = (
        "import sys, time, torch\n"
        "from clreplay.replay import MemoryStore\n"
        "store = MemoryStore(1000, directory=sys.argv[1])\n"
        "store.write(torch.arange(10), {'x': torch.ones(10, 256), 'y': torch.zeros(10), "
        "'t': torch.zeros(10), 'origin': torch.zeros(10)})\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert os.listdir(tmp_path) == []


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="needs Linux /proc")
def test_release_gives_pages_back_and_keeps_the_values(tmp_path):
    x, mapped = mapped_empty(tmp_path, (2048, 1024), torch.float32)  # 8 MiB
    x.fill_(1.5)
    assert mapping_rss_kib(mapped.path) >= 8 * 1024 - 64
    mapped.release()
    assert mapping_rss_kib(mapped.path) == 0
    assert x[::97].eq(1.5).all()


def test_folder_and_shape_errors(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="directory must be a folder, got the file"):
        MappedFile(tmp_path / "file", 8)
    with pytest.raises(TypeError, match="memmap_dir must be a folder path"):
        MemoryStore(4, directory=3)
    with pytest.raises(ValueError, match=r"shape \(3,\) of torch.float32 must fill the file's 8 bytes"):
        MappedFile(tmp_path, 8).tensor(torch.float32, (3,))
    MemoryStore(4, directory=tmp_path / "new" / "folder")
    assert (tmp_path / "new" / "folder").is_dir()


def rows_of(values, ids):
    return {"x": values[ids], "y": torch.tensor(ids), "t": torch.zeros(len(ids)), "origin": torch.zeros(len(ids))}


def test_views_of_a_mapped_store_read_the_rows_written(tmp_path):
    store = MemoryStore(10, directory=tmp_path)
    values = torch.arange(40.).view(10, 4)
    store.write(torch.arange(6), rows_of(values, list(range(6))))
    store.write(torch.tensor([9, 7, 6]), rows_of(values, [9, 7, 6]))
    view = store.view(torch.tensor([9, 2, 7, 8]))
    x, y, _ = view.get_batch([0, 1, 2, 3])
    assert x.tolist() == [values[9].tolist(), values[2].tolist(), values[7].tolist(), [0.0] * 4]
    assert y.tolist() == [9, 2, 7, 0]
    assert store.read_x(torch.tensor([7, 0])).tolist() == [values[7].tolist(), values[0].tolist()]
    assert torch.equal(store.columns["x"][:8], values[:8])  # the mapping sees what went to the file


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="needs Linux /proc")
def test_writing_and_reading_rows_keeps_the_mapping_out_of_the_resident_set(tmp_path):
    store = MemoryStore(4096, directory=tmp_path)  # 4096 rows of 4 KiB: 16 MiB
    zeros = torch.zeros(512)
    for start in range(0, 4096, 512):
        store.write(torch.arange(start, start + 512),
                    {"x": torch.ones(512, 1024), "y": zeros, "t": zeros, "origin": zeros})
    store.update(torch.randperm(4096)[:300], {"x": torch.full((300, 1024), 2.0)})
    order = torch.randperm(4096)
    total = sum(store.read_x(order[s : s + 64]).sum().item() for s in range(0, 4096, 64))
    assert total == (4096 + 300) * 1024
    assert mapping_rss_kib(store.storage.files["x"].path) == 0


@pytest.mark.parametrize("capacity", [10**8, 10**12, 2**62])
def test_stores_in_ram_and_mapped_grow_with_what_they_hold_whatever_the_capacity(tmp_path, capacity):
    ram, mapped = MemoryStore(capacity), MemoryStore(capacity, directory=tmp_path)
    data = make_dataset(torch.arange(30) % 3)
    for store in (ram, mapped):
        store.apply({0: GroupPlan.of_new(torch.arange(30))}, data, origin=0)
    assert ram.columns["x"].shape[0] == 30  # not capacity rows
    assert mapped.columns["x"].shape[0] == 30  # files grown as rows come: no address space reserved
    assert mapped.storage.files["x"].nbytes == 30 * 2 * 4
    more = make_dataset(torch.arange(100) % 3, start=30)
    for store in (ram, mapped):
        rows = store.apply({0: GroupPlan(torch.arange(100), torch.arange(30), torch.arange(130))}, more,
                           origin=1)[0]
        assert rows.tolist() == list(range(30, 130)) + list(range(30))
    assert mapped.columns["x"].shape[0] == ram.columns["x"].shape[0] == 130
    for name in ram.columns:
        assert torch.equal(ram.columns[name][:130], mapped.columns[name][:130])


POLICIES = {
    "experience": lambda d: ExperienceBalancedStoragePolicy({}, 40, seed=2, memmap_dir=d),
    "class": lambda d: ClassBalancedStoragePolicy({}, 40, seed=2, memmap_dir=d),
    "reservoir": lambda d: ReservoirSamplingStoragePolicy({}, 40, seed=2, memmap_dir=d),
    "parametric": lambda d: ParametricStoragePolicy({}, 40, groupby="class", seed=2, memmap_dir=d),
}


def same_memory(a, b):
    """Every column, byte for byte, and the same groups in the same order."""
    assert a.store.size == b.store.size
    for name in a.store.columns:
        assert torch.equal(a.store.columns[name][: a.store.size], b.store.columns[name][: b.store.size])
    assert list(a.ext_mem) == list(b.ext_mem)
    for key in a.ext_mem:
        assert torch.equal(a.ext_mem[key].indices, b.ext_mem[key].indices)


@pytest.mark.parametrize("kind", sorted(POLICIES))
def test_every_policy_stores_the_same_bytes_in_ram_and_mapped_also_after_a_checkpoint(tmp_path, kind):
    ram, mapped = POLICIES[kind](None), POLICIES[kind](tmp_path)
    for i in range(3):
        data = make_dataset(torch.arange(60) % 3 + 3 * i, start=100 * i)
        for policy in (ram, mapped):
            policy(by_hand(data, i))
        same_memory(ram, mapped)
    restored = POLICIES[kind](tmp_path / "restored")
    restored.load_state_dict(mapped.state_dict())
    same_memory(ram, restored)
    assert os.listdir(tmp_path) == ["restored"] and os.listdir(tmp_path / "restored") == []


def parameters_after(plugin, *, mb=16):
    bench = split_digits()
    model = make_mlp(64, 10, [32], seed=0)
    strategy = Naive(model, torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9),
                     train_mb_size=mb, train_epochs=1, plugins=[plugin], seed=0)
    strategy.train(bench.train_stream[:3])
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("make", [
    lambda d: ReplayPlugin(90, ExperienceBalancedStoragePolicy({}, 90, memmap_dir=d)),
    lambda d: ReplayPlugin(90, ClassBalancedStoragePolicy({}, 90, memmap_dir=d)),
    lambda d: ReplayPlugin(90, ReservoirSamplingStoragePolicy({}, 90, memmap_dir=d)),
    lambda d: ReplayPlugin(90, ParametricStoragePolicy({}, 90, groupby="class", memmap_dir=d)),
    lambda d: OnlineReplayPlugin(90, ReservoirSamplingStoragePolicy({}, 90, memmap_dir=d)),
], ids=["experience", "class", "reservoir", "parametric", "online"])
def test_mapped_and_in_ram_memories_train_the_same_weights(tmp_path, make):
    in_ram = parameters_after(make(None))
    plugin = make(tmp_path)
    mapped = parameters_after(plugin)
    assert all(torch.equal(a, b) for a, b in zip(in_ram, mapped))
    assert os.listdir(tmp_path) == []
    assert plugin.storage_policy.store.directory == tmp_path
