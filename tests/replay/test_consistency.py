"""Memory checksums: equal memories give equal checksums, any change shows in its group's row."""

from types import SimpleNamespace

import torch
from conftest import by_hand, make_dataset

from clreplay import ClassBalancedStoragePolicy, ParametricStoragePolicy
from clreplay.replay.storage.checksum import K, P
from clreplay.replay.storage.consistency import check_replicated, memory_checksums
from clreplay.training import RunContext


def _policy(**kwargs):
    policy = ClassBalancedStoragePolicy({}, 12, seed=3, **kwargs)
    policy.store.register_column("logits", (2,), torch.float32)
    data = make_dataset([0] * 10 + [1] * 10 + [2] * 10)
    x = data.storage
    policy(by_hand(data, 0), columns={"logits": torch.stack([x[:, 0], -x[:, 0]], 1)})
    return policy


def test_one_row_of_checksums_per_group_after_the_keys_and_the_writes():
    keys, sums = memory_checksums(_policy())
    assert keys == [0, 1, 2]
    assert sums.shape == (5, K) and sums.dtype == torch.float64
    assert sums[1].tolist() == [0.0] * K  # writes are not digested in a single process
    assert bool(((sums >= 0) & (sums < P) & (sums == sums.round())).all())
    assert torch.equal(memory_checksums(_policy())[1], sums)  # the same memory, the same sums


def _changed_rows(before, after):
    return torch.nonzero((before != after).any(dim=1)).flatten().tolist()


def test_a_change_to_any_column_of_a_group_changes_that_group_only():
    policy = _policy()
    _, before = memory_checksums(policy)
    rows = policy.store.rows_of(policy.ext_mem[1])
    for name in ("x", "y", "t", "origin", "logits"):
        column = policy.store.columns[name]
        saved = column[rows[2]].clone()
        column[rows[2]] = saved + 1
        assert _changed_rows(before, memory_checksums(policy)[1]) == [3], name
        column[rows[2]] = saved
    assert torch.equal(memory_checksums(policy)[1], before)


def test_the_order_of_a_group_and_its_keys_count():
    policy = _policy()
    _, before = memory_checksums(policy)
    _, light = memory_checksums(policy, full=False)
    rows = policy.store.rows_of(policy.ext_mem[2])
    policy.ext_mem[2] = policy.store.view(rows.flip(0))
    assert _changed_rows(before, memory_checksums(policy)[1]) == [4]
    assert _changed_rows(light, memory_checksums(policy, full=False)[1]) == [4]
    policy.ext_mem[2] = policy.store.view(rows)
    policy.ext_mem[5] = policy.ext_mem.pop(2)
    assert _changed_rows(before, memory_checksums(policy)[1]) == [0]


def test_a_memory_mapped_memory_has_the_checksums_of_the_same_memory_in_ram(tmp_path):
    sums = []
    for memmap_dir in (None, tmp_path):
        policy = ParametricStoragePolicy({}, 10, groupby="class", seed=1, memmap_dir=memmap_dir)
        policy(by_hand(make_dataset([0, 1, 2] * 7, features=3), 0))
        sums.append(memory_checksums(policy)[1])
    assert torch.equal(sums[0], sums[1])


def test_the_check_is_a_no_op_in_a_single_process():
    policy = _policy()
    check_replicated(policy, SimpleNamespace(context=RunContext(seed=0)), when="experience 0")
    check_replicated(policy, SimpleNamespace(), when="experience 0")


def test_a_replicated_memory_digests_every_write_for_the_light_check():
    policies = []
    for _ in range(2):
        policy = ClassBalancedStoragePolicy({}, 12, seed=3)
        policy.setup(RunContext(seed=0, rank=1, world_size=2))
        policy(by_hand(make_dataset([0] * 10 + [1] * 10), 0))
        policies.append(policy)
    light = [memory_checksums(p, full=False)[1] for p in policies]
    assert torch.equal(light[0], light[1]) and light[0][1].tolist() != [0.0] * K
    # The light check reads no sample: a value changed in place shows in the full check only,
    # a value written shows in the digest of the writes.
    rows = policies[1].store.rows_of(policies[1].ext_mem[0])
    policies[1].store.columns["x"][rows[0], 1] += 1
    assert torch.equal(memory_checksums(policies[1], full=False)[1], light[0])
    assert _changed_rows(memory_checksums(policies[0])[1], memory_checksums(policies[1])[1]) == [2]
    store = policies[1].store
    values = {name: store.read(name, rows[:1]) for name in ("x", "y", "t", "origin")}
    store.write(rows[:1], {**values, "y": values["y"] + 1})
    assert _changed_rows(light[0], memory_checksums(policies[1], full=False)[1]) == [1]
