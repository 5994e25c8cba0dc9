"""bench/gpu_distributed_check.py is run by hand on a GPU machine; here we only check that its
fallback without CUDA (2 forked CPU processes, gloo) runs and passes its checks."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.mark.skipif(torch.cuda.is_available(), reason="with CUDA the script checks the GPUs")
def test_gpu_distributed_check_says_cuda_is_absent_and_passes_on_the_cpu(tmp_path, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))  # the script imports its harness beside it
    spec = importlib.util.spec_from_file_location("gpu_distributed_check", BENCH / "gpu_distributed_check.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    threads = torch.get_num_threads()
    try:
        assert script.main(["--quick", "--out", str(tmp_path / "checks.json")]) == 0
    finally:
        torch.set_num_threads(threads)  # the harness sets the thread count
        sys.modules.pop("_harness", None)
    out = capsys.readouterr().out
    assert "CUDA is not available here" in out and "nothing was checked on a GPU" in out
    results = json.loads((tmp_path / "checks.json").read_text())
    assert results["device"] == "cpu" and results["processes"] == 2
    assert len(results["checks"]) == 12 and all(c["passed"] for c in results["checks"])
