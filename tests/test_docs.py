"""Every code block of README.md and of the documentation site runs, so the docs cannot drift.

* A ```python block runs on its own (in this process, in an empty folder, with torch's
  global random state restored afterwards), as a script: ``__name__ == "__main__"``.
* A ```bash block runs command by command in an empty folder: a plain ``clreplay ...``
  line (optionally ending ``2>&1`` and ``|| true``) in this process
  (``clreplay.cli.main``), any other line in bash
  (``set -euo pipefail``) with this environment's ``clreplay`` first on the PATH; every
  command must succeed.
* A block that cannot run here (it installs packages, needs a GPU, several machines or
  data that is not here, or runs for minutes) carries ``<!-- not-run: <reason> -->`` on
  the line just before its fence.
* Output comments are checked: in a python block, the comment that ends a line holding a
  ``print(`` call; in either kind, the comment lines that end a block. Each must appear
  in the block's output (``...`` matches anything); trailing comments on other lines
  describe, and are not checked.

A failure names the page and the line of the block's fence (the test's id).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import pytest
import torch

from clreplay.benchmarks.fashion_mnist import fashion_mnist_files_present

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
RUNNABLE = {"python": "python", "py": "python", "bash": "bash", "sh": "bash", "shell": "bash"}
NOT_RUN = re.compile(r"^<!--\s*not-run:\s*(?P<reason>.*?)\s*-->$")
FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>[\w+-]*)\s*$")


@dataclass
class Block:
    page: Path
    line: int  # of the opening fence, 1-based
    lang: str
    code: str
    not_run: Optional[str]

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks_of(page: Path) -> List[Block]:
    """The fenced code blocks of a markdown page, with the not-run marker before each."""
    lines = page.read_text(encoding="utf-8").splitlines()
    found, i = [], 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        start, indent = i, len(match["indent"])
        i += 1
        body = []
        while i < len(lines) and not re.match(r"^\s*```\s*$", lines[i]):
            body.append(lines[i][indent:])
            i += 1
        if i == len(lines):
            raise AssertionError(f"{page.relative_to(ROOT)}:{start + 1}: a code block is never closed")
        marker = NOT_RUN.match(lines[start - 1].strip()) if start else None
        found.append(Block(page, start + 1, match["lang"], "\n".join(body) + "\n",
                           marker["reason"] if marker else None))
        i += 1
    return found


ALL = [block for page in PAGES for block in blocks_of(page)]
RUN = [block for block in ALL if block.lang in RUNNABLE]


def expected_outputs(block: Block) -> List[str]:
    """The output comments of a block (see the module's description)."""
    lines = block.code.rstrip("\n").splitlines()
    expected = []
    if RUNNABLE[block.lang] == "python":
        for line in lines:
            code, sep, comment = line.partition("  # ")
            if sep and "print(" in code and not code.lstrip().startswith("#"):
                expected.append(comment.strip())
    tail = []
    for line in reversed(lines):
        if not line.startswith("# "):
            break
        tail.append(line[2:].strip())
    if tail and len(tail) < len(lines):
        expected += reversed(tail)
    return [text for text in expected if text]


def check_outputs(block: Block, output: str) -> None:
    for text in expected_outputs(block):
        pattern = ".*?".join(re.escape(part.strip()) for part in text.split("..."))
        if not re.search(pattern, output):
            raise AssertionError(f"{block.where}: the output comment {text!r} is not what the block "
                                 f"printed:\n{output}")


@contextlib.contextmanager
def _inside(folder: Path):
    before = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


def run_python(block: Block, folder: Path) -> str:
    # Line numbers of tracebacks are the page's.
    code = compile("\n" * block.line + block.code, str(block.page.relative_to(ROOT)), "exec")
    out = io.StringIO()
    with torch.random.fork_rng(), _inside(folder), contextlib.redirect_stdout(out):
        exec(code, {"__name__": "__main__", "__file__": str(folder / "example.py")})
    return out.getvalue()


_OPENS = re.compile(r"^\s*(for|while|until|if|case)\b")
_CLOSES = re.compile(r"^\s*(done|fi|esac)\b")
_HEREDOC = re.compile(r"<<-?\s*['\"]?(\w+)['\"]?")


def commands_of(code: str) -> List[str]:
    """A bash block's commands: its lines, joined where they end with a backslash, a
    here-document with its lines up to its delimiter, a loop or an ``if`` up to its end;
    without comments and blank lines."""
    commands, current, depth, heredoc = [], "", 0, None
    for line in code.splitlines():
        if heredoc is not None:  # a here-document's lines, as they are
            current += line + "\n"
            if line.strip() == heredoc:
                heredoc = None
                if depth == 0:
                    commands.append(current.strip())
                    current = ""
            continue
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        continued = line.rstrip().endswith("\\")
        current += line[:-1] + " " if continued else line + "\n"
        depth += bool(_OPENS.match(line)) - bool(_CLOSES.match(line))
        opened = _HEREDOC.search(line)
        if opened:
            heredoc = opened.group(1)
            continue
        if not continued and depth <= 0:
            commands.append(current.strip())
            current, depth = "", 0
    return commands


#: A command run in this process: ``clreplay`` and plain words, then optionally ``2>&1``
#: (its stderr read as output) and ``|| true`` (its exit status not checked).
IN_PROCESS = re.compile(r"(?P<command>clreplay(?: [^|&;<>$`(){}*\"']*)??)(?P<stderr> 2>&1)?(?P<ok> \|\| true)?")


def run_bash(block: Block, folder: Path) -> str:
    """Each command in turn: a plain ``clreplay ...`` line runs in this process (no
    interpreter to start, no torch to import again), any other line in bash; a block
    without such a line runs in bash as one script."""
    from clreplay.cli import main

    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "OMP_NUM_THREADS": "1", "COLUMNS": "80"}
    output = []
    commands = commands_of(block.code)
    if not any(IN_PROCESS.fullmatch(command.split(" #")[0].strip()) for command in commands):
        commands = ["\n".join(commands)]  # one script: variables and jobs carry from line to line
    for command in commands:
        plain = IN_PROCESS.fullmatch(command.split(" #")[0].strip())
        if plain:
            out = io.StringIO()
            err = out if plain["stderr"] else io.StringIO()
            with _inside(folder), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    status = main(shlex.split(plain["command"])[1:])
                except SystemExit as exit_:  # --help, --version, argparse's errors
                    status = exit_.code or 0
            output.append(out.getvalue())
            status = 0 if plain["ok"] else status
        else:
            proc = subprocess.run(["bash", "-c", "set -euo pipefail\n" + command], cwd=folder, env=env,
                                  capture_output=True, text=True, timeout=600)
            status = proc.returncode
            output.append(proc.stdout + proc.stderr)
        if status != 0:
            raise AssertionError(f"{block.where}: `{command}` ended with status {status}:\n"
                                 + "".join(output))
    return "".join(output)


@pytest.mark.parametrize("block", RUN, ids=[block.where for block in RUN])
def test_code_block_runs(block: Block, tmp_path):
    if block.not_run is not None:
        assert block.not_run, f"{block.where}: a not-run marker must say why"
        pytest.skip(f"not run: {block.not_run}")
    if "split_fashion_mnist(" in block.code and not fashion_mnist_files_present():
        pytest.skip("needs the Fashion-MNIST files (apt-get install dataset-fashion-mnist)")
    runner = run_python if RUNNABLE[block.lang] == "python" else run_bash
    check_outputs(block, runner(block, tmp_path))


def test_blocks_are_found_and_marked_right():
    assert len(RUN) >= 20
    pages = {block.page for block in RUN}
    assert ROOT / "README.md" in pages and (ROOT / "docs" / "migrating-from-avalanche.md") in pages
    for page in PAGES:
        lines = page.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            if NOT_RUN.match(line.strip()):  # a marker stands right before a runnable block
                assert i + 1 < len(lines) and FENCE.match(lines[i + 1]), \
                    f"{page.relative_to(ROOT)}:{i + 1}: not-run marker without a block under it"
                assert FENCE.match(lines[i + 1])["lang"] in RUNNABLE


def test_output_comments_are_read():
    block = Block(ROOT / "README.md", 1, "python", "x = 1  # one\nprint(x)  # 1\nprint(2)\n# 2\n", None)
    assert expected_outputs(block) == ["1", "2"]
    check_outputs(block, "1\n2\n")
    with pytest.raises(AssertionError, match="the output comment '2' is not what the block printed"):
        check_outputs(block, "1\n3\n")
    block.code = "print((0.5, 0.25, 7))  # (0.5, ..., 7)\n"
    check_outputs(block, "(0.5, 0.25, 7)\n")


def test_readme_is_a_door():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 300  # it was 1,212 lines: the site is the house
    quick = [block.code.strip() for block in blocks_of(ROOT / "README.md") if block.lang == "bash"]
    setup = "python3 -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0 && pip install -e "
    assert setup + ". && clreplay run" in quick
    assert setup + '".[test]" && pytest' in quick
    for section in ("## How it is built", "## Adding a method"):
        assert section in readme
