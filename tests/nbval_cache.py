"""A pytest plugin that lets ``make test`` and ``make book`` share one run of each notebook.

nbval executes every notebook in ``chapters/`` to test it. When a notebook passes, this plugin
stores the executed notebook (its cells' outputs) in the Jupyter Book execution cache
(``_build/.jupyter_cache``, the cache ``execute_notebooks: cache`` reads). The book build then
finds a cache entry whose code matches and renders those outputs instead of running the
notebook a second time. A notebook with any failing cell is not cached, so the book build runs
it again and fails on it too.

Enabled with ``-p tests.nbval_cache --nb-cache _build/.jupyter_cache`` (the Makefile does it).
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import pytest

_RUNS: dict[str, dict] = {}


def pytest_addoption(parser):
    parser.addoption("--nb-cache", default=None,
                     help="store notebooks that pass under nbval in this jupyter-cache folder")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    cell = getattr(item, "cell", None)
    if cell is None or not hasattr(item, "test_outputs") or report.when != "call":
        return
    run = _RUNS.setdefault(str(item.parent.fspath), {"nb": item.parent.nb, "start": time.time(),
                                                      "failed": False, "ran": 0})
    run["ran"] += 1
    run["end"] = time.time()
    if report.failed:
        run["failed"] = True
    # The executed cell's outputs, in nbformat's shape, and an execution count like Jupyter's.
    cell.outputs = list(item.test_outputs or [])
    cell.execution_count = run["ran"]


def pytest_sessionfinish(session, exitstatus):
    path = session.config.getoption("--nb-cache")
    if not path:
        return
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    cache = get_cache(path)
    for fspath, run in _RUNS.items():
        code_cells = [c for c in run["nb"].cells if c.cell_type == "code"]
        if run["failed"] or run["ran"] != len(code_cells):
            continue  # only a complete, passing run may stand in for the book's execution
        nb = copy.deepcopy(run["nb"])
        cache.cache_notebook_bundle(
            CacheBundleIn(nb, Path(fspath).resolve(), data={"execution_seconds": run["end"] - run["start"]}),
            check_validity=False,
            overwrite=True,
        )
