#!/usr/bin/env python3
"""The longest code lines of each chapter, for the chapters' editors.

    make code-lines                                   # every chapter, 3 longest lines each
    python scripts/code_line_lengths.py book/04_aggregation.ipynb --top 10
    python scripts/code_line_lengths.py --check       # exit 1 if a line is over --width

The rendered book shows about 77 columns of code in a 1280-px-wide window (89 at most, on
a wide screen); _static/code-cells.css wraps longer lines rather than hiding their end,
but a wrapped line of Python reads worse than a short one. This counts, per notebook, the
code-cell lines longer than --width and prints the longest, with the cell they are in
(numbered from 1 over all cells, as Jupyter shows them). It only reads the notebooks.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WIDTH = 77  # columns of code visible in a 1280-px-wide window


@dataclass(frozen=True)
class Line:
    length: int
    cell: int  # 1-based index over all cells
    text: str


def code_lines(notebook: dict) -> list[Line]:
    """Every line of every code cell, longest first (ties in notebook order)."""
    lines = []
    for index, cell in enumerate(notebook.get("cells", []), start=1):
        if cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        text = "".join(source) if isinstance(source, list) else source
        lines += [Line(len(line), index, line) for line in text.splitlines()]
    return sorted(lines, key=lambda line: -line.length)


def report(path: Path, width: int, top: int) -> tuple[str, int]:
    """A few lines about one notebook, and how many of its code lines are over width."""
    lines = code_lines(json.loads(path.read_text()))
    over = [line for line in lines if line.length > width]
    name = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    out = [f"{name}: {len(over)} code lines over {width} columns"]
    for line in lines[:top]:
        out.append(f"  {line.length:4d}  cell {line.cell:3d}: {line.text.strip()}")
    return "\n".join(out), len(over)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: book/*.ipynb")
    parser.add_argument("--width", type=int, default=WIDTH)
    parser.add_argument("--top", type=int, default=3, help="longest lines shown per notebook")
    parser.add_argument("--check", action="store_true", help="exit 1 if any line is over")
    args = parser.parse_args(argv)
    notebooks = args.notebooks or sorted((ROOT / "book").glob("*.ipynb"))
    total = 0
    for path in notebooks:
        text, over = report(path.resolve(), args.width, args.top)
        print(text)
        total += over
    print(f"{total} code lines over {args.width} columns in {len(notebooks)} notebooks")
    return 1 if args.check and total else 0


if __name__ == "__main__":
    sys.exit(main())
