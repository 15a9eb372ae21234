"""Number equations per chapter: (4.1), (4.2), ... in ``book/04_*``, not across the book.

With ``numfig`` on (Jupyter Book's default) Sphinx numbers every labelled equation in one
sequence over the whole book, because the table of contents is not ``numbered``: chapter 4
then shows equation (13) beside "the paper's equation (7)". This extension renumbers them
within each document and puts the chapter's number in front, taken from the file name
(``book/04_aggregation`` is chapter 4). A document whose name has no ``NN_`` prefix (the
introduction, an appendix) numbers its equations (1), (2), ... The equation labels, and the
``{eq}`` references to them, both read these numbers, so they always agree.

The same applies to every numbered type listed in ``chapter_numbered_types`` (the
equations, ``displaymath``, by default; ``_config.yml`` adds sphinx-exercise's
``exercise``, so chapter 4's exercises are Exercise 4.1, 4.2, ...).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment

_CHAPTER = re.compile(r"(?:^|/)(\d+)_[^/]*$")

Numbers = dict[str, tuple[int, ...]]


def chapter_number(docname: str) -> int | None:
    """The chapter a document is, from its ``NN_`` file-name prefix (None without one)."""
    match = _CHAPTER.search(docname)
    return int(match.group(1)) if match else None


def renumber(
    fignumbers: Mapping[str, dict[str, Numbers]], types: Iterable[str]
) -> list[str]:
    """Renumber ``types`` in place, per document; return the documents that changed.

    ``fignumbers`` is Sphinx's ``env.toc_fignumbers``: docname -> type -> node id -> number
    tuple. Within a document the existing order is kept (Sphinx assigns numbers in document
    order), so applying this twice gives the same numbers as applying it once.
    """
    changed = []
    for docname, by_type in fignumbers.items():
        prefix = chapter_number(docname)
        head = () if prefix is None else (prefix,)
        for figtype in types:
            numbers = by_type.get(figtype)
            if not numbers:
                continue
            ordered = sorted(numbers, key=numbers.__getitem__)
            new = {node_id: (*head, i) for i, node_id in enumerate(ordered, start=1)}
            if new != numbers:
                numbers.clear()
                numbers.update(new)
                changed.append(docname)
    return sorted(set(changed))


def on_env_get_updated(app: Sphinx, env: BuildEnvironment) -> list[str]:
    if not (app.config.numfig and app.config.math_numfig):
        return []
    return renumber(env.toc_fignumbers, app.config.chapter_numbered_types)


def setup(app: Sphinx) -> dict:
    app.add_config_value("chapter_numbered_types", ["displaymath"], "env", [list])
    # After Sphinx's TocTreeCollector (priority 500) has assigned the book-wide numbers.
    app.connect("env-get-updated", on_env_get_updated, priority=900)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
