"""The parts of scripts/browser_check.py that need no browser: finding raw LaTeX in text,
reading a page's links, anchors and citations, and checking them across a tiny book.
(`make browser-check` runs the whole check, Chromium included, on the real book.)"""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import browser_check as bc  # noqa: E402
import code_line_lengths as cl  # noqa: E402


@pytest.mark.parametrize(
    "text",
    [
        r"the value \(V(s)\) of",
        r"\[ Q = V + A \]",
        "$$Q = V + A$$",
        r"\begin{align} x \end{align}",
        r"see \url{https://example.org}",
        r"with \frac{1}{2} of it",
        r"\mathbb{E}[x]",
    ],
)
def test_raw_latex_is_found(text):
    assert bc.find_raw_latex(text)


@pytest.mark.parametrize(
    "text",
    ["costs $5, not $6", "a / b and C++", "Q = V + A", "x_1 and y^2", "", "100%"],
)
def test_plain_text_is_not_raw_latex(text):
    assert bc.find_raw_latex(text) == []


def test_raw_latex_fragment_has_context():
    fragments = bc.find_raw_latex("Its value is \\(V\\) here, as we saw." + " padding" * 5)
    assert len(fragments) == 2  # \( and \)
    assert "\\(" in fragments[0] and "value" in fragments[0]


PAGE = """<!DOCTYPE html>
<html><head>
<meta charset="utf-8"><link rel="stylesheet" href="../_static/a.css">
<script src="../_static/b.js"></script>
</head><body>
<section id="intro"><h1>Title<a class="headerlink" href="#intro">#</a></h1>
<p>Text <img src="../_images/x.png" alt="x"> and <a name="old-anchor"></a>
<span class="bibtex-citation" id="id1">[<a class="reference internal"
 href="bibliography.html#id2">Wang <em>et al.</em>, 2016</a>,
 <a class="reference internal" href="bibliography.html#id3">Huber, 1964</a>]</span>
</p></div>
<a href="https://example.org/x">out</a> <a href="mailto:a@b.c">mail</a>
<br/><hr></section>
</body></html>"""

BIBLIOGRAPHY = """<html><body><div class="citation-list">
<div class="citation" id="id2" role="doc-biblioentry">
<span class="label"><span class="fn-bracket">[</span>Wang et al., 2016<span
 class="fn-bracket">]</span></span><p>Ziyu Wang, ...</p></div>
<div class="citation" id="id3" role="doc-biblioentry">
<span class="label"><span class="fn-bracket">[</span>3<span class="fn-bracket">]</span></span>
<p>Peter J. Huber. ...</p></div>
</div></body></html>"""


def test_parse_page_reads_ids_urls_and_citations():
    page = bc.parse_page(PAGE)
    assert {"intro", "id1", "old-anchor"} <= page.ids
    assert ("img", "../_images/x.png") in page.urls
    assert ("link", "../_static/a.css") in page.urls
    assert ("script", "../_static/b.js") in page.urls
    assert ("a", "https://example.org/x") in page.urls
    # A stray </div> and void tags leave the structure intact: both citations are read.
    assert page.citations == [
        ("bibliography.html#id2", "Wang et al., 2016"),
        ("bibliography.html#id3", "Huber, 1964"),
    ]
    assert page.refresh is None


def test_parse_page_reads_bibliography_labels_and_refresh():
    assert bc.parse_page(BIBLIOGRAPHY).labels == {"id2": "Wang et al., 2016", "id3": "3"}
    page = bc.parse_page('<meta http-equiv="Refresh" content="0; url=book/intro.html" />')
    assert page.refresh == "book/intro.html"
    assert ("meta", "book/intro.html") in page.urls


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("#top", ("book/a.html", "top")),
        ("b.html#x%20y", ("book/b.html", "x y")),
        ("../_static/s.css?v=1", ("_static/s.css", "")),
        ("../", ("index.html", "")),
        ("https://example.org/", None),
        ("//cdn.example.org/x.js", None),
        ("mailto:a@b.c", None),
        ("javascript:void(0)", None),
    ],
)
def test_resolve_local(url, expected):
    assert bc.resolve_local("book/a.html", url) == expected


def _tiny_book(tmp_path: Path, page_a: str) -> Path:
    html = tmp_path / "html"
    (html / "book").mkdir(parents=True)
    (html / "_static").mkdir()
    (html / "_static" / "s.css").write_text("")
    (html / "_static" / "template.html").write_text("<a href='nowhere.html'>not a page</a>")
    (html / "index.html").write_text('<meta http-equiv="Refresh" content="0; url=book/a.html" />')
    (html / "book" / "a.html").write_text(page_a)
    (html / "book" / "b.html").write_text('<h1 id="there">B</h1>')
    return html


def _problems(html: Path) -> list[str]:
    pages = {name: bc.parse_page((html / name).read_text()) for name in bc.book_pages(html)}
    return bc.check_links(pages, lambda path: (html / path).is_file())


def test_book_pages_leave_out_static_files(tmp_path):
    html = _tiny_book(tmp_path, "")
    assert bc.book_pages(html) == ["book/a.html", "book/b.html", "index.html"]


def test_good_links_pass(tmp_path):
    page = """<p id="here"></p><a href="#here">x</a> <a href="b.html#there">y</a>
    <link href="../_static/s.css"> <a href="https://example.org/missing.html">z</a>"""
    assert _problems(_tiny_book(tmp_path, page)) == []


def test_broken_links_and_anchors_fail(tmp_path):
    page = """<a href="#nowhere">1</a> <a href="b.html#missing">2</a>
    <a href="c.html">3</a> <img src="../_images/gone.png"> <a href="../../up.html">4</a>"""
    problems = _problems(_tiny_book(tmp_path, page))
    assert len(problems) == 5, problems
    assert any("book/a.html has no anchor #nowhere" in p for p in problems)
    assert any("book/b.html has no anchor #missing" in p for p in problems)
    assert any("no such file book/c.html" in p for p in problems)
    assert any("no such file _images/gone.png" in p for p in problems)
    assert any("points outside the book" in p for p in problems)


def test_citations_must_match_bibliography_labels():
    bibliography = bc.parse_page(BIBLIOGRAPHY)
    pages = {"book/a.html": bc.parse_page(PAGE), "book/bibliography.html": bibliography}
    # Wang's label matches; Huber's entry is labelled [3]: one problem, naming it.
    (problem,) = bc.check_citations(pages)
    assert "'Huber, 1964'" in problem and "'3'" in problem
    textual = bc.parse_page(
        '<span class="bibtex-citation"><a href="bibliography.html#id3">Huber [1964]</a></span>'
    )
    assert bc.check_citations({"x.html": textual, "bibliography.html": bibliography}) == []


CONFIG = {
    "repository": {"url": "https://github.com/org/repo", "branch": "main"},
    "launch_buttons": {"colab_url": "https://colab.research.google.com"},
}


def test_colab_url():
    assert bc.colab_url(CONFIG, "book/04_x.ipynb") == (
        "https://colab.research.google.com/github/org/repo/blob/main/book/04_x.ipynb"
    )


def test_chapter_pages_need_their_colab_link(tmp_path):
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "01_a.ipynb").write_text("{}")
    (tmp_path / "book" / "02_b.ipynb").write_text("{}")
    good = f'<a href="{bc.colab_url(CONFIG, "book/01_a.ipynb")}">Colab</a>'
    wrong = f'<a href="{bc.colab_url(CONFIG, "book/01_a.ipynb")}">the other chapter</a>'
    pages = {
        "book/01_a.html": bc.parse_page(good),
        "book/02_b.html": bc.parse_page(wrong),
        "book/intro.html": bc.parse_page("<p>no notebook, no link needed</p>"),
    }
    (problem,) = bc.check_colab_links(pages, tmp_path, CONFIG)
    assert problem.startswith("book/02_b.html: no Colab launch link")


def test_colab_url_matches_this_books_config():
    pytest.importorskip("yaml")
    config = bc.read_config(ROOT)
    assert bc.colab_url(config, "book/x.ipynb").startswith(
        "https://colab.research.google.com/github/dueling-dqn-book/dueling-dqn-book/blob/main/"
    )


def test_find_chromium_honours_the_environment(tmp_path, monkeypatch):
    fake = tmp_path / "chromium"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("CHROMIUM", str(fake))
    assert bc.find_chromium() == str(fake)


def test_missing_chromium_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    html = _tiny_book(tmp_path, "")
    monkeypatch.setattr(bc, "find_chromium", lambda: None)
    assert bc.main([str(html), "--source", str(ROOT)]) == 2
    err = capsys.readouterr().err
    assert "sudo apt-get install chromium" in err and len(err.strip().splitlines()) == 1


def test_missing_book_says_to_build_it(tmp_path, capsys):
    assert bc.main([str(tmp_path)]) == 2
    assert "make book" in capsys.readouterr().err


def test_code_line_lengths(tmp_path):
    notebook = {
        "cells": [
            {"cell_type": "markdown", "source": "x" * 200},
            {"cell_type": "code", "source": ["short\n", "y" * 90 + "\n"]},
            {"cell_type": "code", "source": "z" * 80},
        ]
    }
    lines = cl.code_lines(notebook)
    assert [(line.length, line.cell) for line in lines] == [(90, 2), (80, 3), (5, 2)]
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps(notebook))
    text, over = cl.report(path, width=77, top=1)
    assert over == 2 and "cell   2" in text and "z" not in text
    assert cl.main([str(path), "--check"]) == 1
    assert cl.main([str(path), "--check", "--width", "100"]) == 0



BROKEN_PAGE = """<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>
<section id="s"><p>Untypeset: \\(V(s)\\) and <span class="math">\\(A\\)</span>.</p>
<p><code>\\(in code: fine\\)</code></p>
<img src="missing.png" alt="gone">
<script>console.error("boom")</script>
<script>fetch("https://example.org/x").catch(() => {})</script>
</section></body></html>"""


def test_browser_finds_what_a_reader_would_see(tmp_path):
    """The whole browser pass on a two-page book: one page full of problems, one clean."""
    pytest.importorskip("playwright")
    chromium = bc.find_chromium()
    if chromium is None:
        pytest.skip(bc.INSTALL_HINT)
    html = tmp_path / "html"
    html.mkdir()
    (html / "bad.html").write_text(BROKEN_PAGE)
    (html / "good.html").write_text("<html><body><p id='x'>Q = V + A</p></body></html>")
    pages = {name: bc.parse_page((html / name).read_text()) for name in bc.book_pages(html)}
    shots = tmp_path / "shots"
    shots.mkdir()
    problems = bc.browser_checks(html, pages, shots, chromium)
    assert all(problem.startswith("bad.html: ") for problem in problems), problems
    text = "\n".join(problems)
    assert "raw LaTeX in p in #s: " in text and "\\(V(s)" in text
    assert "math not typeset in span in #s: '\\\\(A\\\\)'" in text
    assert "in code" not in text
    assert "image does not load in img in #s: missing.png" in text
    assert "console error: boom" in text
    assert "requests https://example.org/x from the network" in text
    assert sorted(p.name for p in shots.iterdir()) == ["bad.jpg", "good.jpg"]
