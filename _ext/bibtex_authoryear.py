"""Bibliography labels that match the in-text author-year citations.

With ``bibtex_reference_style: author_year`` a citation reads [Wang et al., 2016], but the
bibliography's own labels come from the formatting style's *label* style, numbers ([1],
[2], ...) for pybtex's ``plain``. This registers a pybtex label style ``authoryear``, and a
formatting style ``authoryear`` (``plain`` with that label style: entries sorted by author,
year and title; DOI, URL and arXiv fields shown as links), for
``bibtex_default_style: authoryear`` in ``_config.yml``.

The label is rendered with the very template sphinxcontrib-bibtex uses for a parenthetical
author-year citation (author names as its default ``PersonStyle`` writes them, then the
year), so the two cannot drift apart. Two works with the same label get "a", "b", ... after
the year, in bibliography order (the in-text citations would then differ; the book has no
such pair, and ``make browser-check`` compares the two).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator

from pybtex.plugin import register_plugin
from pybtex.style.formatting.plain import Style as PlainStyle
from pybtex.style.labels import BaseLabelStyle
from sphinx.application import Sphinx
from sphinxcontrib.bibtex.style.referencing import PersonStyle
from sphinxcontrib.bibtex.style.template import join, year

NAME = "authoryear"


class _ReferenceStyle:
    """What sphinxcontrib-bibtex's ``names`` template reads from its reference style."""

    person = PersonStyle()  # AuthorYearReferenceStyle's default


_AUTHOR_YEAR = join(sep=", ")[_ReferenceStyle.person.author_or_editor_or_title(full=False), year]


def author_year(entry) -> str:
    """An entry's in-text label, e.g. "Wang et al., 2016" (plain text)."""
    return _AUTHOR_YEAR.format_data({"entry": entry, "style": _ReferenceStyle}).render_as("text")


def disambiguate(labels: Iterable[str]) -> list[str]:
    """Append a, b, ... to labels that occur more than once, in order."""
    labels = list(labels)
    counts = Counter(labels)
    seen: defaultdict[str, int] = defaultdict(int)
    out = []
    for label in labels:
        if counts[label] > 1:
            out.append(label + "abcdefghijklmnopqrstuvwxyz"[seen[label]])
            seen[label] += 1
        else:
            out.append(label)
    return out


class AuthorYearLabelStyle(BaseLabelStyle):
    def format_labels(self, sorted_entries) -> Iterator[str]:
        yield from disambiguate(author_year(entry) for entry in sorted_entries)


class AuthorYearStyle(PlainStyle):
    default_label_style = NAME


register_plugin("pybtex.style.labels", NAME, AuthorYearLabelStyle)
register_plugin("pybtex.style.formatting", NAME, AuthorYearStyle)


def setup(app: Sphinx) -> dict:
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
