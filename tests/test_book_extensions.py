"""The book's small Sphinx extensions (_ext/) and the bibliography they render: equation
numbers per chapter, author-year bibliography labels, MathJax served from the book, one
copy of each inline script. `make book` and `make browser-check` check them end to end."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

# The book's build tools (requirements.txt), not the package's: make lowest, which installs
# only the package and its test extra, skips this file.
pytest.importorskip("sphinxcontrib.bibtex")
parse_string = pytest.importorskip("pybtex.database").parse_string
find_plugin = pytest.importorskip("pybtex.plugin").find_plugin
ConfigError = pytest.importorskip("sphinx.errors").ConfigError

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "_ext"))

import bibtex_authoryear  # noqa: E402
import chapter_equations  # noqa: E402
import inline_scripts_once  # noqa: E402
import offline_mathjax  # noqa: E402

# ------------------------------------------------------------------ chapter_equations


@pytest.mark.parametrize(
    ("docname", "chapter"),
    [
        ("book/04_aggregation", 4),
        ("book/13_common_bugs", 13),
        ("01_first", 1),
        ("book/intro", None),
        ("book/appendix_designs", None),
        ("book/bibliography", None),
        ("book_04/x", None),
    ],
)
def test_chapter_number(docname, chapter):
    assert chapter_equations.chapter_number(docname) == chapter


def _book_wide():
    """Sphinx's toc_fignumbers for an unnumbered toc: one count over the whole book."""
    return {
        "book/01_a": {"displaymath": {"eq-x": (1,), "eq-y": (2,)}},
        "book/04_b": {
            "displaymath": {"eq-late": (5,), "eq-early": (3,), "eq-mid": (4,)},
            "figure": {"fig-1": (7,)},
            "exercise": {"ex-1": (9,), "ex-2": (10,)},
        },
        "book/appendix": {"displaymath": {"eq-z": (6,)}},
        "book/intro": {},
    }


def test_renumber_per_chapter_keeps_order():
    numbers = _book_wide()
    changed = chapter_equations.renumber(numbers, ["displaymath", "exercise"])
    assert numbers["book/01_a"]["displaymath"] == {"eq-x": (1, 1), "eq-y": (1, 2)}
    assert numbers["book/04_b"]["displaymath"] == {
        "eq-early": (4, 1),
        "eq-mid": (4, 2),
        "eq-late": (4, 3),
    }
    assert numbers["book/04_b"]["exercise"] == {"ex-1": (4, 1), "ex-2": (4, 2)}
    assert numbers["book/04_b"]["figure"] == {"fig-1": (7,)}  # a type not listed: untouched
    assert numbers["book/appendix"]["displaymath"] == {"eq-z": (1,)}  # no NN_: (1), (2), ...
    assert changed == ["book/01_a", "book/04_b", "book/appendix"]


def test_renumber_twice_is_renumber_once():
    numbers = _book_wide()
    chapter_equations.renumber(numbers, ["displaymath"])
    once = {doc: {t: dict(n) for t, n in by_type.items()} for doc, by_type in numbers.items()}
    assert chapter_equations.renumber(numbers, ["displaymath"]) == []
    assert numbers == once


def test_renumber_is_off_without_math_numfig():
    app = SimpleNamespace(
        config=SimpleNamespace(numfig=True, math_numfig=False, chapter_numbered_types=["x"])
    )
    env = SimpleNamespace(toc_fignumbers=_book_wide())
    assert chapter_equations.on_env_get_updated(app, env) == []
    assert env.toc_fignumbers == _book_wide()


# ------------------------------------------------------------------ bibtex_authoryear

BIB = r"""
@article{one, author = {Huber, Peter J.}, title = {T}, journal = {J}, year = {1964}}
@article{two, author = {Kingma, Diederik P. and Ba, Jimmy}, title = {T}, journal = {J},
  year = {2015}}
@article{three, author = {Wang, Ziyu and Schaul, Tom and Hessel, Matteo}, title = {T},
  journal = {J}, year = {2016}}
@article{von, author = {van Hasselt, Hado}, title = {T}, journal = {J}, year = {2010}}
@article{twin1, author = {Huber, Peter J.}, title = {A}, journal = {J}, year = {1981}}
@article{twin2, author = {Huber, Peter J.}, title = {B}, journal = {J}, year = {1981}}
"""


def test_author_year_labels():
    entries = parse_string(BIB, "bibtex").entries
    labels = {key: bibtex_authoryear.author_year(entry) for key, entry in entries.items()}
    assert labels["one"] == "Huber, 1964"
    assert labels["two"] == "Kingma and Ba, 2015"
    assert labels["three"] == "Wang et al., 2016"
    assert labels["von"] == "van Hasselt, 2010"


def test_same_labels_get_letters():
    assert bibtex_authoryear.disambiguate(["A, 1981", "B, 1990", "A, 1981"]) == [
        "A, 1981a",
        "B, 1990",
        "A, 1981b",
    ]


def test_the_authoryear_style_labels_entries():
    style = find_plugin("pybtex.style.formatting", "authoryear")()
    entries = parse_string(BIB, "bibtex").entries
    formatted = {entry.key: entry.label for entry in style.format_entries(entries.values())}
    assert formatted["two"] == "Kingma and Ba, 2015"
    assert {formatted["twin1"], formatted["twin2"]} == {"Huber, 1981a", "Huber, 1981b"}


def _book_bibliography():
    return parse_string((ROOT / "book" / "references.bib").read_text(), "bibtex").entries


def test_book_labels_are_unique():
    # A doubled label would get a letter in the bibliography but not in the text.
    labels = [bibtex_authoryear.author_year(entry) for entry in _book_bibliography().values()]
    assert len(labels) == len(set(labels)), sorted(label for label in labels)


# Works with no DOI, URL or arXiv id that could be confirmed; every other entry has one.
NO_LINK = {
    "baird1993advantage": "a 1993 Wright Laboratory technical report",
    "thrun1993issues": "1993 Connectionist Models Summer School proceedings",
}


def test_book_entries_carry_a_doi_url_or_arxiv_id():
    for key, entry in _book_bibliography().items():
        has_link = {"doi", "url", "eprint"} & {field.lower() for field in entry.fields}
        if key in NO_LINK:
            assert not has_link, f"{key} has a link now: remove it from NO_LINK"
        else:
            assert has_link, f"{key}: add a doi, url or eprint (arXiv id), or list it in NO_LINK"


def test_book_bibliography_has_no_latex_commands_the_style_cannot_render():
    style = find_plugin("pybtex.style.formatting", "authoryear")()
    for entry in style.format_entries(_book_bibliography().values()):
        text = entry.text.render_as("text")
        assert not re.search(r"\\[A-Za-z]", text), f"{entry.key}: {text}"


# ------------------------------------------------------------------ offline_mathjax


@pytest.mark.parametrize(
    "path",
    [
        "https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js",
        "//cdn.example.org/mathjax.js",
        "/mathjax/tex-mml-chtml.js",
        "tex-mml-chtml.js",
        "other/tex-mml-chtml.js",
        "mathjax/es5/tex-mml-chtml.js",
    ],
)
def test_mathjax_path_must_be_local(path):
    with pytest.raises(ConfigError):
        offline_mathjax.component_name(path)


def test_mathjax_path_names_the_component():
    assert offline_mathjax.component_name("mathjax/tex-mml-chtml.js") == "tex-mml-chtml.js"


def test_this_book_serves_mathjax_from_itself():
    config = (ROOT / "_config.yml").read_text()
    (path,) = re.findall(r"^\s+mathjax_path:\s*(\S+)", config, re.M)
    component = offline_mathjax.component_name(path)
    assert (offline_mathjax.mathjax_es5_dir() / component).is_file()


def test_copy_mathjax_takes_the_component_and_what_it_loads(tmp_path):
    es5 = tmp_path / "static" / "mathjax" / "es5"
    for name in ("startup.js", "tex-mml-chtml.js", "tex-svg-full.js"):
        (es5 / name).parent.mkdir(parents=True, exist_ok=True)
        (es5 / name).write_text("//")
    (es5 / "output" / "chtml" / "fonts").mkdir(parents=True)
    (es5 / "output" / "chtml" / "fonts" / "f.woff").write_text("")
    (es5 / "input" / "tex" / "extensions").mkdir(parents=True)
    (es5.parent / "LICENSE").write_text("Apache")
    dest = tmp_path / "out" / "_static" / "mathjax"
    dest.mkdir(parents=True)
    (dest / "stale.js").write_text("")
    offline_mathjax.copy_mathjax(es5, "tex-mml-chtml.js", dest)
    copied = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    assert copied == ["LICENSE", "output/chtml/fonts/f.woff", "tex-mml-chtml.js"]
    with pytest.raises(ConfigError):
        offline_mathjax.copy_mathjax(es5, "tex-nope.js", dest)


# ------------------------------------------------------------------ inline_scripts_once


def _script(filename, body=None):
    return SimpleNamespace(filename=filename, attributes={"body": body} if body else {})


def test_inline_scripts_once():
    scripts = [
        _script("_static/a.js"),
        _script(None, "const X = 1"),
        _script("_static/b.js"),
        _script("", "const X = 1"),  # the registry's copy of the same inline script
        _script("", "let y = 2"),
        _script("_static/a.js"),  # a file: not this extension's business
    ]
    kept = inline_scripts_once.dedupe(scripts)
    assert [(s.filename, s.attributes.get("body")) for s in kept] == [
        ("_static/a.js", None),
        (None, "const X = 1"),
        ("_static/b.js", None),
        ("", "let y = 2"),
        ("_static/a.js", None),
    ]
