"""The task: addition problems, and a verifier that reads only the answer in the blank.

A problem is two zero-padded numbers, ``"047+085="``. The expected response is scratch work,
then the answer after the marker ``#``::

    047+085=  2310#132

The scratch work (``2310``) is the sum written backwards, digit by digit from the ones column,
the way a fifth grader carries on paper. Nobody grades it: :func:`verify` looks only at what
follows the last ``#``, exactly like the story's machine. Supervised examples show the scratch
work so the model has somewhere to think; reinforcement learning is free to change it.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

__all__ = [
    "Problem",
    "MARKER",
    "AdditionTask",
    "verify",
    "verify_batch",
    "parse_answer",
    "RIGHT",
    "is_right",
]

MARKER = "#"
_ANSWER = re.compile(r"\s*(-?\d+)\s*$")


@dataclass(frozen=True)
class Problem:
    """One addition problem ``a + b``."""

    a: int
    b: int
    digits: int

    @property
    def prompt(self) -> str:
        """The text the model is given, e.g. ``"047+085="``."""
        return f"{self.a:0{self.digits}d}+{self.b:0{self.digits}d}="

    @property
    def answer(self) -> int:
        return self.a + self.b

    @property
    def scratch(self) -> str:
        """The sum's digits, ones first, padded to ``digits + 1`` places (``"2310"`` for 132)."""
        return f"{self.answer:0{self.digits + 1}d}"[::-1]

    @property
    def target(self) -> str:
        """The full supervised response, scratch work then marker then answer (``"2310#132"``)."""
        return f"{self.scratch}{MARKER}{self.answer}"


def parse_answer(response: str) -> Optional[int]:
    """The integer written after the last marker, or ``None`` if the blank is empty or malformed."""
    if not isinstance(response, str) or MARKER not in response:
        return None
    match = _ANSWER.fullmatch(response.rsplit(MARKER, 1)[1])
    if match is None:
        return None
    try:
        return int(match.group(1))
    except ValueError:  # pragma: no cover - the regex admits only digits
        return None


def verify(response: str, answer: int, *, no_answer_penalty: float = 0.1) -> float:
    """Grade the blank only: 1.0 if the number after the last ``#`` equals ``answer``, 0.0 if it is
    another number, and ``-no_answer_penalty`` if no answer was written. Never raises on malformed
    text."""
    written = parse_answer(response)
    if written is None:
        return -float(no_answer_penalty)
    return RIGHT if written == answer else 0.0


#: The mark of a right answer. Every "right" in rlcore means a mark equal to it (:func:`is_right`).
RIGHT = 1.0


def is_right(marks):
    """Which marks say "right": ``marks == RIGHT``, elementwise (a tensor of marks, or one float).

    The one definition every loop, credit and statistic uses; the verifier's other marks (0 for a
    wrong number, ``-no_answer_penalty`` for an empty blank) are all "not right"."""
    return marks == RIGHT


def verify_batch(responses: Sequence[str], problems: Sequence[Problem], *,
                 no_answer_penalty: float = 0.1) -> list[float]:
    """:func:`verify` for each (response, problem) pair."""
    if len(responses) != len(problems):
        raise ValueError(f"responses ({len(responses)}) and problems ({len(problems)}) differ in length")
    return [verify(r, p.answer, no_answer_penalty=no_answer_penalty) for r, p in zip(responses, problems)]


class AdditionTask:
    """Addition of two ``digits``-digit numbers, with a fixed held-out set.

    The held-out problems are drawn once from ``heldout_seed`` and never appear in training
    batches; training problems are drawn from a seeded stream.

    Args:
      digits: digits per operand.
      heldout_size: number of held-out problems.
      heldout_seed: seed of the held-out set (fixed for the whole book).
    """

    def __init__(self, digits: int = 3, heldout_size: int = 500, heldout_seed: int = 1234):
        if not (isinstance(digits, int) and 1 <= digits <= 9):
            raise ValueError(f"digits must be an int in [1, 9], got {digits!r}")
        self.digits = digits
        self.high = 10**digits
        if heldout_size > self.high**2 // 2:
            raise ValueError(f"heldout_size={heldout_size} is too large for {digits}-digit problems")
        rng = random.Random(heldout_seed)
        held: dict[tuple[int, int], None] = {}
        while len(held) < heldout_size:
            held[(rng.randrange(self.high), rng.randrange(self.high))] = None
        self._heldout_pairs = set(held)
        self.heldout = [Problem(a, b, digits) for a, b in held]

    def sample(self, n: int, rng: random.Random) -> list[Problem]:
        """``n`` training problems from ``rng``, none of them in the held-out set."""
        out = []
        while len(out) < n:
            a, b = rng.randrange(self.high), rng.randrange(self.high)
            if (a, b) not in self._heldout_pairs:
                out.append(Problem(a, b, self.digits))
        return out

    def stream(self, batch_size: int, seed: int) -> Iterable[list[Problem]]:
        """An endless, seeded stream of training batches."""
        rng = random.Random(seed)
        while True:
            yield self.sample(batch_size, rng)
