"""The command line and RunConfig options of the replay extensions (issue 7)."""

import gc
import os

import pytest

from clreplay import (
    OnlineReplayPlugin,
    ParametricStoragePolicy,
    ReplayPlugin,
    ReservoirSamplingStoragePolicy,
)
from clreplay.cli import main
from clreplay.models import make_mlp
from clreplay.replay.registry import list_policies, list_selections, make_storage_policy
from clreplay.run import RunConfig, build_replay_plugin


def test_names_are_registered():
    assert {"reservoir", "parametric"} <= set(list_policies())
    assert {"entropy", "margin"} <= set(list_selections())


def test_storage_policy_options(tmp_path):
    policy = make_storage_policy("parametric", 30, groupby="task", memmap_dir=tmp_path)
    assert isinstance(policy, ParametricStoragePolicy) and policy.groupby == "task"
    assert isinstance(make_storage_policy("reservoir", 30, memmap_dir=None), ReservoirSamplingStoragePolicy)
    with pytest.raises(ValueError, match="groupby applies to the 'parametric' policies, got groupby='class' with policy 'reservoir'"):
        make_storage_policy("reservoir", 30, groupby="class")


def test_policy_default_depends_on_online():
    assert RunConfig(policy=None).validate().policy == "experience"
    assert RunConfig(policy=None, online=True).validate().policy == "reservoir"


@pytest.mark.parametrize("changes, err, message", [
    ({"groupby": "class"}, ValueError, "groupby needs policy 'parametric', got groupby='class' with policy 'experience'"),
    ({"policy": "parametric", "groupby": "classes"}, ValueError, "groupby must be one of 'class', 'experience', 'task' or None, got 'classes'; did you mean 'class'"),
    ({"online": True, "replay": False}, ValueError, "online must be False without replay"),
    ({"online": True, "task_balanced": True}, ValueError, "task_balanced applies to offline replay"),
    ({"batch_size_mem": 0}, ValueError, "batch_size_mem must be a positive int or None, got 0"),
    ({"online": "yes"}, TypeError, "online must be a bool, got 'yes'"),
    ({"policy": "reservoir", "memmap_dir": 3}, TypeError, "memmap_dir must be a path or None, got 3"),
])
def test_bad_options(changes, err, message):
    with pytest.raises(err, match=message):
        RunConfig(**changes).validate()


def test_build_replay_plugin(tmp_path):
    model = make_mlp(64, 10, [8], seed=0)
    online = build_replay_plugin(RunConfig(policy=None, online=True, batch_size_mem=5).validate(), model)
    assert isinstance(online, OnlineReplayPlugin) and online.batch_size_mem == 5
    assert isinstance(online.storage_policy, ReservoirSamplingStoragePolicy)
    config = RunConfig(policy="parametric", groupby="class", selection="margin", task_balanced=True,
                       memmap_dir=str(tmp_path)).validate()
    offline = build_replay_plugin(config, model)
    assert isinstance(offline, ReplayPlugin) and offline.task_balanced
    assert offline.storage_policy.groupby == "class" and offline.storage_policy.memmap_dir == str(tmp_path)
    assert type(offline.storage_policy.selection_strategy).__name__ == "MarginSelectionStrategy"


def test_help_names_every_new_option_and_class(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for text in ["--online", "--groupby", "--batch-size-mem", "--task-balanced", "--memmap-dir",
                 "reservoir", "parametric", "entropy", "margin"]:
        assert text in out
    for flag, name, text in [("--policy", "reservoir", "ReservoirSamplingStoragePolicy"),
                             ("--policy", "parametric", "ParametricStoragePolicy"),
                             ("--selection", "entropy", "EntropySelectionStrategy"),
                             ("--selection", "margin", "MarginSelectionStrategy")]:
        with pytest.raises(SystemExit):
            main(["run", flag, name, "--help"])  # the help describes the choice given
        assert f"{name}: {text}" in " ".join(capsys.readouterr().out.split())


def test_online_run_with_a_mapped_memory(tmp_path, capsys):
    folder = tmp_path / "memory"
    assert main(["run", "--online", "--epochs", "1", "--n-experiences", "2", "--batch-size", "10",
                 "--mem-size", "50", "--memmap-dir", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "policy=reservoir" in out and "final average accuracy" in out
    gc.collect()
    assert os.listdir(folder) == []  # the scratch files go with the memory
