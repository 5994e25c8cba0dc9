"""A griffe extension for the API reference: clreplay's docstrings, written for ``help()`` and
doctest in reStructuredText habits, rendered as Markdown.

- doctest runs (``>>>`` lines and their output) become ``pycon`` code blocks;
- ``Parameters`` / ``Example`` headings underlined with dashes become bold labels, and a
  parameter list's ``name: description`` lines a bulleted list;
- simple reST tables (``=====  ======`` borders) become Markdown tables;
- ``:class:`~a.b.C``` and the other roles become code spans, as does ````code````.

mkdocs.yml loads it: ``extensions: [tools/griffe_rst.py:RstDocstrings]``.
"""

from __future__ import annotations

import re
from typing import List

import griffe

ROLE = re.compile(r":(?:class|meth|func|mod|data|attr|exc|obj|ref):`(~?)([^`]+)`")
HEADING_RULE = re.compile(r"^-{3,}\s*$")
TABLE_RULE = re.compile(r"^=+( +=+)+\s*$")


def _inline(line: str) -> str:
    line = ROLE.sub(lambda m: f"`{m[2].split('.')[-1] if m[1] else m[2]}`", line)
    return re.sub(r"``([^`]+)``", r"`\1`", line)


def _table(lines: List[str]) -> List[str]:
    """A simple reST table (border, header, border, rows, border) as a Markdown table."""
    border = lines[0]
    spans, start = [], None
    for i, char in enumerate(border + " "):
        if char == "=" and start is None:
            start = i
        elif char != "=" and start is not None:
            spans.append((start, i))
            start = None
    spans[-1] = (spans[-1][0], max(len(line) for line in lines) + 1)
    rows: List[List[str]] = []
    for line in lines[1:]:
        if TABLE_RULE.match(line) or not line.strip():
            continue
        cells = [line[a:b].strip() for a, b in spans]
        if rows and not cells[0]:  # a continuation line
            rows[-1] = [f"{old} {new}".strip() for old, new in zip(rows[-1], cells)]
        else:
            rows.append(cells)
    out = ["| " + " | ".join(_inline(c) for c in rows[0]) + " |",
           "|" + " --- |" * len(spans)]
    out += ["| " + " | ".join(_inline(c).replace("|", "\\|") for c in row) + " |" for row in rows[1:]]
    return out


def convert(text: str) -> str:
    """The Markdown of a docstring."""
    lines, out, i = text.splitlines(), [], 0
    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith(">>>"):
            block = []
            while i < len(lines) and lines[i].strip():
                block.append(lines[i])
                i += 1
            out += ["```pycon", *block, "```"]
            continue
        if TABLE_RULE.match(line):
            block = [line]
            i += 1
            rules = 1
            while i < len(lines) and rules < 3:
                block.append(lines[i])
                rules += bool(TABLE_RULE.match(lines[i]))
                i += 1
            out += ["", *_table(block), ""]
            continue
        if i + 1 < len(lines) and line.strip() and HEADING_RULE.match(lines[i + 1]):
            title = line.strip()
            out.append(f"**{title}**")
            out.append("")
            i += 2
            if title in ("Parameters", "Attributes", "Returns", "Raises"):
                while i < len(lines) and lines[i].strip():
                    entry = lines[i]
                    if entry.startswith(" ") and out and out[-1].startswith("- "):
                        out[-1] += " " + _inline(entry.strip())
                    else:
                        name, sep, rest = entry.partition(": ")
                        out.append(f"- `{name.strip()}`: {_inline(rest)}" if sep else f"- {_inline(entry)}")
                    i += 1
            continue
        out.append(_inline(line))
        i += 1
    return "\n".join(out)


class RstDocstrings(griffe.Extension):
    """Rewrite every docstring of the loaded package (see the module's description)."""

    def on_package(self, *, pkg, **kwargs) -> None:
        seen = set()

        def visit(obj) -> None:
            if id(obj) in seen or obj.is_alias:
                return
            seen.add(id(obj))
            if obj.docstring is not None:
                obj.docstring.value = convert(obj.docstring.value)
            for member in obj.members.values():
                visit(member)

        visit(pkg)
