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
