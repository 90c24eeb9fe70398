"""Open every page of the built book in a real browser (headless Chromium) and check what a
reader sees: the math typeset by MathJax (no raw TeX, no TeX errors), every figure loaded and not
blank, no traceback and no progress-bar or warning noise in cell outputs, and the hidden install
cell really hidden. A full-page screenshot of each page is saved to _build/screenshots/ for a
person to look at.

Needs the built book (``make book``; ``make test`` builds it right before this test), Debian's
``chromium`` (or set CHROMIUM=/path/to/chrome) and ``npm``, which fetches MathJax 3 once into
_build/browser/ (the pages load MathJax from a public CDN; the local server answers for it, see
tests/browser/bookserver.py). Without Chromium the test is skipped with a message saying so.

Run alone:  .venv/bin/python -m pytest tests/test_browser.py
"""

from __future__ import annotations

import html as htmllib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "_build"
HTML = Path(os.environ.get("BOOK_HTML", BUILD / "html"))  # the built book to check
SCREENSHOTS = BUILD / "screenshots"
WIDTH = int(os.environ.get("BROWSER_WIDTH", 1440))  # a laptop screen: the layout at its full width
WINDOW_BAR = 150  # pixels of the window that are not page (headless Chromium still has them)
MAX_HEIGHT = 40_000  # pixels; a longer page is cut off in its screenshot (the checks still see all)

_spec = importlib.util.spec_from_file_location("bookserver", Path(__file__).parent / "browser" / "bookserver.py")
bookserver = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bookserver)


def find_chromium() -> str | None:
    if os.environ.get("CHROMIUM"):
        return os.environ["CHROMIUM"]
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome"):
        if path := shutil.which(name):
            return path
    return None


CHROMIUM = find_chromium()


def book_pages() -> list[str]:
    """Every HTML page of the built book, relative to _build/html (index.html only redirects)."""
    if not HTML.is_dir():
        return []
    skip = ("_static", "_sources", "_images", "reports")
    return sorted(p.relative_to(HTML).as_posix() for p in HTML.rglob("*.html")
                  if p.relative_to(HTML).parts[0] not in skip and p.name != "index.html")


PAGES = book_pages()

pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason=(
        "Chromium is not installed, so the book was not checked in a browser: install it "
        "(Debian/Ubuntu: `apt-get install chromium`; `make test` does this when it runs as root) "
        "or point CHROMIUM at a Chrome/Chromium binary")),
    pytest.mark.skipif(not PAGES, reason="the book is not built: run `make book` (or `make test`)"),
]


@pytest.fixture(scope="module")
def server():
    try:
        mathjax = bookserver.fetch_mathjax(BUILD / "browser")
    except (RuntimeError, OSError, subprocess.SubprocessError) as err:
        pytest.skip(f"could not fetch MathJax for the local server ({err}); the math cannot be checked offline")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with bookserver.BookServer(HTML, mathjax_dir=mathjax) as srv:
        yield srv


def chromium(url: str, *, dump_dom: bool = False, screenshot: Path | None = None,
             height: int = 2000) -> str:
    """One headless Chromium run on ``url``: the DOM after scripts ran, and/or a screenshot."""
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        cmd = [
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--disable-extensions", "--mute-audio", "--hide-scrollbars",
            f"--user-data-dir={profile}",
            # Only the local server: anything else fails at once instead of waiting on a network.
            "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
            # Run the page's timers on virtual time, long enough for MathJax to typeset.
            "--virtual-time-budget=30000",
            f"--window-size={WIDTH},{height}", "--force-device-scale-factor=1",
        ]
        if screenshot is not None:
            cmd.append(f"--screenshot={screenshot}")
        if dump_dom:
            cmd.append("--dump-dom")
        done = subprocess.run(cmd + [url], capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise AssertionError(f"chromium failed on {url} (exit {done.returncode}):\n{done.stderr[-2000:]}")
    return done.stdout


def probe(dom: str) -> dict | None:
    """The report the injected probe script left in the page (see bookserver.PROBE_JS)."""
    m = re.search(r'<pre id="browser-probe"[^>]*>(.*?)</pre>', dom, re.S)
    return json.loads(htmllib.unescape(m.group(1))) if m else None


def blank_image(path: Path) -> bool:
    """True when every pixel has the same colour (an empty figure)."""
    from PIL import Image

    with Image.open(path) as im:
        extrema = im.convert("RGB").getextrema()
    return all(lo == hi for lo, hi in extrema)


# A cell that draws at top level (not inside a def): `fig, ax = plt.subplots(...)`, `plt.show()`.
FIGURE_CODE = re.compile(r"^(?:\w[\w, ()]*=\s*)?plt\.(?:subplots|figure|show|subplot_mosaic)\(", re.M)
NOISE = [
    (re.compile(r"\d+%\|.*\|\s*\d+/\d+|\bit/s\]|s/it\]"), "a progress bar"),
    (re.compile(r"\b\w*Warning\b[:\s]"), "a warning"),
]
_VISITS: dict[str, dict] = {}


@pytest.fixture
def visit(server):
    """Open a page once (its DOM after scripts, then a full-page screenshot); later tests reuse it."""

    def visit(page: str) -> dict:
        if page not in _VISITS:
            url = server.url + page
            report = probe(chromium(url, dump_dom=True))
            assert report is not None, (
                f"{page}: the page did not finish loading (or its scripts failed) within the virtual-time budget")
            shot = SCREENSHOTS / f"{Path(page).stem}.png"
            height = int(min(max(report["height"], 800), MAX_HEIGHT))
            chromium(url, screenshot=shot, height=height + WINDOW_BAR)
            report["screenshot"] = shot.relative_to(ROOT).as_posix()
            _VISITS[page] = report
        return _VISITS[page]

    return visit


def check(page: str, report: dict, problems: list[str]) -> None:
    problems = list(dict.fromkeys(problems))
    if problems:
        pytest.fail(f"{page} (see {report['screenshot']}):\n  " + "\n  ".join(problems), pytrace=False)


@pytest.mark.parametrize("page", PAGES)
def test_math_is_typeset(visit, page):
    """MathJax ran, typeset every formula, met no TeX error, and the parser left no raw $$."""
    report = visit(page)
    problems = []
    if report["math_elements"] and report.get("mathjax") is None:
        problems.append(f"MathJax did not load ({report.get('mathjax_error', 'no window.MathJax')})")
    if report["raw_math"]:
        problems.append(f"{len(report['raw_math'])} formulas not typeset, e.g. {report['raw_math'][:3]}")
    if report["math_elements"] and report["mjx_containers"] < report["math_elements"]:
        problems.append(f"only {report['mjx_containers']} of {report['math_elements']} formulas typeset")
    for err in report["tex_errors"]:
        problems.append(f"TeX error shown to the reader: {err}")
    for raw in report["raw_delimiters"]:
        problems.append(f"raw $$, \\( or \\[ in the text (math the parser missed): {raw!r}")
    check(page, report, problems)


@pytest.mark.parametrize("page", PAGES)
def test_equations_fit_the_column(visit, page):
    """A display equation wider than the text column hides its end behind a sideways scroll."""
    report = visit(page)
    check(page, report, [f"display equation wider than the text column in a {WIDTH}px window (the reader "
                         f"has to scroll sideways); break it over lines with aligned: {tex[:100]}"
                         for tex in report["wide_math"]])


@pytest.mark.parametrize("page", PAGES)
def test_figures_are_shown(visit, page):
    """Every image loads and has pixels, and every cell that draws a figure shows one."""
    report = visit(page)
    problems = []
    for img in report["images"]:
        if not img["loaded"]:
            problems.append(f"image did not load: {img['src']}")
        elif img["in_output"]:
            file = (HTML / page).parent / img["src"]
            if file.suffix == ".png" and file.exists() and blank_image(file):
                problems.append(f"figure is blank (one colour): {img['src']}")
    for cell in report["cells"]:
        if FIGURE_CODE.search(cell["input"]) and not cell["images"]:
            problems.append(f"a cell that draws shows no figure: {cell['input'][:100]!r}")
    check(page, report, problems)


@pytest.mark.parametrize("page", PAGES)
def test_cell_outputs_are_clean(visit, page):
    """No traceback in any output, no progress bars or warnings on stderr, install cell hidden."""
    report = visit(page)
    problems = []
    for cell in report["cells"]:
        for tb in cell["tracebacks"]:
            problems.append(f"traceback in a cell output: {tb[-300:]!r}")
        for pattern, what in NOISE:
            noisy = [err for err in cell["stderr"] if pattern.search(err)]
            if noisy:
                problems.append(f"{what} in the output of a cell ({len(noisy)} stderr blocks), "
                                f"first {noisy[0][:120]!r}, in the cell {cell['input'][:80]!r}")
        if "self-sufficient" in cell["input"] or "%pip install" in cell["input"]:
            problems.append("the install cell (tagged remove-cell) is visible")
    check(page, report, problems)
