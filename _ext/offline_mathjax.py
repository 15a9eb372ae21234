"""Serve MathJax from the built book itself, so that math renders with no network.

Sphinx loads MathJax from ``mathjax_path``, a CDN address by default: a reader offline
(or behind a firewall) then sees raw LaTeX. ``_config.yml`` sets ``mathjax_path`` to a path
under ``_static/mathjax/``, and this extension copies MathJax 3 there at the end of each
HTML build, from the ``django-static-mathjax`` wheel that requirements.txt pins (the
official MathJax 3.2.2 ``es5`` components, packaged on PyPI). So ``make book`` needs PyPI
only, and nothing is fetched from a CDN, at build time or when a page is read.

Only the combined component that ``mathjax_path`` names is copied, with the folders that
MathJax loads on demand from beside it (TeX extensions, fonts, the accessibility and menu
components); the other combined components (~15 MB) are left out.
"""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path, PurePosixPath

from sphinx.application import Sphinx
from sphinx.errors import ConfigError, ExtensionError
from sphinx.util import logging

logger = logging.getLogger(__name__)

#: Where the copy goes, under the built book's ``_static`` folder.
STATIC_SUBDIR = "mathjax"
#: Folders of ``es5`` that a combined component loads from beside itself.
ON_DEMAND_DIRS = ("a11y", "adaptors", "input", "output", "sre", "ui")
INSTALL_HINT = (
    "MathJax is not installed: run `make install` "
    "(or `pip install -r requirements.txt`, which pins django-static-mathjax)"
)


def mathjax_es5_dir() -> Path:
    """The ``es5`` folder of the installed MathJax 3 distribution."""
    try:
        root = resources.files("mathjax")
    except ModuleNotFoundError as exc:
        raise ExtensionError(INSTALL_HINT) from exc
    es5 = Path(str(root)) / "static" / "mathjax" / "es5"
    if not (es5 / "startup.js").is_file():
        raise ExtensionError(f"{INSTALL_HINT}; no MathJax es5 components in {es5}")
    return es5


def component_name(mathjax_path: str) -> str:
    """The combined component that ``mathjax_path`` (``mathjax/NAME.js``) names.

    Raises ``ConfigError`` for a path that is not a local one under ``mathjax/``: a URL
    would make the book depend on the network again.
    """
    path = PurePosixPath(mathjax_path)
    if "://" in mathjax_path or mathjax_path.startswith("//") or path.is_absolute():
        raise ConfigError(
            f"mathjax_path is {mathjax_path!r}: offline_mathjax serves MathJax from the book "
            f"itself; set mathjax_path to {STATIC_SUBDIR}/tex-mml-chtml.js in _config.yml"
        )
    if len(path.parts) != 2 or path.parts[0] != STATIC_SUBDIR or path.suffix != ".js":
        raise ConfigError(
            f"mathjax_path is {mathjax_path!r}; expected {STATIC_SUBDIR}/<component>.js, "
            f"e.g. {STATIC_SUBDIR}/tex-mml-chtml.js"
        )
    return path.name


def copy_mathjax(es5: Path, component: str, dest: Path) -> None:
    """Copy ``component`` and the folders it loads from into ``dest`` (made afresh)."""
    if not (es5 / component).is_file():
        available = sorted(p.name for p in es5.glob("*.js"))
        raise ConfigError(f"MathJax has no component {component!r}; one of {available}")
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    shutil.copy2(es5 / component, dest / component)
    for name in ON_DEMAND_DIRS:
        if (es5 / name).is_dir():
            shutil.copytree(es5 / name, dest / name)
    licence = es5.parent / "LICENSE"
    if licence.is_file():
        shutil.copy2(licence, dest / "LICENSE")


def check_config(app: Sphinx) -> None:
    if app.builder.format != "html":
        return
    component_name(app.config.mathjax_path)
    mathjax_es5_dir()  # fail at the start of the build, not after writing every page


def on_build_finished(app: Sphinx, exception: Exception | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    dest = Path(app.outdir) / "_static" / STATIC_SUBDIR
    copy_mathjax(mathjax_es5_dir(), component_name(app.config.mathjax_path), dest)
    logger.info("offline_mathjax: MathJax copied into %s", dest)


def setup(app: Sphinx) -> dict:
    app.connect("builder-inited", check_config)
    app.connect("build-finished", on_build_finished)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
