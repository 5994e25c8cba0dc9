"""bench/gpu_check.py is run by hand on a GPU machine; here we only check that its
fallback without CUDA works, so a broken script is noticed before it reaches one."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "gpu_check.py"


@pytest.mark.skipif(torch.cuda.is_available(), reason="with CUDA the check measures for a minute")
def test_gpu_check_says_cuda_is_absent_and_runs_its_cpu_path(tmp_path):
    out = tmp_path / "gpu.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "CUDA is not available here" in proc.stdout
    assert "nothing was measured on a GPU" in proc.stdout
    results = json.loads(out.read_text())
    assert results["device"] == "cpu" and results["syncs"] == []
    (row,) = results["throughput"]
    # 5 experiences of 200 samples, batches of 32 balanced over the experiences seen:
    # 200 + (12*32 + 16) + (18*32 + 6) + 25*32 + (28*32 + 20) samples forwarded.
    assert row["mb"] == 32 and row["samples"] == 2898
