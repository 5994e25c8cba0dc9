"""Property tests of the replay memory: every storage policy over random streams.

Every policy in the registry (with each selection strategy where it takes one),
plus the fixed-size variants, is driven by hand over streams drawn by hypothesis:
experience sizes, class counts, classes coming back, empty experiences, memories
larger than the data. Every sample carries a unique id in its first feature, so
each stored sample can be traced back to the one that was seen.
"""

from types import SimpleNamespace

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clreplay import ClassBalancedStoragePolicy, ExperienceBalancedStoragePolicy
from clreplay.benchmarks import Experience
from clreplay.data import ClassificationDataset
from clreplay.models import make_mlp
from clreplay.replay.registry import (
    POLICIES_WITH_SELECTION,
    list_policies,
    list_selections,
    make_selection_strategy,
    make_storage_policy,
)

N_FEATURES = 3
SETTINGS = settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)

# (name, adaptive): registry policies with every selection strategy, then the fixed-size ones.
CONFIGS = [
    (policy, selection)
    for policy in list_policies()
    for selection in (list_selections() if policy in POLICIES_WITH_SELECTION else [None])
] + [("experience-fixed", None), ("class-fixed", "random")]


# Feature-based selection reads this fixed network's hidden layer; selections that
# read the strategy's model (e.g. by uncertainty) find it in by_hand().
MODEL = make_mlp(N_FEATURES, 4, [5], seed=0)


def make_policy(config, mem_size, *, seed=3, n_fixed=3):
    name, selection_name = config
    selection = None
    if selection_name is not None:
        selection = make_selection_strategy(selection_name, model=MODEL, layer_name="1", seed=seed)
    if name == "experience-fixed":
        return ExperienceBalancedStoragePolicy({}, mem_size, False, n_fixed, seed=seed)
    if name == "class-fixed":
        return ClassBalancedStoragePolicy({}, mem_size, False, n_fixed, selection, seed=seed)
    return make_storage_policy(name, mem_size, selection=selection, seed=seed)


def is_adaptive(policy):
    return getattr(policy, "adaptive_size", True)


@st.composite
def streams(draw):
    """A list of (experience index, [(class, count), ...]); indices may come back."""
    n_classes = draw(st.integers(1, 6))
    stream = []
    for i in range(draw(st.integers(1, 5))):
        classes = draw(st.lists(st.integers(0, n_classes - 1), min_size=0, max_size=3, unique=True))
        counts = [draw(st.integers(1, 30)) for _ in classes]
        index = draw(st.sampled_from(range(i))) if i and draw(st.integers(0, 5)) == 0 else i
        stream.append((index, list(zip(classes, counts))))
    return stream


def build_experience(index, parts, next_id):
    """An experience whose samples have ids next_id, next_id + 1, ... in feature 0."""
    labels = [c for c, count in parts for _ in range(count)]
    n = len(labels)
    ids = torch.arange(next_id, next_id + n, dtype=torch.float32)
    y = torch.tensor(labels, dtype=torch.long)
    noise = torch.sin(ids * 12.9898) * 0.5  # deterministic, different for every id
    x = torch.stack([ids, y.float(), noise], dim=1) if n else torch.empty(0, N_FEATURES)
    dataset = ClassificationDataset(x, y, task_labels=index % 2)
    return Experience(dataset, index, sorted({c for c, _ in parts})), next_id + n


def by_hand(experience):
    return SimpleNamespace(experience=experience, device="cpu", eval_mb_size=64, model=MODEL)


def run_stream(policy, stream, check=None):
    """Drive ``policy`` over ``stream``; ``seen`` maps id -> (x, y, task, experience index)."""
    seen, next_id = {}, 0
    for index, parts in stream:
        experience, next_id = build_experience(index, parts, next_id)
        data = experience.dataset
        for row in range(len(data)):
            x, y, t = data[row]
            seen[int(x[0])] = (x, int(y), int(t), index)
        policy(by_hand(experience))
        if check is not None:
            check(policy, seen)
    return seen, next_id


def stored_samples(policy):
    """(group key, id, x, y, task) for every stored sample, in memory order."""
    out = []
    for key, group in policy.ext_mem.items():
        x, y, t = group.get_batch(torch.arange(len(group)))
        out += [(key, int(x[i, 0]), x[i], int(y[i]), int(t[i])) for i in range(len(group))]
    return out


def check_invariants(policy, seen):
    samples = stored_samples(policy)
    total = len(samples)
    assert total == len(policy) <= policy.mem_size
    if is_adaptive(policy):
        assert total == min(policy.mem_size, len(seen))
    ids = [s[1] for s in samples]
    assert len(set(ids)) == len(ids), "a sample is stored twice"
    for key, sid, x, y, t in samples:
        assert sid in seen, f"stored sample {sid} was never seen"
        seen_x, seen_y, seen_t, seen_index = seen[sid]
        assert torch.equal(x, seen_x) and (y, t) == (seen_y, seen_t)
        if isinstance(policy, ClassBalancedStoragePolicy):
            assert key == y
        if isinstance(policy, ExperienceBalancedStoragePolicy):
            assert key == seen_index
    if isinstance(policy, ClassBalancedStoragePolicy):
        # Classes that lost samples (keep fewer than were seen) are balanced within one.
        seen_per_class = {}
        for _, y, _, _ in seen.values():
            seen_per_class[y] = seen_per_class.get(y, 0) + 1
        cut = [len(g) for c, g in policy.ext_mem.items() if len(g) < seen_per_class[c]]
        if cut and is_adaptive(policy):
            assert max(cut) - min(cut) <= 1, {c: len(g) for c, g in policy.ext_mem.items()}


def memories_equal(a, b):
    if list(a.ext_mem) != list(b.ext_mem):
        return False
    for key in a.ext_mem:
        ga, gb = a.ext_mem[key], b.ext_mem[key]
        xa, ya, ta = ga.get_batch(torch.arange(len(ga)))
        xb, yb, tb = gb.get_batch(torch.arange(len(gb)))
        if not (torch.equal(xa, xb) and torch.equal(ya, yb) and torch.equal(ta, tb)):
            return False
    return True


@pytest.mark.parametrize("config", CONFIGS, ids=str)
@SETTINGS
@given(stream=streams(), mem_size=st.integers(1, 60))
def test_memory_invariants_over_random_streams(config, stream, mem_size):
    policy = make_policy(config, mem_size)
    run_stream(policy, stream, check_invariants)


@pytest.mark.parametrize("config", CONFIGS, ids=str)
@SETTINGS
@given(stream=streams(), mem_size=st.integers(1, 60))
def test_state_dict_round_trip_and_determinism(config, stream, mem_size):
    policy = make_policy(config, mem_size)
    _, next_id = run_stream(policy, stream)
    twin = make_policy(config, mem_size)
    run_stream(twin, stream)
    assert memories_equal(policy, twin), "the same seed must store the same memory"

    restored = make_policy(config, mem_size, seed=99)  # the seed comes from the state
    restored.load_state_dict(policy.state_dict())
    assert memories_equal(policy, restored)
    # Generators and bookkeeping come back too: the next update is the same.
    more, _ = build_experience(len(stream), [(0, 7), (1, 40)], next_id)
    policy(by_hand(more))
    restored(by_hand(more))
    assert memories_equal(policy, restored)


@SETTINGS
@given(
    sizes=st.lists(st.integers(0, 80), min_size=1, max_size=6),
    mem_size=st.integers(1, 60),
)
def test_experience_balanced_sizes(sizes, mem_size):
    """With enough samples everywhere: mem_size // k each, the remainder to the newest."""
    policy = ExperienceBalancedStoragePolicy({}, mem_size)
    next_id = 0
    for i, n in enumerate(sizes):
        experience, next_id = build_experience(i, [(i, n)] if n else [], next_id)
        policy(by_hand(experience))
        groups = [len(g) for g in policy.ext_mem.values()]
        if all(n >= mem_size for n in sizes[: i + 1]):
            k = i + 1
            assert groups == [mem_size // k] * (k - 1) + [mem_size - (k - 1) * (mem_size // k)]
        assert sum(groups) == min(mem_size, sum(sizes[: i + 1]))


@SETTINGS
@given(
    counts=st.lists(st.integers(1, 40), min_size=1, max_size=8),
    mem_size=st.integers(1, 60),
    per_experience=st.integers(1, 3),
)
def test_class_balanced_sizes_differ_by_at_most_one(counts, mem_size, per_experience):
    """When every class has at least mem_size samples, class sizes differ by at most one."""
    counts = [max(c, mem_size) for c in counts]
    policy = ClassBalancedStoragePolicy({}, mem_size, seed=1)
    next_id = 0
    for start in range(0, len(counts), per_experience):
        parts = [(c, counts[c]) for c in range(start, min(start + per_experience, len(counts)))]
        experience, next_id = build_experience(start, parts, next_id)
        policy(by_hand(experience))
        sizes = [len(g) for g in policy.ext_mem.values()]
        assert sum(sizes) == mem_size
        assert max(sizes) - min(sizes) <= 1, sizes
