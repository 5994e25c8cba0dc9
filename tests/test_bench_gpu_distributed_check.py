"""bench/gpu_distributed_check.py is run by hand on a GPU machine; here we only check that it
imports and that its fallback without CUDA (2 spawned CPU processes, gloo, every method) runs
and passes its checks."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.fixture
def script(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))  # the script imports its harness beside it
    spec = importlib.util.spec_from_file_location("gpu_distributed_check", BENCH / "gpu_distributed_check.py")
    module = importlib.util.module_from_spec(spec)
    # Registered like an import: the spawned processes find its worker by name.
    monkeypatch.setitem(sys.modules, "gpu_distributed_check", module)
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("_harness", None)


@pytest.mark.skipif(torch.cuda.is_available(), reason="with CUDA the script checks the GPUs")
def test_gpu_distributed_check_says_cuda_is_absent_and_passes_on_the_cpu(script, tmp_path, capsys):
    from clreplay.strategies import list_methods

    assert script.CASES == [*list_methods(), "online-er"]  # every method
    threads = torch.get_num_threads()
    try:
        assert script.main(["--quick", "--out", str(tmp_path / "checks.json")]) == 0
    finally:
        torch.set_num_threads(threads)  # the harness sets the thread count
    out = capsys.readouterr().out
    assert "CUDA is not available here" in out and "nothing was checked on a GPU" in out
    results = json.loads((tmp_path / "checks.json").read_text())
    assert results["device"] == "cpu" and results["processes"] == 2
    names = [c["check"] for c in results["checks"]]
    assert len(names) == 2 + 5 * len(script.CASES) and all(c["passed"] for c in results["checks"])
    assert "xder: weights after experience 0 match one process on the same global batches" in names
