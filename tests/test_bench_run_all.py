"""bench/run_all.py: its own --help, and a --quick summary that does not pretend to measure."""

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))
import run_all  # noqa: E402

RECORD = {"name": "eval", "target": ">= 0.90", "value": 0.42, "unit": "x", "passed": False}


def test_quick_rows_say_not_measured():
    # Before: "met: no" on every row whose tiny --quick sizes missed the target.
    assert run_all.summary([RECORD], quick=True).splitlines()[-1] == \
        "| eval | >= 0.90 | 0.42 x | not measured (quick) |"
    assert run_all.summary([RECORD], quick=False).splitlines()[-1] == "| eval | >= 0.90 | 0.42 x | no |"
    assert run_all.summary([{**RECORD, "passed": True}], quick=False).endswith("| yes |")


def test_help_is_run_alls_own():
    # Before: --help was passed to every bench_*.py, which each printed its help (minutes).
    proc = subprocess.run([sys.executable, str(BENCH / "run_all.py"), "--help"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0
    assert proc.stdout.startswith("usage: run_all.py [-h] [--quick] [--only SCRIPT [SCRIPT ...]]")
    assert "===" not in proc.stdout  # no script ran


def test_only_runs_the_scripts_named(monkeypatch, capsys):
    calls = []

    def fake_run(command, **kwargs):
        calls.append(command[1:])
        line = run_all.PREFIX + '{"name": "eval", "target": "t", "value": 1.0, "unit": "x", ' \
            '"passed": true, "machine": "m"}'
        return subprocess.CompletedProcess(command, 0, stdout=line + "\n", stderr="")

    monkeypatch.setattr(run_all.subprocess, "run", fake_run)
    assert run_all.main(["--quick", "--only", "bench_eval.py", "--threads", "2"]) == 0
    assert calls == [[str(BENCH / "bench_eval.py"), "--quick", "--threads", "2"]]
    assert capsys.readouterr().out.endswith("| eval | t | 1.00 x | not measured (quick) |\n")
