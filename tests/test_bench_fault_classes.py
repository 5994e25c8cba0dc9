"""bench/fault_classes.py: its verdicts on outcomes made by hand, and its cheapest real case."""

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import fault_classes  # noqa: E402
from fault_classes import Case, Outcome, judge  # noqa: E402

CASE = Case("fifo", "FIFO as --config", [], 2, r"must be a regular file, got a FIFO")


@pytest.mark.parametrize("outcome, verdict", [
    (Outcome(2, "", "clreplay run: error: config file 'c' must be a regular file, got a FIFO (named pipe)\n", 1, 0),
     None),
    (Outcome(None, "", "", 30, 0), "hung (killed after 30s)"),
    (Outcome(1, "", "Traceback (most recent call last):\n  ...\nOSError: boom\n", 1, 0), "traceback: OSError: boom"),
    (Outcome(0, "", "", 1, 0), "exit status 0, expected 2: "),
    (Outcome(2, "", "clreplay run: error: a\nclreplay run: error: b\n", 1, 0),
     "not one clreplay line: clreplay run: error: a\nclreplay run: error: b"),
    (Outcome(2, "", "clreplay run: error: something else\n", 1, 0),
     "message 'clreplay run: error: something else' lacks 'must be a regular file, got a FIFO'"),
])
def test_judge_accepts_one_matching_clreplay_line_only(outcome, verdict):
    assert judge(CASE, outcome) == verdict


def test_leaks_are_anything_but_the_run_s_own_files(tmp_path):
    for name in ("ck/checkpoint.pt", "ck/.checkpoint.pt.x.tmp", "out/results.json", "out/.clreplay.lock",
                 "out/notes.md", "mm/clreplay-memory-1.bin"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("x")
    assert fault_classes.leaks(tmp_path) == ["ck/.checkpoint.pt.x.tmp", "out/.clreplay.lock", "out/notes.md",
                                             "mm/clreplay-memory-1.bin"]


def test_resumed_cases_compare_with_the_run_of_the_same_settings():
    args = ["--epochs", "2", "--output", "o", "--checkpoint-dir", "c", "--checkpoint-every", "7",
            "--memmap-dir", "m", "--seed", "3"]
    assert fault_classes._reference_key(args) == ("--epochs", "2", "--seed", "3")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_the_quick_mode_s_cheapest_case_runs_and_passes(tmp_path):
    case = next(c for c in fault_classes.fifo_cases(tmp_path) if c.name == "FIFO as --config")
    report = fault_classes.run_case(case, {})
    assert report["problem"] is None and report["status"] == 2
    assert "config file" in report["message"] and "got a FIFO" in report["message"]
    assert "1 cases: 1 as expected" in fault_classes.summarize([report])
