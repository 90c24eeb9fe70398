"""Checks on the book itself: the API page documents every public name, the notebooks are
committed clean, and the configuration has what the README promises."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import rlcore

ROOT = Path(__file__).resolve().parents[1]
API_PAGE = ROOT / "chapters" / "api.md"
NOTEBOOKS = sorted((ROOT / "chapters").glob("*.ipynb"))


def documented_names() -> set[str]:
    text = API_PAGE.read_text()
    return set(re.findall(r"\.\. auto(?:function|class|data):: rlcore\.(\w+)", text))


def test_every_public_name_is_documented():
    missing = sorted(set(rlcore.__all__) - documented_names())
    assert not missing, f"chapters/api.md does not document: {missing}"


def test_every_documented_name_exists():
    stale = sorted(name for name in documented_names() if not hasattr(rlcore, name))
    assert not stale, f"chapters/api.md documents names rlcore no longer has: {stale}"


def test_every_public_name_is_importable():
    for name in rlcore.__all__:
        assert getattr(rlcore, name) is not None


def test_toc_lists_only_existing_files():
    toc = (ROOT / "_toc.yml").read_text()
    for entry in re.findall(r"(?:root|file):\s*(\S+)", toc):
        candidates = [ROOT / f"{entry}{ext}" for ext in (".md", ".ipynb")]
        assert any(c.exists() for c in candidates), f"_toc.yml lists {entry}, which does not exist"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebooks_are_committed_without_outputs(path):
    nb = json.loads(path.read_text())
    dirty = [i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count"))]
    assert not dirty, f"{path.name}: cells {dirty} carry outputs; clear them (the book executes notebooks)"


def test_every_cited_key_is_in_the_bibliography():
    bib = (ROOT / "references.bib").read_text()
    keys = set(re.findall(r"@\w+\{([^,]+),", bib))
    sources = list((ROOT / "chapters").glob("*.md")) + NOTEBOOKS
    cited = set()
    for src in sources:
        for group in re.findall(r"\{cite[tp]?\}`([^`]+)`", src.read_text()):
            cited.update(k.strip() for k in group.split(","))
    assert cited <= keys, f"cited but not in references.bib: {sorted(cited - keys)}"


def test_every_rlcore_module_is_on_the_api_page():
    """Each public module (one with __all__) is autodocumented, so its names reach the reader."""
    import importlib
    import pkgutil

    text = API_PAGE.read_text()
    contract = set(rlcore.__all__)
    missing = []
    for info in pkgutil.iter_modules(rlcore.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"rlcore.{info.name}")
        names = set(getattr(module, "__all__", ()))
        if f".. automodule:: rlcore.{info.name}" in text:
            continue
        for name in sorted(names - contract):
            if f":: rlcore.{info.name}.{name}" not in text:
                missing.append(f"rlcore.{info.name}.{name}")
    assert not missing, f"chapters/api.md documents neither these names nor their modules: {missing}"


# --- reproducibility: claims, not trajectories (DESIGN.md) ------------------------------------

def _code(path: Path) -> str:
    cells = json.loads(path.read_text())["cells"]
    return "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")


CHAPTERS = [p for p in NOTEBOOKS if re.match(r"\d\d_", p.name)]


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_every_chapter_reads_the_book_seed(path):
    """Every random choice derives from RLCORE_SEED: the setup reads it, no literal seed is passed."""
    code = _code(path)
    assert "book_seed()" in code, f"{path.name}: call rlcore.reproducibility.book_seed() in the setup cell"
    calls = "\n".join(line for line in code.splitlines() if not line.lstrip().startswith("def "))  # not defaults
    literal = re.findall(r"(?:manual_seed\(|\bseed=)(\d+)\b", calls)
    assert not literal, f"{path.name}: literal seeds {literal}; derive them from SEED (e.g. seed=SEED + 1)"
    assert "1_000_003" not in code, f"{path.name}: a step's seed is rlcore.reproducibility.step_seed(seed, step)"


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_chapters_train_through_the_one_loop(path):
    """The training layer has one loop and the book's settings live in one module: a chapter that
    trains calls rlcore.train / rlcore.runs and reads its settings from rlcore.settings."""
    code = _code(path)
    for gone in ("rlcore.reinforce", "rlcore.grpo", "rlcore.ppo import", "rlcore.dpo import", "train_reinforce",
                 "train_grpo", "train_ppo", "train_dpo", "from rlcore.experiments import"):
        assert gone not in code, f"{path.name}: {gone} (use rlcore.train, rlcore.runs, rlcore.settings)"
    if "CHAPTER" in code:
        assert "from rlcore.settings import" in code, f"{path.name}: read the book's settings from rlcore.settings"


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_no_chapter_asserts_or_budgets_wall_clock_time(path):
    """Budgets are steps or answers; times are printed and plotted, never asserted."""
    code = _code(path)
    for line in code.splitlines():
        stripped = line.strip()
        if stripped.startswith(("assert", "check(")):
            assert not re.search(r"seconds|perf_counter|time\(\)|\bms\b|ms_per|_ms\b", stripped), (
                f"{path.name}: an assertion on wall-clock time: {stripped}")
    assert "max_seconds" not in code and "time_guard=" not in code, f"{path.name}: a wall-clock budget"


def test_the_robustness_sweep_measures_claims_the_chapters_check():
    """The chapters assert their random outcomes through check(), so the sweep can measure them."""
    names = [re.findall(r'check\(\s*f?"(ch\d+/[^"]+)"', _code(p)) for p in CHAPTERS]
    flat = [n for group in names for n in group]
    assert len(flat) >= 50
    assert len(set(flat)) == len(flat), "claim names must be unique book-wide"


# --- exercises: a solution that states a result runs it ---------------------------------------
#
# A solution is a gated block (``solution-start`` ... ``solution-end``, sphinx-exercise) shown as a
# dropdown, so its code cells are hidden until the reader opens it, and nbval executes them with the
# rest of the chapter. Its prose may quote a number only when that number is an input (it is in the
# exercise's statement) or a cell of the solution computes it: the number is a literal of the
# solution's code, asserted there or an argument it passes. Comments and strings do not count:
# ``print(x)  # 0.667`` checks nothing. (A result the cells print but do not assert is described
# in words, "the cell prints ...", not quoted: the reader's seed and processor give other digits.)

import io
import tokenize

_NUMBER = re.compile(r"(?<![\w.\\])(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?)(\s?%)?(?![\w])")


def _numbers(text: str, *, every: bool = False) -> dict[str, set[float]]:
    """The numbers quoted in a text, each with the values it may stand for (a percentage: either
    itself or its fraction). Without ``every``, only the ones that state a measurement: a decimal,
    a percentage or an integer of two digits or more (small integers count steps, items, chapters)."""
    found = {}
    for m in _NUMBER.finditer(text):
        literal, percent = m.group(1), m.group(2)
        value = float(literal.replace(",", ""))
        if not every and not percent and "." not in literal and value < 10:
            continue
        found[m.group(0).strip()] = {value, value / 100} if percent else {value}
    return found


def _code_numbers(code: str) -> set[float]:
    """The numeric literals of Python code; comments and strings are skipped by the tokenizer."""
    values = set()
    lines = "\n".join(line for line in code.splitlines() if not line.lstrip().startswith(("%", "!")))
    for tok in tokenize.generate_tokens(io.StringIO(lines).readline):
        if tok.type == tokenize.NUMBER:
            text = tok.string.replace("_", "").rstrip("jJ")
            value = float(int(text, 0)) if text[:2].lower() in ("0x", "0o", "0b") else float(text)
            values |= {value, -value}
    return values


def _prose(markdown: str) -> str:
    """Markdown without directive fences and options, roles (links, citations, glued values)
    and their targets, and inline math's LaTeX commands."""
    text = re.sub(r"^(`{3,}|~{3,}).*$|^:\w+:.*$", "", markdown, flags=re.M)
    text = re.sub(r"\{[\w:-]+\}`[^`]*`", "", text)
    return re.sub(r"\\[a-zA-Z]+", " ", text)


def exercises_and_solutions(path: Path) -> tuple[dict[str, str], list[dict]]:
    """A notebook's exercises (label -> statement) and its solutions, in order. A solution is a dict
    with label, gated, dropdown, prose (its markdown), code (its code cells, joined), cells."""
    cells = json.loads(path.read_text())["cells"]
    exercises, solutions, current = {}, [], None
    for cell in cells:
        text = "".join(cell["source"])
        if cell["cell_type"] == "markdown":
            for m in re.finditer(r"(`{3,})\{exercise\}[^\n]*\n(.*?)^\1", text, flags=re.S | re.M):
                label = re.search(r"^:label:\s*(\S+)", m.group(2), flags=re.M)
                exercises[label.group(1) if label else f"unlabelled {len(exercises)}"] = m.group(2)
            for m in re.finditer(r"(`{3,})\{solution\}\s*(\S+)[^\n]*\n(.*?)^\1(?!`)", text, flags=re.S | re.M):
                solutions.append(dict(label=m.group(2), gated=False, dropdown=":class: dropdown" in m.group(3),
                                      prose=m.group(3), code="", cells=0))
            start = re.search(r"(`{3,})\{solution-start\}\s*(\S+)[^\n]*\n(.*?)^\1", text, flags=re.S | re.M)
            if start:
                current = dict(label=start.group(2), gated=True, dropdown=":class: dropdown" in start.group(3),
                               prose=text[start.end():], code="", cells=0)
                solutions.append(current)
                continue
        if current is not None:
            if cell["cell_type"] == "markdown" and "{solution-end}" in text:
                current["prose"] += "\n" + text.split("{solution-end}")[0].rsplit("```", 1)[0]
                current = None
            elif cell["cell_type"] == "markdown":
                current["prose"] += "\n" + text
            else:
                current["code"] += "\n" + text
                current["cells"] += 1
    return exercises, solutions


_SOLVED = [(p, s) for p in CHAPTERS for s in exercises_and_solutions(p)[1]]


def test_every_exercise_has_one_solution():
    for path in CHAPTERS:
        exercises, solutions = exercises_and_solutions(path)
        labels = [s["label"] for s in solutions]
        assert sorted(labels) == sorted(exercises), f"{path.name}: exercises {sorted(exercises)}, solutions {labels}"


@pytest.mark.parametrize("path, solution", _SOLVED, ids=[s["label"] for _, s in _SOLVED])
def test_solutions_are_hidden_code_cells_that_run(path, solution):
    """No solution keeps its code in a fence nbval never runs: it is a gated dropdown whose code
    cells check what the solution states (an assert or a check())."""
    label = solution["label"]
    assert "```python" not in solution["prose"], f"{path.name}, {label}: code in a fence; make it a code cell"
    assert solution["gated"], f"{path.name}, {label}: use solution-start / solution-end around code cells"
    assert solution["dropdown"], f"{path.name}, {label}: a solution is hidden until opened (:class: dropdown)"
    assert solution["cells"] >= 1, f"{path.name}, {label}: no code cell computes what the solution states"
    assert re.search(r"^\s*(assert\b|check\()", solution["code"], flags=re.M), (
        f"{path.name}, {label}: the solution's cells assert nothing it states")


def unbacked_numbers(exercise: str, solution: dict) -> list[str]:
    """The numbers a solution's prose quotes that neither its exercise gives nor its code contains."""
    given = set().union(*_numbers(exercise, every=True).values())
    computed = _code_numbers(solution["code"]) if solution["code"] else set()
    quoted = _numbers(_prose(solution["prose"]))
    return sorted(text for text, values in quoted.items() if not values & (given | computed))


@pytest.mark.parametrize("path, solution", _SOLVED, ids=[s["label"] for _, s in _SOLVED])
def test_solutions_quote_only_numbers_a_cell_computes(path, solution):
    exercise = exercises_and_solutions(path)[0].get(solution["label"], "")
    unbacked = unbacked_numbers(exercise, solution)
    assert not unbacked, (f"{path.name}, {solution['label']}: the solution quotes {unbacked}, which neither the "
                          "exercise gives nor a cell of the solution asserts or passes (assert it, or say it in words)")


def test_the_solution_rules_catch_what_they_are_for(tmp_path):
    """The two rules fail on the defects they exist for: code in a fence, and a number that only a
    comment or a string backs."""
    def notebook(cells):
        path = tmp_path / "00_x.ipynb"
        path.write_text(json.dumps({"cells": [dict(cell_type=t, metadata={}, source=s) for t, s in cells]}))
        return exercises_and_solutions(path)

    exercise = "```{exercise}\n:label: x\nCompute the ratio for 40 and 80 tokens.\n```"
    start = "```{solution-start} x\n:class: dropdown\n```\nThe ratio is 0.667, and 1.333 for the other; 40/60."
    end = "```{solution-end}\n```"
    exercises, (fenced,) = notebook([("markdown", exercise),
                                     ("markdown", "````{solution} x\n:class: dropdown\n```python\nprint(1)\n```\n````")])
    assert not fenced["gated"] and "```python" in fenced["prose"]
    exercises, (commented,) = notebook([("markdown", exercise), ("markdown", start),
                                        ("code", 'r = 40 / 60\nprint(r, "1.333")  # 0.667'), ("markdown", end)])
    assert commented["gated"] and commented["dropdown"] and commented["cells"] == 1
    assert unbacked_numbers(exercises["x"], commented) == ["0.667", "1.333"]  # 60 is in the code
    exercises, (asserted,) = notebook([("markdown", exercise), ("markdown", start),
                                       ("code", "r = 40 / 60\nassert abs(r - 0.667) < 1e-3 and abs(2 * r - 1.333) < 1e-3"),
                                       ("markdown", end)])
    assert unbacked_numbers(exercises["x"], asserted) == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_markdown_cells_close_every_fence(path):
    """A markdown cell opens and closes its fences (```` ``` ```` / ``~~~``): a stray half of a code
    block renders as text (and makes the rest of the cell code)."""
    cells = json.loads(path.read_text())["cells"]
    for i, cell in enumerate(cells):
        if cell["cell_type"] != "markdown":
            continue
        text = "".join(cell["source"])
        fences = re.findall(r"^\s*(`{3,}|~{3,})", text, flags=re.M)
        assert len(fences) % 2 == 0, f"{path.name}, cell {i}: an unclosed fence in {text[:80]!r}"
        assert not re.match(r"(import |from \w+ import |print\()", text), (
            f"{path.name}, cell {i}: a markdown cell that is Python code: {text[:80]!r}")
