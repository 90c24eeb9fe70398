"""Bugs the field shipped (rlcore.pitfalls): every pitfall's check fails on the buggy version and
passes on rlcore's, so a test suite with these checks would have caught each one."""

from __future__ import annotations

import pytest
import torch

from rlcore.pitfalls import PITFALLS


@pytest.mark.parametrize("pitfall", PITFALLS, ids=[p.name for p in PITFALLS])
def test_the_check_catches_the_bug_and_passes_rlcore(pitfall):
    ok_buggy, measured_buggy = pitfall.check(pitfall.buggy)
    ok_right, measured_right = pitfall.check(pitfall.right)
    assert not ok_buggy, f"{pitfall.name}: the check did not catch the buggy version (measured {measured_buggy})"
    assert ok_right, f"{pitfall.name}: rlcore's version fails its check (measured {measured_right})"


def test_at_least_ten_pitfalls_each_with_a_report():
    assert len(PITFALLS) >= 10
    assert len({p.name for p in PITFALLS}) == len(PITFALLS)
    assert all(p.reported and p.what and p.buggy.__doc__.startswith("BUGGY") for p in PITFALLS)


def test_rlcores_own_functions_are_the_right_versions():
    """The right versions are rlcore's functions (or thin calls of them), not copies written for the test."""
    import inspect

    for p in PITFALLS:
        source = inspect.getsource(p.right)
        assert "BUGGY" not in source
    # and the buggy ones really differ from rlcore on a random batch where it matters
    from rlcore.pitfalls import group_advantages_right, group_advantages_wrong_axis

    r = torch.randint(0, 2, (16,), generator=torch.Generator().manual_seed(3)).double()
    assert not torch.allclose(group_advantages_wrong_axis(r, 4), group_advantages_right(r, 4))


def test_the_temperature_bug_goes_into_the_loop_and_comes_out_again():
    """Inside ``inject`` the loop scores its tokens at temperature 1 whatever the rollout's
    temperature; outside, and after an error inside, it scores them at the rollout's."""
    import rlcore.train as loop
    from rlcore.policy import load_policy
    from rlcore.rollout import generate, response_logits
    from rlcore.settings import make_task

    pitfall = next(p for p in PITFALLS if p.inject is not None)
    assert "temperature" in pitfall.name and [p.inject for p in PITFALLS].count(None) == len(PITFALLS) - 1
    model, tokenizer = load_policy()
    ro = generate(model, tokenizer, [p.prompt for p in make_task().heldout[:3]], temperature=0.5, seed=0,
                  compute_logp=False)
    with torch.no_grad():
        raw, scaled = response_logits(model, ro, temperature=1.0), response_logits(model, ro)
        assert torch.allclose(scaled, raw / 0.5)
        with pitfall.inject():
            assert torch.equal(loop.response_logits(model, ro), raw)
        assert torch.equal(loop.response_logits(model, ro), scaled)
        with pytest.raises(RuntimeError):
            with pitfall.inject():
                raise RuntimeError("a failing run")
        assert loop.response_logits is response_logits
