"""bench/gpu_resnet.py is run by hand on a GPU machine; here its CPU smoke version runs, so a
broken script is noticed before it reaches one."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "gpu_resnet.py"


@pytest.mark.skipif(torch.cuda.is_available(), reason="with CUDA the benchmark measures for minutes")
def test_without_cuda_it_says_so_and_runs_a_cpu_smoke_version(tmp_path):
    out = tmp_path / "rows.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--methods", "er", "xder", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "CUDA is not available here" in proc.stdout and "nothing was measured on a GPU" in proc.stdout
    rows = json.loads(out.read_text())
    assert rows["device"] == "cpu"
    assert [(r["method"], r["mode"], r["precision"]) for r in rows["rows"]] == [
        ("bare", "eager", "fp32"), ("er", "eager", "fp32"), ("xder", "eager", "fp32")]
    assert all(r["samples_per_s"] > 0 for r in rows["rows"])
    results = [json.loads(line.split(": ", 1)[1]) for line in proc.stdout.splitlines()
               if line.startswith("BENCH-RESULT")]
    assert [r["name"] for r in results] == ["ER vs the bare eager loop (fp32)"]
    assert results[0]["passed"] is None and results[0]["measured"] is False


def test_bad_sizes_are_refused_naming_the_flag():
    proc = subprocess.run([sys.executable, str(SCRIPT), "--samples", "0"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and "--samples must be a positive int, got 0" in proc.stderr
