"""Write each inline <script> once per page.

sphinx-thebe adds its inline configuration (``const THEBE_JS_URL = ...``) with
``app.add_js_file(None, body=...)`` at ``env-before-read-docs``, after the HTML builder has
taken its script list from the registry; when the builder later rebuilds that list, the
registry's copy comes back with the filename ``""`` beside the builder's own copy (filename
``None``), so every page carries the script twice and the second ``const`` throws
"Identifier 'THEBE_JS_URL' has already been declared" in every reader's console
(sphinx-togglebutton's inline script is doubled the same way, harmlessly). This drops an
inline script whose body an earlier inline script on the page already has.
"""

from __future__ import annotations

from sphinx.application import Sphinx


def dedupe(scripts: list) -> list:
    """`scripts` without the inline ones (no file name) whose body came earlier."""
    seen: set[str] = set()
    kept = []
    for script in scripts:
        body = None if script.filename else dict(script.attributes).get("body")
        if body is not None:
            if body in seen:
                continue
            seen.add(body)
        kept.append(script)
    return kept


def on_html_page_context(app: Sphinx, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if scripts:
        # In place: the builder restores its own list after each page.
        scripts[:] = dedupe(scripts)


def setup(app: Sphinx) -> dict:
    app.connect("html-page-context", on_html_page_context, priority=900)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
