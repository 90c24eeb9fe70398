"""The arithmetic task and its verifier: the verifier reads only the blank, and never crashes."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlcore.tasks import MARKER, AdditionTask, Problem, parse_answer, verify, verify_batch


def test_problem_format_hand_computed():
    p = Problem(47, 85, 3)
    assert p.prompt == "047+085="
    assert p.answer == 132
    assert p.scratch == "2310"  # 0132 written ones-first
    assert p.target == "2310#132"


@pytest.mark.parametrize(
    "response, expected",
    [
        ("2310#132", 1.0),           # right
        ("#132", 1.0),               # no scratch work: still right, only the blank counts
        ("9999#132", 1.0),           # wrong scratch work is not graded
        ("2310#131", 0.0),           # wrong answer
        ("132", -0.1),               # nothing in the blank (no marker)
        ("2310#", -0.1),             # an empty blank
        ("", -0.1),
        ("1#2#132", 1.0),            # the last marker's blank counts
        ("#13 2", -0.1),             # malformed blank
        ("#+=", -0.1),
        ("# 132 ", 1.0),             # surrounding spaces are tolerated
    ],
    ids=["right", "no-scratch", "wrong-scratch", "wrong", "no-marker", "empty-blank", "empty",
         "last-marker", "malformed-space", "malformed-symbols", "spaces"],
)
def test_verify_reads_only_the_blank(response, expected):
    assert verify(response, 132) == expected


def test_penalty_is_configurable():
    assert verify("no answer", 5, no_answer_penalty=0.5) == -0.5
    assert verify("no answer", 5, no_answer_penalty=0.0) == 0.0


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(), max_size=40), st.integers(0, 2000))
def test_verify_never_crashes_and_returns_a_grade(text, answer):
    assert verify(text, answer) in (1.0, 0.0, -0.1)


def test_verify_non_string_is_no_answer():
    assert verify(None, 3) == -0.1  # type: ignore[arg-type]
    assert parse_answer(b"#3") is None  # type: ignore[arg-type]


def test_verify_batch_checks_lengths():
    with pytest.raises(ValueError, match="responses"):
        verify_batch(["#1"], [])


def test_heldout_is_fixed_and_disjoint_from_training():
    a, b = AdditionTask(), AdditionTask()
    assert [p.prompt for p in a.heldout] == [p.prompt for p in b.heldout]
    assert len({p.prompt for p in a.heldout}) == len(a.heldout) == 500
    held = {p.prompt for p in a.heldout}
    train = a.sample(20000, random.Random(0))
    assert not held & {p.prompt for p in train}


def test_training_stream_is_seeded():
    t = AdditionTask()
    s1, s2, s3 = t.stream(8, seed=1), t.stream(8, seed=1), t.stream(8, seed=2)
    first = [p.prompt for p in next(s1)]
    assert first == [p.prompt for p in next(s2)]
    assert first != [p.prompt for p in next(s3)]


def test_bad_digits():
    with pytest.raises(ValueError, match="digits"):
        AdditionTask(digits=0)
    assert MARKER == "#"


# ---------------------------------------------------------------- the running-sum task (credit is hard)

def test_running_sum_problem_hand_computed():
    from rlcore.tasks import RunningSumProblem

    p = RunningSumProblem((37, 85, 12, 64, 29, 51))
    assert p.prompt == "37+85+12+64+29+51="
    assert p.totals == [37, 122, 134, 198, 227, 278] and p.answer == 278 and p.width == 3
    assert p.scratch == "730 221 431 891 722 872"  # each total ones-first, zero-padded to 3 digits
    assert p.target == "730 221 431 891 722 872#278"
    assert len(p.target) + 1 >= 24 + 1  # at least 24 tokens of work before the <eos>


@pytest.mark.parametrize("response, expected", [
    ("730 221 431 891 722 872#278", None),  # exactly right
    ("731 221 431 891 722 872#278", 2),  # a slip in the first total
    ("730 221 431 991 722 872#278", 12),  # the fourth total
    ("730 221 431 891 722 872#279", 26),  # only the copied answer
    ("730 221", 7),  # stopped early
    ("730 221 431 891 722 872#2780", 27),  # wrote on past the answer
    ("", 0),
])
def test_first_error_is_the_first_departure_from_the_unique_scratch(response, expected):
    from rlcore.tasks import RunningSumProblem

    assert RunningSumProblem((37, 85, 12, 64, 29, 51)).first_error(response) == expected


def test_running_sum_task_is_graded_on_the_blank_only_and_keeps_held_out_apart():
    import random

    from rlcore.tasks import RunningSumTask, verify

    task = RunningSumTask()
    assert len(task.heldout) == 500 and len({p.terms for p in task.heldout}) == 500
    held = {p.terms for p in task.heldout}
    batch = task.sample(2000, random.Random(0))
    assert not held & {p.terms for p in batch}
    assert [p.terms for p in next(task.stream(8, seed=3))] == [p.terms for p in next(task.stream(8, seed=3))]
    p = task.heldout[0]
    assert verify(p.target, p.answer) == 1.0
    wrong_work = "0" * len(p.scratch) + "#" + str(p.answer)  # the scratch is not graded
    assert verify(wrong_work, p.answer) == 1.0 and p.first_error(wrong_work) is not None
    assert task.max_new_tokens >= len(p.target) + 1


@pytest.mark.parametrize("kwargs, name", [(dict(terms=1), "terms"), (dict(digits=4), "digits"),
                                          (dict(terms=2, digits=1, heldout_size=60), "heldout_size")])
def test_running_sum_task_rejects_bad_settings(kwargs, name):
    from rlcore.tasks import RunningSumTask

    with pytest.raises(ValueError, match=name):
        RunningSumTask(**kwargs)
