"""Tests for rlcore.reproducibility: the book-wide seed and recorded claims."""

import json

import pytest

from rlcore.reproducibility import book_seed, check, cpu_kernels


def test_book_seed_reads_the_environment(monkeypatch):
    monkeypatch.delenv("RLCORE_SEED", raising=False)
    assert book_seed() == 0 and book_seed(default=7) == 7
    monkeypatch.setenv("RLCORE_SEED", " 3 ")
    assert book_seed() == 3
    monkeypatch.setenv("RLCORE_SEED", "")
    assert book_seed() == 0


@pytest.mark.parametrize("raw", ["x", "1.5", "-2"])
def test_bad_seed_names_the_variable(monkeypatch, raw):
    monkeypatch.setenv("RLCORE_SEED", raw)
    with pytest.raises(ValueError, match="RLCORE_SEED"):
        book_seed()


def test_check_passes_fails_and_records(tmp_path, monkeypatch):
    log = tmp_path / "claims.jsonl"
    monkeypatch.setenv("RLCORE_CLAIMS_LOG", str(log))
    monkeypatch.setenv("RLCORE_SEED", "4")
    monkeypatch.delenv("RLCORE_CLAIMS_MEASURE", raising=False)
    assert check("a", 2.0, above=1.0, below=3.0) == 2.0
    with pytest.raises(AssertionError, match="b: 0.5 is not > 1"):
        check("b", 0.5, above=1.0, note="why")
    with pytest.raises(AssertionError):
        check("c", 3.0, below=3.0)  # bounds are strict
    monkeypatch.setenv("RLCORE_CLAIMS_MEASURE", "1")
    assert check("d", 0.0, above=1.0) == 0.0  # measuring: recorded, not raised
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(r["name"], r["ok"], r["seed"]) for r in rows] == [("a", True, 4), ("b", False, 4), ("c", False, 4),
                                                               ("d", False, 4)]
    assert rows[0]["kernels"] == cpu_kernels() and rows[1]["note"] == "why"


def test_check_rejects_bad_input():
    with pytest.raises(ValueError, match="above= or below="):
        check("x", 1.0)
    with pytest.raises(ValueError, match="finite"):
        check("x", float("nan"), above=0.0)


def test_step_seed_is_distinct_per_step_and_rejects_bad_input():
    from rlcore.reproducibility import step_seed

    assert step_seed(0, 1) == 1 and step_seed(2, 5) == 2 * 1_000_003 + 5
    assert len({step_seed(s, t) for s in range(3) for t in range(1, 1000)}) == 3 * 999
    for seed, step in ((-1, 1), (0, -1), (1.5, 1), (True, 1)):
        with pytest.raises(ValueError, match="seed|step"):
            step_seed(seed, step)
