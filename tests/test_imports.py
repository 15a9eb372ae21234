"""The package's import graph: no module imports one that imports it back (directly or
through others), counting imports inside functions too."""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "duel_tutorial"


def _imports(path: Path) -> set[str]:
    """The duel_tutorial modules a file imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("duel_tutorial."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names
                      if a.name.startswith("duel_tutorial.")}
    return found


def test_the_package_has_no_import_cycles():
    graph = {p.stem: _imports(p) for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    try:
        order = list(TopologicalSorter(graph).static_order())
    except CycleError as err:
        raise AssertionError(f"import cycle: {' -> '.join(err.args[1])}") from None
    assert order.index("model") < order.index("checkpoint") < order.index("train")
    assert order.index("envs") < order.index("evaluate") < order.index("train")
    assert order.index("targets") < order.index("learn") < order.index("train")
    assert order.index("checkpoint") < order.index("run") < order.index("train")
