#!/usr/bin/env python3
"""Open every page of the built book in headless Chromium and check what a reader sees.

    make browser-check                      # builds the book, then runs this
    python scripts/browser_check.py [_build/html] [--screenshots _build/screenshots]

It fails, naming the page and the element, on:

- raw LaTeX left in the text once MathJax has run (\\( \\) \\[ \\] $$, \\begin{...}, or any
  other \\command outside code), and math that MathJax did not typeset;
- an image that does not load (naturalWidth 0);
- a link to a local page, file or anchor that does not exist;
- a console error, an uncaught exception, a local file that fails to load, and any request
  to another machine (the book must read offline: every page is served from 127.0.0.1 and
  nothing else is reachable);
- a chapter page (built from a .ipynb) without its Colab launch link to that notebook;
- an in-text author-year citation whose text differs from its bibliography label.

It saves a full-page screenshot (JPEG) of every page under --screenshots (a CI artifact).

The browser is Debian's chromium package (`apt-get install chromium`), driven by Playwright
for Python; no browser is downloaded. Set CHROMIUM to use another Chromium binary.

Everything but the browser session (finding raw LaTeX, reading a page's links, ids and
citations, checking them across the book) is plain functions, unit-tested in
tests/test_browser_check.py.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import os
import re
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urljoin, urlsplit

ROOT = Path(__file__).resolve().parent.parent
INSTALL_HINT = (
    "chromium not found: install it with `sudo apt-get install chromium` "
    "(or set CHROMIUM=/path/to/chromium)"
)
# Folders of the built book that hold no pages of their own.
NOT_PAGES = ("_static", "_sources", "_images")

# --------------------------------------------------------------------------- raw LaTeX

# What MathJax leaves behind when it did not typeset (or a source that escaped it): its
# delimiters, an environment, or any backslash command such as \frac or \url.
_RAW_LATEX = re.compile(r"\\[()\[\]]|\$\$|\\(?:begin|end)\{|\\[A-Za-z]{2,}")


def find_raw_latex(text: str) -> list[str]:
    """The raw-LaTeX fragments in a piece of visible (non-code) text, each with a little
    context; [] when there are none."""
    found = []
    for match in _RAW_LATEX.finditer(text):
        start, end = max(0, match.start() - 20), min(len(text), match.end() + 20)
        found.append(" ".join(text[start:end].split()))
    return found


# --------------------------------------------------------------------------- one page

_VOID = frozenset(
    "area base br col embed hr img input link meta param source track wbr".split()
)
# Tag -> the attributes whose value is a URL the reader's browser follows or loads.
_URL_ATTRS = {
    "a": ("href",),
    "link": ("href",),
    "img": ("src",),
    "script": ("src",),
    "source": ("src",),
    "iframe": ("src",),
}


@dataclass
class Page:
    """What the checks need from one HTML page."""

    ids: set[str] = field(default_factory=set)
    urls: list[tuple[str, str]] = field(default_factory=list)  # (tag, url) as written
    # In-text citations: (href, text) of each link inside a span.bibtex-citation.
    citations: list[tuple[str, str]] = field(default_factory=list)
    # Bibliography entries: id of the div.citation -> its label, brackets removed.
    labels: dict[str, str] = field(default_factory=dict)
    # Where a <meta http-equiv="refresh"> page sends the reader (the book's index.html).
    refresh: str | None = None


class _PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.page = Page()
        self._stack: list[tuple[str, set[str], str | None]] = []  # tag, classes, id
        self._capture: list[tuple[str, str, list[str], int]] = []  # kind, key, text, depth

    def _inside(self, tag: str, cls: str) -> str | None:
        """The id of the innermost open <tag class=cls>, '' if it has none, else None."""
        for open_tag, classes, ident in reversed(self._stack):
            if open_tag == tag and cls in classes:
                return ident or ""
        return None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = {k: (v or "") for k, v in attrs}
        if attr.get("id"):
            self.page.ids.add(attr["id"])
        if tag == "a" and attr.get("name"):
            self.page.ids.add(attr["name"])
        for name in _URL_ATTRS.get(tag, ()):
            if attr.get(name):
                self.page.urls.append((tag, attr[name]))
        if tag == "meta" and attr.get("http-equiv", "").lower() == "refresh":
            match = re.search(r"url=(.+)", attr.get("content", ""), re.IGNORECASE)
            if match:
                self.page.refresh = match.group(1).strip().strip("'\"")
                self.page.urls.append(("meta", self.page.refresh))
        classes = set(attr.get("class", "").split())
        if tag == "a" and self._inside("span", "bibtex-citation") is not None:
            self._capture.append(("citation", attr.get("href", ""), [], len(self._stack)))
        if tag == "span" and "label" in classes:
            entry = self._inside("div", "citation")
            if entry:
                self._capture.append(("label", entry, [], len(self._stack)))
        if tag not in _VOID:
            self._stack.append((tag, classes, attr.get("id")))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID and self._stack and self._stack[-1][0] == tag:
            self._stack.pop()

    def handle_endtag(self, tag: str) -> None:
        if tag in _VOID or not any(open_tag == tag for open_tag, _, _ in self._stack):
            return  # a stray end tag: ignore it rather than unwind the stack
        while self._stack:
            open_tag = self._stack.pop()[0]
            depth = len(self._stack)
            while self._capture and self._capture[-1][3] >= depth:
                kind, key, text, _ = self._capture.pop()
                value = " ".join("".join(text).split())
                if kind == "citation":
                    self.page.citations.append((key, value))
                else:
                    self.page.labels[key] = value.strip("[]")
            if open_tag == tag:
                break

    def handle_data(self, data: str) -> None:
        for _, _, text, _ in self._capture:
            text.append(data)


def parse_page(html: str) -> Page:
    parser = _PageParser()
    parser.feed(html)
    parser.close()
    return parser.page


# --------------------------------------------------------------------------- the book


def book_pages(html_dir: Path) -> list[str]:
    """Every HTML page of the built book, as a POSIX path relative to html_dir."""
    pages = []
    for path in sorted(html_dir.rglob("*.html")):
        rel = path.relative_to(html_dir)
        if rel.parts[0] not in NOT_PAGES:
            pages.append(rel.as_posix())
    return pages


def resolve_local(page: str, url: str) -> tuple[str, str] | None:
    """(path, fragment) that a URL on `page` points to inside the book, both relative and
    unquoted; None for a URL that leaves the book (a scheme, //host, mailto:, ...)."""
    parts = urlsplit(url)
    if parts.scheme or parts.netloc or url.startswith("//"):
        return None
    fragment = unquote(parts.fragment)
    if not parts.path:
        return page, fragment
    base = PurePosixPath(page).parent
    path = PurePosixPath(os.path.normpath(base / unquote(parts.path))).as_posix()
    if parts.path.endswith("/"):
        path = "index.html" if path == "." else f"{path}/index.html"
    return path, fragment


def check_links(pages: dict[str, Page], exists) -> list[str]:
    """Problems with the local links of `pages` (relative path -> Page): a target that
    `exists(path)` says is missing, or an anchor missing from the target page."""
    problems = []
    for name, page in pages.items():
        for tag, url in page.urls:
            target = resolve_local(name, url)
            if target is None:
                continue
            path, fragment = target
            if path.startswith("../"):
                problems.append(f"{name}: <{tag}> {url!r} points outside the book")
            elif path not in pages and not exists(path):
                problems.append(f"{name}: <{tag}> {url!r}: no such file {path}")
            elif fragment and path in pages and fragment not in pages[path].ids:
                problems.append(f"{name}: <{tag}> {url!r}: {path} has no anchor #{fragment}")
    return problems


_AUTHOR_YEAR = re.compile(r", (?:\d{4}[a-z]?|n\.d\.)$")


def check_citations(pages: dict[str, Page]) -> list[str]:
    """Parenthetical author-year citations ("Wang et al., 2016") whose text is not the
    label of the bibliography entry they link to."""
    problems = []
    for name, page in pages.items():
        for href, text in page.citations:
            if not _AUTHOR_YEAR.search(text):
                continue  # a textual or year-only citation: not the label's form
            target = resolve_local(name, href)
            if target is None or target[0] not in pages:
                continue  # check_links reports it
            path, fragment = target
            label = pages[path].labels.get(fragment)
            if label is None:
                problems.append(f"{name}: citation {text!r} links to {href}, not an entry")
            elif label != text:
                problems.append(f"{name}: citation {text!r} but the bibliography says {label!r}")
    return problems


def read_config(source_dir: Path) -> dict:
    import yaml  # here, not at the top: the unit tests of the rest run without PyYAML

    return yaml.safe_load((source_dir / "_config.yml").read_text())


def colab_url(config: dict, notebook: str) -> str:
    """The Colab launch link that sphinx-book-theme writes for `notebook` (a path relative
    to the book's root, e.g. book/04_aggregation.ipynb)."""
    repo = config["repository"]
    parts = urlsplit(repo["url"])
    slug = parts.path.strip("/").removesuffix(".git")
    colab = config["launch_buttons"]["colab_url"].rstrip("/")
    return f"{colab}/github/{slug}/blob/{repo.get('branch', 'main')}/{notebook}"


def check_colab_links(pages: dict[str, Page], source_dir: Path, config: dict) -> list[str]:
    """Each page built from a notebook links to that notebook on Colab."""
    problems = []
    for name, page in pages.items():
        notebook = str(PurePosixPath(name).with_suffix(".ipynb"))
        if not (source_dir / notebook).is_file():
            continue
        expected = colab_url(config, notebook)
        if not any(tag == "a" and url == expected for tag, url in page.urls):
            problems.append(f"{name}: no Colab launch link ({expected})")
    return problems


def static_checks(html_dir: Path, source_dir: Path) -> tuple[dict[str, Page], list[str]]:
    pages = {name: parse_page((html_dir / name).read_text()) for name in book_pages(html_dir)}
    problems = check_links(pages, lambda path: (html_dir / path).is_file())
    problems += check_citations(pages)
    problems += check_colab_links(pages, source_dir, read_config(source_dir))
    return pages, problems


# --------------------------------------------------------------------------- the browser


def find_chromium() -> str | None:
    """The Chromium binary to drive: $CHROMIUM, else Debian's chromium (its real binary,
    not the /usr/bin shell wrapper), else whatever `chromium` is on PATH."""
    candidates = [os.environ.get("CHROMIUM"), "/usr/lib/chromium/chromium"]
    candidates += [shutil.which(name) for name in ("chromium", "chromium-browser")]
    for candidate in candidates:
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args) -> None:
        pass


@contextlib.contextmanager
def serve(directory: Path) -> Iterator[str]:
    """Serve `directory` on 127.0.0.1 (a free port) for the duration; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


# Waits for MathJax's first typesetting; says whether the page has math and what became of it.
_WAIT_FOR_MATHJAX = """async () => {
  const math = document.querySelectorAll('.math').length;
  const mj = window.MathJax;
  if (!mj) return {math, state: 'absent'};
  for (let i = 0; i < 200 && !(mj.startup && mj.startup.promise); i++) {
    await new Promise(r => setTimeout(r, 50));
  }
  if (!(mj.startup && mj.startup.promise)) return {math, state: 'not loaded'};
  await mj.startup.promise;
  return {math, state: 'typeset'};
}"""

# Math elements MathJax left untypeset, with the text a reader sees instead.
_UNTYPESET_MATH = """() => Array.from(document.querySelectorAll('.math'))
  .filter(el => !el.querySelector('mjx-container'))
  .map(el => ({text: el.textContent.trim().slice(0, 80), where: where(el)}))"""

# Text nodes outside code that hold a backslash or $$, with where they are.
_SUSPECT_TEXT = """() => {
  const skip = 'script, style, noscript, template, pre, code, kbd, samp, textarea, '
    + 'mjx-container, mjx-assistive-mml, svg, math';
  const found = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const el = node.parentElement;
    if (!el || el.closest(skip)) continue;
    const text = node.textContent;
    if (/\\\\|\\$\\$/.test(text)) found.push({text, where: where(el)});
  }
  return found;
}"""

# Loads every image (lazy ones too) and returns those that did not load.
_BROKEN_IMAGES = """async () => {
  const images = Array.from(document.images);
  images.forEach(img => { img.loading = 'eager'; });
  await Promise.all(images.map(img => img.complete ? null : new Promise(done => {
    img.addEventListener('load', done, {once: true});
    img.addEventListener('error', done, {once: true});
    setTimeout(done, 10000);
  })));
  return images.filter(img => img.naturalWidth === 0)
    .map(img => ({src: img.getAttribute('src'), where: where(img)}));
}"""

# `where(el)`: the element and the nearest enclosing id, e.g. "p in #aggregation".
_WHERE = """window.where = el => {
  const anchor = el.closest('[id]');
  return el.tagName.toLowerCase() + (anchor ? ' in #' + anchor.id : '');
};"""


def browser_checks(
    html_dir: Path, pages: dict[str, Page], screenshots: Path | None, chromium: str
) -> list[str]:
    from playwright.sync_api import sync_playwright

    problems: list[str] = []
    with serve(html_dir) as base, sync_playwright() as pw:
        # /dev/shm is 64 MB in a Docker container (CI's): long pages would crash the tab.
        browser = pw.chromium.launch(
            executable_path=chromium, headless=True, args=["--disable-dev-shm-usage"]
        )
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.add_init_script(_WHERE)

        def only_this_machine(route) -> None:
            if route.request.url.startswith(base) or route.request.url.startswith("data:"):
                route.continue_()
            else:
                route.abort("blockedbyclient")

        context.route("**/*", only_this_machine)
        for name in pages:
            found: list[str] = []
            page = context.new_page()
            page.on(
                "console",
                lambda msg, found=found: found.append(f"console error: {msg.text}")
                if msg.type == "error" and "ERR_BLOCKED_BY_CLIENT" not in msg.text
                else None,
            )
            page.on("pageerror", lambda exc, found=found: found.append(f"uncaught: {exc}"))

            def on_request_failed(request, found=found) -> None:
                if request.url.startswith(base):
                    found.append(f"failed to load {request.url[len(base):]}")
                else:
                    found.append(f"requests {request.url} from the network")

            page.on("requestfailed", on_request_failed)
            page.on(
                "response",
                lambda response, found=found: found.append(
                    f"{response.status} for {response.url[len(base):]}"
                )
                if response.status >= 400 and response.url.startswith(base)
                else None,
            )
            page.goto(base + name, wait_until="load")
            if pages[name].refresh:  # check the page the reader lands on
                landing = urljoin(base + name, pages[name].refresh)
                page.wait_for_url(landing, wait_until="load")
            mathjax = page.evaluate(_WAIT_FOR_MATHJAX)
            if mathjax["math"] and mathjax["state"] != "typeset":
                found.append(f"{mathjax['math']} math elements, but MathJax is {mathjax['state']}")
            for item in page.evaluate(_UNTYPESET_MATH):
                found.append(f"math not typeset in {item['where']}: {item['text']!r}")
            for item in page.evaluate(_SUSPECT_TEXT):
                for fragment in find_raw_latex(item["text"]):
                    found.append(f"raw LaTeX in {item['where']}: {fragment!r}")
            for item in page.evaluate(_BROKEN_IMAGES):
                found.append(f"image does not load in {item['where']}: {item['src']}")
            if screenshots is not None:
                shot = screenshots / (name.removesuffix(".html").replace("/", "__") + ".jpg")
                # JPEG: a long chapter's full page encodes in half the time of a PNG.
                page.screenshot(path=str(shot), full_page=True, type="jpeg", quality=70)
            page.close()
            # Once each: \( and \) in one short text give the same fragment twice.
            problems += [f"{name}: {problem}" for problem in dict.fromkeys(found)]
        browser.close()
    return problems


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("html", nargs="?", default=str(ROOT / "_build" / "html"))
    parser.add_argument("--source", default=str(ROOT), help="the book's root (_config.yml)")
    parser.add_argument("--screenshots", help="save a full-page JPEG of every page here")
    args = parser.parse_args(argv)
    html_dir, source_dir = Path(args.html), Path(args.source)
    if not (html_dir / "index.html").is_file():
        print(f"no built book in {html_dir}: run `make book` first", file=sys.stderr)
        return 2
    chromium = find_chromium()
    if chromium is None:
        print(INSTALL_HINT, file=sys.stderr)
        return 2
    screenshots = None
    if args.screenshots:
        screenshots = Path(args.screenshots)
        shutil.rmtree(screenshots, ignore_errors=True)
        screenshots.mkdir(parents=True)

    start = time.monotonic()
    pages, problems = static_checks(html_dir, source_dir)
    problems += browser_checks(html_dir, pages, screenshots, chromium)
    for problem in problems:
        print(problem)
    seconds = time.monotonic() - start
    saved = f"; screenshots in {screenshots}" if screenshots else ""
    print(f"browser check: {len(pages)} pages in {seconds:.0f} s, {len(problems)} problems{saved}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
