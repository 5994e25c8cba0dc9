import gc
import os
from pathlib import Path

import pytest
import torch
from conftest import by_hand, make_dataset

from clreplay import (
    OnlineReplayPlugin,
    ParametricStoragePolicy,
    ReplayPlugin,
    ReservoirSamplingStoragePolicy,
)
from clreplay.benchmarks import split_digits
from clreplay.data import ClassificationDataset
from clreplay.models import make_mlp
from clreplay.replay import MappedDataset, MappedFile, Slab, mapped_empty
from clreplay.training import Naive


def mapping_rss_kib(path: str) -> int:
    """Resident KiB of this process's mapping of ``path`` (from /proc/self/smaps)."""
    rss, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        fields = line.split()
        if "-" in fields[0] and len(fields) >= 5:  # a mapping's header line
            inside = fields[-1] == path
        elif inside and fields[0] == "Rss:":
            rss += int(fields[1])
    return rss


def test_mapped_tensor_lives_in_a_file_in_the_folder(tmp_path):
    x, mapped = mapped_empty(tmp_path, (3, 4), torch.float32)
    assert Path(mapped.path).parent == tmp_path and os.path.getsize(mapped.path) == 48
    x.copy_(torch.arange(12.).view(3, 4))
    with open(mapped.path, "rb") as f:
        assert torch.frombuffer(bytearray(f.read()), dtype=torch.float32).tolist() == list(range(12))
    path = mapped.path
    del mapped
    gc.collect()
    assert not os.path.exists(path)  # the scratch file goes with its owner...
    assert x.sum().item() == 66  # ...while the mapping stays valid


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
        Slab(4, directory=3)
    with pytest.raises(ValueError, match=r"shape \(3,\) of torch.float32 must fill the file's 8 bytes"):
        MappedFile(tmp_path, 8).tensor(torch.float32, (3,))
    Slab(4, directory=tmp_path / "new" / "folder")
    assert (tmp_path / "new" / "folder").is_dir()


def test_views_of_a_mapped_slab_read_rows_from_the_file(tmp_path):
    slab = Slab(10, directory=tmp_path)
    values = torch.arange(40.).view(10, 4)
    slab.write(slice(0, 6), values[:6], torch.arange(6), torch.zeros(6))
    slab.write(torch.tensor([9, 7, 6]), values[[9, 7, 6]], torch.tensor([9, 7, 6]), torch.zeros(3))
    view = ClassificationDataset.concat([slab.dataset().subset([9, 2]), slab.dataset().subset([7, 8])])
    assert isinstance(view, MappedDataset) and view.storage is slab.x
    x, y, _ = view.get_batch([0, 1, 2, 3])
    assert x.tolist() == [values[9].tolist(), values[2].tolist(), values[7].tolist(), [0.0] * 4]
    assert y.tolist() == [9, 2, 7, 0]
    assert torch.equal(slab.x[:8], values[:8])  # the mapping sees what was written to the file
    copy = view.copy()
    assert type(copy) is MappedDataset and copy.get_batch([0])[0].tolist() == [values[9].tolist()]


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="needs Linux /proc")
def test_writing_and_reading_rows_keeps_the_mapping_out_of_the_resident_set(tmp_path):
    slab = Slab(4096, directory=tmp_path)  # 4096 rows of 4 KiB: 16 MiB
    for start in range(0, 4096, 512):
        slab.write(slice(start, start + 512), torch.ones(512, 1024), torch.zeros(512), torch.zeros(512))
    slab.write(torch.randperm(4096)[:300], torch.full((300, 1024), 2.0), torch.ones(300), torch.zeros(300))
    view = slab.dataset().subset(torch.randperm(4096))
    total = sum(view.get_batch(torch.arange(s, s + 64))[0].sum().item() for s in range(0, 4096, 64))
    assert total == (4096 + 300) * 1024
    assert mapping_rss_kib(slab._files[0].path) == 0


def test_slab_in_ram_and_mapped_hold_the_same(tmp_path):
    ram, mapped = Slab(6), Slab(6, directory=tmp_path)
    for slab in (ram, mapped):
        slab.write(slice(0, 3), torch.arange(6.).view(3, 2), torch.tensor([1, 2, 3]), torch.tensor([0, 0, 1]))
        slab.write(torch.tensor([5, 1]), torch.full((2, 2), 7.0), torch.tensor([9, 9]), torch.tensor([2, 2]))
    assert torch.equal(ram.x, mapped.x) and torch.equal(ram.y, mapped.y) and torch.equal(ram.t, mapped.t)
    assert type(ram.dataset()) is ClassificationDataset and isinstance(mapped.dataset(), MappedDataset)
    assert len(os.listdir(tmp_path)) == 3


def test_reservoir_stores_the_same_samples(tmp_path):
    data = make_dataset(torch.arange(500) % 7)
    ram = ReservoirSamplingStoragePolicy({}, 40, seed=2)
    mapped = ReservoirSamplingStoragePolicy({}, 40, seed=2, memmap_dir=tmp_path)
    for policy in (ram, mapped):
        policy(by_hand(data, 0))
    assert torch.equal(ram.ext_mem[0].storage, mapped.ext_mem[0].storage)
    assert torch.equal(ram.ext_mem[0].targets, mapped.ext_mem[0].targets)
    assert isinstance(mapped.ext_mem[0], MappedDataset)
    loaded = ReservoirSamplingStoragePolicy({}, 40)
    loaded.load_state_dict(mapped.state_dict())
    assert torch.equal(loaded.ext_mem[0].storage, ram.ext_mem[0].storage)


def parameters_after(plugin, *, mb=16):
    bench = split_digits()
    model = make_mlp(64, 10, [32], seed=0)
    strategy = Naive(model, torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9),
                     train_mb_size=mb, train_epochs=1, plugins=[plugin], seed=0)
    strategy.train(bench.train_stream[:3])
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("make", [
    lambda d: ReplayPlugin(90, ReservoirSamplingStoragePolicy({}, 90, memmap_dir=d)),
    lambda d: ReplayPlugin(90, ParametricStoragePolicy({}, 90, groupby="class", memmap_dir=d)),
    lambda d: OnlineReplayPlugin(90, ReservoirSamplingStoragePolicy({}, 90, memmap_dir=d)),
], ids=["reservoir", "parametric", "online"])
def test_mapped_and_in_ram_memories_train_the_same_weights(tmp_path, make):
    in_ram = parameters_after(make(None))
    plugin = make(tmp_path)
    mapped = parameters_after(plugin)
    assert all(torch.equal(a, b) for a, b in zip(in_ram, mapped))
    assert len(os.listdir(tmp_path)) == 3
    assert all(isinstance(g, MappedDataset) for g in plugin.ext_mem.values())
