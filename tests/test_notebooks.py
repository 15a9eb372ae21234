"""Structural checks on every chapter; nbval (run separately) checks the outputs.

nbval silently skips comparison for cells stored without outputs, so these tests make
sure every notebook is stored executed top to bottom with no errors, and that each
chapter keeps the book's arc (what to remember, an exercise with a solution,
references) and its Colab install cell.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "book").glob("*.ipynb"))


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def _source(cell: dict) -> str:
    src = cell["source"]
    return src if isinstance(src, str) else "".join(src)


def _repository_url() -> str:
    config = (ROOT / "_config.yml").read_text()
    match = re.search(r"^repository:\s*\n\s+url:\s*(\S+)", config, re.M)
    assert match, "_config.yml has no repository.url"
    return match.group(1)


def test_book_has_notebooks():
    assert NOTEBOOKS, "no chapters found in book/"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_executed_in_order(path):
    code = [c for c in _load(path)["cells"] if c["cell_type"] == "code"]
    counts = [c["execution_count"] for c in code]
    assert counts == list(range(1, len(code) + 1)), (
        f"{path.name}: execution counts {counts} are not 1..{len(code)}; "
        "run scripts/execute_notebooks.py on it"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_has_no_error_or_progress_bar_output(path):
    for i, cell in enumerate(_load(path)["cells"]):
        for out in cell.get("outputs", []):
            assert out["output_type"] != "error", f"{path.name} cell {i} stores an error"
            text = "".join(out.get("text", ""))
            assert not re.search(r"\d+it/s|it/s\]", text), (
                f"{path.name} cell {i} stores a progress bar"
            )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_first_cell_installs_the_package_on_colab_only(path):
    first = next(c for c in _load(path)["cells"] if c["cell_type"] == "code")
    src = _source(first)
    assert '"google.colab" in sys.modules' in src, (
        f"{path.name}: first code cell is not the Colab install"
    )
    assert f"git+{_repository_url()}" in src, f"{path.name}: install URL differs from _config.yml"
    assert first["outputs"] == [], (
        f"{path.name}: the install cell printed something outside Colab"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_chapter_keeps_the_books_arc(path):
    markdown = "\n".join(_source(c) for c in _load(path)["cells"] if c["cell_type"] == "markdown")
    assert re.search(r"^#+ What to remember", markdown, re.M | re.I), (
        f"{path.name}: no 'What to remember'"
    )
    assert "```{exercise}" in markdown or ":::{exercise}" in markdown, f"{path.name}: no exercise"
    assert "{solution}" in markdown, f"{path.name}: no solution"
    assert "{cite" in markdown, f"{path.name}: cites nothing"
    assert re.search(r"^#+ References", markdown, re.M), f"{path.name}: no References section"


def test_every_chapter_is_in_the_table_of_contents():
    toc = (ROOT / "_toc.yml").read_text()
    for path in NOTEBOOKS:
        assert f"book/{path.stem}" in toc, f"{path.name} is not listed in _toc.yml"


def test_every_citation_key_is_in_the_bibliography():
    bib = (ROOT / "book" / "references.bib").read_text()
    keys = set(re.findall(r"@\w+\{([^,]+),", bib))
    for path in NOTEBOOKS:
        text = path.read_text()
        for group in re.findall(r"\{cite(?::\w+)?\}`([^`]+)`", text):
            for key in group.split(","):
                assert key.strip() in keys, f"{path.name} cites unknown key {key.strip()!r}"
