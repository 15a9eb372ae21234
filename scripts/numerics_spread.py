"""Which stored outputs move under other floating-point numerics, and by how much.

    python scripts/numerics_spread.py book/*.ipynb                      # every setting
    python scripts/numerics_spread.py book/05_unidentifiability.ipynb --settings avx sse41
    python scripts/numerics_spread.py book/01_q_equals_v_plus_a.ipynb \\
        --probe "01=np.abs(_wrong[_top[2]]) - np.abs(_wrong[_top[3]])"

Runs each chapter, top to bottom in a fresh kernel, under each named setting of
``scripts/numerics.py`` (errors are recorded, not fatal), then prints, for every code
cell whose text output differs from the stored one under some setting, the stored lines
and each setting's lines that differ. A ``--probe`` adds a cell at the end of the chapters
whose name starts with its prefix and prints the expression under every setting, for a
quantity an assert checks but no cell prints. This is how a margin in an assert is chosen
wider than the spread across processors (CONTRIBUTING.md, "Floating point"); it is a
check a person runs, not part of ``make test``.
"""

from __future__ import annotations

import argparse
import difflib
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from numerics import PORTABILITY, SETTINGS, environment  # scripts/numerics.py

PROBE_TAG = "numerics-spread-probe"


def text_of(cell) -> list[str]:
    """A code cell's printed and displayed text, line by line (images left out)."""
    text = ""  # a print may arrive in several messages, split anywhere
    for out in cell.get("outputs", []):
        if out.output_type == "stream":
            text += out.text
        elif out.output_type in ("execute_result", "display_data"):
            text += "\n" + out.get("data", {}).get("text/plain", "") + "\n"
        elif out.output_type == "error":
            text += f"\n{out.ename}: {out.evalue}\n"
    return [line for line in text.splitlines() if line]


def run(path: Path, setting: str, probes: list[str], timeout: int
        ) -> tuple[list, list[int], float]:
    """The chapter's code cells' text after running it under ``setting``, the cells that
    raised, and the wall time."""
    nb = nbformat.read(path, as_version=4)
    for expr in probes:
        cell = nbformat.v4.new_code_cell(f"print(repr({expr}))")
        cell.metadata["tags"] = [PROBE_TAG]
        nb.cells.append(cell)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    client.execute(env=environment(setting))
    code = [c for c in nb.cells if c.cell_type == "code"]
    errors = [i for i, c in enumerate(code)
              if any(out.output_type == "error" for out in c.get("outputs", []))]
    return [text_of(c) for c in code], errors, time.perf_counter() - start


def report(path: Path, stored: list, results: dict[str, list], probes: list[str]) -> None:
    print(f"===== {path}")
    moved = False
    for i, lines in enumerate(stored):
        changes = {}
        for setting, cells in results.items():
            diff = [d for d in difflib.ndiff(lines, cells[i]) if d[:1] in "-+"]
            if diff:
                changes[setting] = diff
        if not changes:
            continue
        moved = True
        print(f"  cell {i}:")
        stored_lines = {d[2:] for diff in changes.values() for d in diff if d[0] == "-"}
        for line in sorted(stored_lines):
            print(f"    stored          {line}")
        for setting, diff in changes.items():
            for d in diff:
                if d[0] == "+":
                    print(f"    {setting:15s} {d[2:]}")
    for j, expr in enumerate(probes):
        print(f"  probe {expr}:")
        for setting, cells in results.items():
            print(f"    {setting:15s} {' '.join(cells[len(stored) + j])}")
    if not moved:
        print("  every stored output reproduced under every setting")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--settings", nargs="+", choices=sorted(SETTINGS),
                        default=[s for s in SETTINGS if s != "reference"],
                        help=f"default: every setting but reference ({', '.join(PORTABILITY)} "
                             "are make portability's)")
    parser.add_argument("--probe", action="append", default=[], metavar="PREFIX=EXPR",
                        help="print EXPR at the end of the chapters whose name starts with "
                             "PREFIX")
    parser.add_argument("--jobs", type=int, default=2, help="chapters run at once")
    parser.add_argument("--timeout", type=int, default=600, help="seconds allowed per cell")
    args = parser.parse_args()
    probes: dict[Path, list[str]] = {path: [] for path in args.notebooks}
    for item in args.probe:
        prefix, sep, expr = item.partition("=")
        if not sep or not expr:
            parser.error(f"--probe expects PREFIX=EXPR; got {item!r}")
        matched = [p for p in args.notebooks if p.name.startswith(prefix)]
        if not matched:
            parser.error(f"--probe {prefix!r} names none of the notebooks given")
        for path in matched:
            probes[path].append(expr)
    jobs = {}
    with ProcessPoolExecutor(args.jobs) as pool:
        for path in args.notebooks:
            for setting in args.settings:
                jobs[path, setting] = pool.submit(run, path, setting, probes[path],
                                                  args.timeout)
        failed = False
        for path in args.notebooks:
            stored = [text_of(c) for c in nbformat.read(path, as_version=4).cells
                      if c.cell_type == "code"]
            results = {}
            for setting in args.settings:
                cells, errors, elapsed = jobs[path, setting].result()
                results[setting] = cells
                failed |= bool(errors)
                print(f"{path.name} under {setting}: {elapsed:.0f} s"
                      + (f", errors in cells {errors}" if errors else ""), flush=True)
            report(path, stored, results, probes[path])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
