"""Execute chapters in place, top to bottom, each in a fresh kernel.

    python scripts/execute_notebooks.py book/01_q_equals_v_plus_a.ipynb [more.ipynb ...]

This is how a chapter is stored: execution counts 1..n, outputs as a fresh kernel makes
them, which is what strict nbval compares against in CI. The kernel runs under the
book's reference numerics (``duel_tutorial.numerics.REFERENCE``, set by
``scripts/numerics.py``), whatever this process's environment, so stored outputs are the
ones CI reproduces on any x86-64 CPU. Prints each notebook's wall time and exits
non-zero if any cell fails or a notebook takes longer than --budget seconds (60 s: the
book's limit on a 2-core CPU).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from numerics import environment  # scripts/numerics.py


def execute(path: Path, timeout: int) -> float:
    nb = nbformat.read(path, as_version=4)
    resources = {"metadata": {"path": str(path.parent)}}  # run with the notebook's folder as cwd
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources=resources)
    start = time.perf_counter()
    client.execute(env=environment("reference"))  # passed on to the kernel's process
    elapsed = time.perf_counter() - start
    for cell in nb.cells:
        cell.metadata.pop("execution", None)  # per-cell timestamps would churn every diff
        if cell.cell_type == "code":
            cell.outputs = coalesce_streams(cell.outputs)
    nbformat.write(nb, path)
    return elapsed


def coalesce_streams(outputs: list) -> list:
    """Consecutive stdout (or stderr) outputs merged into one.

    How a cell's prints are split into messages depends on when the kernel flushes, so
    without this a re-execution can store the same text in a different number of pieces.
    """
    merged: list = []
    for out in outputs:
        last = merged[-1] if merged else None
        if (out.output_type == "stream" and last is not None
                and last.output_type == "stream" and last.name == out.name):
            last.text += out.text
        else:
            merged.append(out)
    return merged


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--budget", type=float, default=60.0, help="seconds allowed per notebook")
    parser.add_argument("--timeout", type=int, default=300, help="seconds allowed per cell")
    args = parser.parse_args()
    failed = False
    for path in args.notebooks:
        try:
            elapsed = execute(path, args.timeout)
        except Exception as error:  # report every notebook, then fail
            print(f"FAIL {path}: {type(error).__name__}: {str(error).splitlines()[-1:]}")
            failed = True
            continue
        over = elapsed > args.budget
        failed |= over
        print(f"{'SLOW' if over else 'ok  '} {path}  {elapsed:5.1f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
