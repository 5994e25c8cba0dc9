"""docs/how-to/distributed.md runs as written: every bash and python block, in an empty folder.

The conventions are the documentation site's (a block marked ``<!-- not-run: reason -->``
is skipped; the comment lines that end a block are output it must print). Once the
site's own runner (tests/test_docs.py) is there, it runs this page with the others and
this module steps aside.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "how-to" / "distributed.md"
FENCE = re.compile(r"^```(?P<lang>[\w+-]*)\s*$")
NOT_RUN = re.compile(r"^<!--\s*not-run:\s*(?P<reason>.+?)\s*-->$")

pytestmark = pytest.mark.skipif((ROOT / "tests" / "test_docs.py").exists(),
                                reason="tests/test_docs.py runs every page of the site")


def blocks():
    """(line of the fence, language, code, not-run reason) of each block of the page."""
    lines = PAGE.read_text(encoding="utf-8").splitlines()
    out, i = [], 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        start, body = i, []
        i += 1
        while not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        marker = NOT_RUN.match(lines[start - 1].strip())
        out.append((start + 1, match["lang"], "\n".join(body) + "\n", marker["reason"] if marker else None))
        i += 1
    return out


RUNNABLE = [b for b in blocks() if b[1] in ("bash", "python")]


def expected(code: str):
    """The comment lines that end a block: what it must print (``...`` matches anything)."""
    tail = []
    for line in reversed(code.rstrip("\n").splitlines()):
        if not line.startswith("# "):
            break
        tail.append(line[2:].strip())
    return list(reversed(tail))


def test_the_page_has_the_sections_and_blocks_the_guide_needs():
    text = PAGE.read_text(encoding="utf-8")
    for section in ("## On one machine: `--nproc`", "## With torchrun", "## Your own training loop",
                    "## Every method", "## GPUs", "## Several machines", "## Faults and resume"):
        assert section in text
    assert sum(1 for b in RUNNABLE if b[3] is None) >= 7
    assert all(b[3] for b in RUNNABLE if b[3] is not None)  # a skipped block says why


@pytest.mark.parametrize("line, lang, code, not_run", RUNNABLE, ids=[f"line{b[0]}" for b in RUNNABLE])
def test_block_runs_as_written(line, lang, code, not_run, tmp_path):
    if not_run is not None:
        pytest.skip(f"not run: {not_run}")
    if lang == "bash":
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               "OMP_NUM_THREADS": "1"}
        proc = subprocess.run(["bash", "-c", "set -euo pipefail\n" + code], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"line {line}: status {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        output = proc.stdout
    else:
        out = io.StringIO()
        before = os.getcwd()
        os.chdir(tmp_path)
        try:
            with torch.random.fork_rng(), contextlib.redirect_stdout(out):
                exec(compile("\n" * line + code, str(PAGE), "exec"), {"__name__": "__main__"})
        finally:
            os.chdir(before)
        output = out.getvalue()
    for text in expected(code):
        pattern = ".*?".join(re.escape(part.strip()) for part in text.split("..."))
        assert re.search(pattern, output), f"line {line}: {text!r} is not in the output:\n{output}"
