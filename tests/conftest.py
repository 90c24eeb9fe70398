"""Fixtures shared by the tests of the language-model layers."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models train fastest on one thread; restore the setting for the other test modules.
    A module opts in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def task():
    """The book's task (3-digit addition, 500 held-out problems)."""
    from rlcore.settings import make_task

    return make_task()


@pytest.fixture(scope="session")
def fifth_grader():
    """The shipped fifth grader and her tokenizer (copy the model before training it)."""
    from rlcore.policy import load_policy

    return load_policy()
