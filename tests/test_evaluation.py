"""Tests for rlcore.evaluation.evaluate_and_stop: when the training loops evaluate and stop.

(``accuracy`` and ``answer_table`` run the policy and are tested with it in test_policy.py.)
"""

import pytest

from rlcore.evaluation import evaluate_and_stop


class Bar:
    """Stands in for a tqdm bar: records what it is asked to show."""

    def __init__(self):
        self.shown = []

    def set_postfix(self, values):
        self.shown.append(dict(values))


def run(steps, eval_every, *, seconds_per_step=1.0, time_guard=None, stop_at_accuracy=None,
        accuracies=None):
    """Drive evaluate_and_stop the way a training loop does; return the evaluated steps and the last step."""
    calls, evaluated = [], []
    accuracies = accuracies or {}

    def evaluate():
        calls.append(step)
        return {"accuracy": accuracies.get(step, 0.0)}

    for step in range(1, steps + 1):
        entry = {"step": step}
        stop = evaluate_and_stop(entry, step=step, steps=steps, eval_every=eval_every,
                                 seconds=step * seconds_per_step, evaluate=evaluate,
                                 time_guard=time_guard, stop_at_accuracy=stop_at_accuracy)
        if "accuracy" in entry:
            evaluated.append(step)
        if stop:
            break
    assert calls == evaluated  # evaluate() runs exactly when the entry gets an accuracy
    return evaluated, step


def test_every_eval_every_steps_and_at_the_last():
    assert run(10, 3) == ([3, 6, 9, 10], 10)
    assert run(9, 3) == ([3, 6, 9], 9)  # the last step is not evaluated twice
    assert run(1, 5) == ([1], 1)


def test_time_is_a_guard_that_fails_loudly_never_a_budget():
    # within the guard the clock changes nothing: the same steps are evaluated
    assert run(10, 3, seconds_per_step=2.5, time_guard=30.0) == run(10, 3)
    # past it the run raises instead of quietly stopping early with a different result
    with pytest.raises(RuntimeError, match="slower than the book assumes"):
        run(100, 10, seconds_per_step=2.5, time_guard=6.0)


def test_reaching_the_target_accuracy_stops_at_that_evaluation():
    acc = {2: 0.5, 4: 0.91, 6: 0.99}
    assert run(10, 2, stop_at_accuracy=0.9, accuracies=acc) == ([2, 4], 4)
    # a target never reached changes nothing
    assert run(10, 2, stop_at_accuracy=0.999, accuracies=acc) == ([2, 4, 6, 8, 10], 10)
    # between evaluations the target is not checked (the loop has no new accuracy)
    assert run(7, 5, stop_at_accuracy=0.5, accuracies={5: 0.1, 7: 0.6}) == ([5, 7], 7)


def test_entry_is_updated_in_place_and_the_bar_shows_the_named_keys():
    bar, entry = Bar(), {"reward": 0.25}
    stop = evaluate_and_stop(entry, step=4, steps=10, eval_every=2, seconds=1.0, bar=bar,
                             evaluate=lambda: {"accuracy": 0.5, "margin": 1.0})
    assert not stop
    assert entry == {"reward": 0.25, "accuracy": 0.5, "margin": 1.0}
    assert bar.shown == [{"acc": "0.50", "reward": "0.25"}]
    # other labels, and a key the entry lacks shows as nan
    evaluate_and_stop({}, step=2, steps=10, eval_every=2, seconds=1.0, bar=bar,
                      evaluate=lambda: {"accuracy": 1.0}, show=(("acc", "accuracy"), ("margin", "margin")))
    assert bar.shown[-1] == {"acc": "1.00", "margin": "nan"}
    # not due: nothing evaluated, nothing shown
    entry = {}
    assert not evaluate_and_stop(entry, step=3, steps=10, eval_every=2, seconds=1.0, bar=bar,
                                 evaluate=lambda: pytest.fail("evaluated off schedule"))
    assert entry == {} and len(bar.shown) == 2


def test_the_accuracy_threshold_is_inclusive():
    assert evaluate_and_stop({}, step=2, steps=10, eval_every=2, seconds=0.0,
                             evaluate=lambda: {"accuracy": 0.9}, stop_at_accuracy=0.9)
