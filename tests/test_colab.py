"""Checks that every chapter works for a reader outside this repository (on Colab) and reads well.

* The Colab launch button is configured, and the README links the book where _config.yml says
  it is published.
* Every chapter notebook starts with the cell that installs ``rlcore`` from the repository in
  _config.yml when it is not importable, tagged so the rendered book hides it; the package that
  cell installs (a wheel, not this editable checkout) carries the data files the chapters load.
* Reader polish: a "Runs in about ..." note under each chapter's title, one figure style (from
  ``rlcore.plotting``) everywhere, and a link wherever the text points back at another chapter.

These are static checks: no notebook is executed.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
NOTEBOOKS = sorted((ROOT / "chapters").glob("*.ipynb"))
IDS = [p.name for p in NOTEBOOKS]
HTML = ROOT / "_build" / "html"

REPO_URL = CONFIG["repository"]["url"].rstrip("/")
HIDE_TAG = "remove-cell"  # hides input and output in the rendered page (MyST-NB)


def install_cell(repo_url: str) -> str:
    """The first cell of every chapter, for a given repository URL."""
    return (
        "# Make this notebook self-sufficient (e.g. on Colab): install rlcore when it is missing.\n"
        "try:\n"
        "    import rlcore\n"
        "except ImportError:\n"
        f'    %pip install --quiet "git+{repo_url}"\n'
        "    import rlcore"
    )


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def markdown_paragraphs(nb: dict) -> list[str]:
    """Paragraphs of prose: markdown cells split at blank lines, code fences dropped."""
    paragraphs = []
    for cell in nb["cells"]:
        if cell["cell_type"] != "markdown":
            continue
        text = re.sub(r"^(`{3,}|~{3,})[^\n]*\n.*?^\1\s*$", "", source(cell), flags=re.S | re.M)
        paragraphs += [p for p in re.split(r"\n\s*\n", text) if p.strip()]
    return paragraphs


# --- publishing -------------------------------------------------------------------------------


def test_colab_launch_button_is_configured():
    launch = CONFIG.get("launch_buttons") or {}
    assert str(launch.get("colab_url", "")).startswith("https://colab.research.google.com"), (
        "_config.yml: launch_buttons.colab_url must be https://colab.research.google.com "
        "so every chapter has a 'launch on Colab' button")
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", REPO_URL), (
        f"_config.yml: repository.url must be a GitHub repository (Colab opens notebooks from "
        f"GitHub), got {REPO_URL!r}")
    assert CONFIG["repository"].get("branch"), "_config.yml: repository.branch is needed for launch links"


def test_readme_links_the_published_book():
    baseurl = CONFIG["html"]["baseurl"]
    readme = (ROOT / "README.md").read_text()
    assert f"<{baseurl}>" in readme or f"({baseurl})" in readme, (
        f"README.md should link the rendered book at html.baseurl from _config.yml: {baseurl}")


# --- the first cell ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_first_cell_installs_rlcore_when_missing(path):
    cells = load(path)["cells"]
    assert cells, f"{path.name} is empty"
    first = cells[0]
    expected = install_cell(REPO_URL)
    assert first["cell_type"] == "code", f"{path.name}: the first cell must be the install cell:\n{expected}"
    assert source(first).strip() == expected, (
        f"{path.name}: the first cell must be exactly (installing from repository.url in _config.yml):"
        f"\n{expected}\n--- found ---\n{source(first)}")
    tags = first.get("metadata", {}).get("tags", [])
    assert HIDE_TAG in tags, f"{path.name}: tag the first cell {HIDE_TAG!r} so the book hides it (tags: {tags})"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_install_cell_is_hidden_and_colab_button_shown_in_the_built_book(path):
    page = HTML / "chapters" / f"{path.stem}.html"
    if not page.exists():
        pytest.skip(f"{page.relative_to(ROOT)} is not built (make book)")
    html = page.read_text()
    assert "self-sufficient" not in html and "%pip install" not in html, (
        f"{page.relative_to(ROOT)} shows the install cell; it should be hidden by the {HIDE_TAG!r} tag")
    branch = CONFIG["repository"]["branch"]
    colab = f"colab.research.google.com/github/{REPO_URL.removeprefix('https://github.com/')}/blob/{branch}/chapters/{path.name}"
    assert colab in html, f"{page.relative_to(ROOT)} has no Colab launch link to {colab}"


def test_installed_package_carries_its_data_files(tmp_path):
    """Colab installs rlcore as a wheel from the repository, not as this editable checkout, so
    every file under rlcore/ that the chapters load (the fifth grader's weights, the tokenizer)
    must be in the wheel's package data."""
    if subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True).returncode:
        pytest.skip("pip is not available to build the wheel")
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "rlcore", src / "rlcore", ignore=shutil.ignore_patterns("__pycache__"))
    # Offline and fast with the setuptools already here; pip fetches one only when it is missing.
    isolation = [] if importlib.util.find_spec("setuptools") is None else ["--no-build-isolation"]
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", *isolation, "--quiet",
         str(src), "-w", str(tmp_path / "dist")],
        capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"building the rlcore wheel failed:\n{done.stderr[-2000:]}"
    (wheel,) = (tmp_path / "dist").glob("rlcore-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    wanted = sorted(p.relative_to(src).as_posix() for p in (src / "rlcore").rglob("*")
                    if p.is_file() and p.suffix not in (".pyc",))
    missing = [name for name in wanted if name not in shipped]
    if missing:
        pytest.fail(
            f"`pip install git+{REPO_URL}` (what the first cell does on Colab) leaves out {len(missing)} "
            f"files the chapters load: {missing[:8]}; list them in [tool.setuptools.package-data] in "
            "pyproject.toml (e.g. rlcore = [\"assets/**/*\"])", pytrace=False)


# --- reader polish ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_chapter_says_how_long_it_runs(path):
    cells = load(path)["cells"]
    second = cells[1] if len(cells) > 1 else {"cell_type": None, "source": ""}
    text = source(second)
    assert second["cell_type"] == "markdown" and text.lstrip().startswith("# "), (
        f"{path.name}: the second cell (after the hidden install cell) should open with the chapter title")
    assert re.search(r"Runs in about \d[\d.,]* (seconds?|minutes?|hours?) on a [^\n]*CPU", text), (
        f"{path.name}: under the title, say how long the notebook takes on a CPU, e.g. "
        "'*Runs in about 15 seconds on a 2-core laptop CPU.*'")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_figures_use_the_book_style(path):
    code = "\n".join(source(c) for c in load(path)["cells"] if c["cell_type"] == "code")
    if not re.search(r"\bmatplotlib\b|\bplt\.", code):
        pytest.skip(f"{path.name} makes no figures")
    assert re.search(r"\buse_book_style\(\s*\)", code), (
        f"{path.name} makes figures: call rlcore.plotting.use_book_style() before the first one, "
        "so every chapter's figures look alike")
    overrides = re.findall(r"plt\.style\.use\(|rcParams\s*(?:\[|\.update)|matplotlib\.rc\(|\bsns\.set", code)
    assert not overrides, (
        f"{path.name} changes the figure style itself ({overrides}); change rlcore/plotting.py instead")


def _toc_chapters() -> dict[int, str]:
    """Chapter number -> notebook stem, for chapter notebooks the book builds (in _toc.yml)."""
    toc = (ROOT / "_toc.yml").read_text()
    built = set(re.findall(r"(?:root|file):\s*chapters/(\S+)", toc))
    return {int(m.group(1)): p.stem for p in NOTEBOOKS
            if (m := re.match(r"(\d+)_", p.stem)) and p.stem in built}


BACK_REFERENCE = re.compile(
    r"\b(as we saw|we saw (?:in|on|that|how|earlier)|as (?:shown|seen|derived|measured) (?:in|earlier|before)"
    r"|(?:the )?(?:previous|last|earlier) chapter\b)", re.I)
CHAPTER_NUMBER = re.compile(r"\b[Cc]hapters? (\d+)(?:'s)?(?:\s*(?:to|and|-|–)\s*(\d+))?")
LINK = re.compile(r"\{(?:doc|ref|numref|eq)\}`")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_references_to_other_chapters_are_links(path):
    """Where the text points back ('as we saw', 'chapter 4's baseline'), the reader gets a link:
    a {doc} or {ref} in the same paragraph. Chapters not yet in _toc.yml cannot be linked and are
    not asked for."""
    chapters = _toc_chapters()
    this = int(m.group(1)) if (m := re.match(r"(\d+)_", path.stem)) else None
    problems = []
    for para in markdown_paragraphs(load(path)):
        lines = para.splitlines() if para.lstrip().startswith("|") else [para]  # a table: row by row
        for text in lines:
            snippet = " ".join(text.split())[:160]
            if "{doc}`intro`" in text:
                problems.append("a bare {doc}`intro` shows the whole book title as the link text; write "
                                f"{{doc}}`the introduction <intro>`: {snippet}")
            if BACK_REFERENCE.search(text) and not LINK.search(text):
                problems.append(f"no {{doc}}/{{ref}} link for {BACK_REFERENCE.search(text).group(0)!r}: {snippet}")
            for m in CHAPTER_NUMBER.finditer(text):
                lo = int(m.group(1))
                hi = int(m.group(2) or lo)
                for n in range(lo, hi + 1):
                    if n == this or n not in chapters:
                        continue
                    if f"{{doc}}`{chapters[n]}`" not in text and f"<{chapters[n]}>`" not in text:
                        problems.append(f"'chapter {n}' without {{doc}}`{chapters[n]}`: {snippet}")
    problems = sorted(set(problems))
    if problems:
        pytest.fail(f"{path.name}:\n  " + "\n  ".join(problems), pytrace=False)
