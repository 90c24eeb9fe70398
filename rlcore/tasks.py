"""The tasks: addition problems (the story's) and running sums (where credit is hard), and a
verifier that reads only the answer in the blank.

A problem is two zero-padded numbers, ``"047+085="``. The expected response is scratch work,
then the answer after the marker ``#``::

    047+085=  2310#132

The scratch work (``2310``) is the sum written backwards, digit by digit from the ones column,
the way a fifth grader carries on paper. Nobody grades it: :func:`verify` looks only at what
follows the last ``#``, exactly like the story's machine. Supervised examples show the scratch
work so the model has somewhere to think; reinforcement learning is free to change it.

The second task, :class:`RunningSumTask`, adds six two-digit numbers and writes every running total
on the way (each one ones-first, like the addition scratch), ``27`` response tokens in all::

    37+85+12+64+29+51=  730 221 431 891 722 872#278

Its scratch carries state: each total is the previous one plus the next number, so one early slip
dooms the answer, and every step can be checked (:meth:`RunningSumProblem.first_error`), so the
first wrong token of any answer is known exactly. The verifier still reads only the blank.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

__all__ = [
    "Problem",
    "MARKER",
    "Task",
    "AdditionTask",
    "verify",
    "verify_batch",
    "parse_answer",
    "RIGHT",
    "is_right",
    "RunningSumProblem",
    "RunningSumTask",
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


class Task:
    """What a training loop needs of a task: a fixed held-out list ``heldout`` of problems (each with
    ``prompt``, ``answer`` and a supervised ``target``), :meth:`sample` and a seeded :meth:`stream`
    of training batches that never meets the held-out set, and a generation budget
    :attr:`max_new_tokens` that fits a full answer."""

    heldout: list
    #: The generation budget (tokens) a full answer needs, ``<eos>`` included.
    max_new_tokens: int = 12
    #: The characters that end a step of an answer's work; empty when the task has no steps.
    step_ends: tuple = ()

    def sample(self, n: int, rng: random.Random) -> list:  # pragma: no cover - abstract
        """``n`` training problems drawn with ``rng``, none of them in the held-out set."""
        raise NotImplementedError

    def stream(self, batch_size: int, seed: int) -> Iterable[list]:
        """An endless, seeded stream of training batches."""
        rng = random.Random(seed)
        while True:
            yield self.sample(batch_size, rng)


class AdditionTask(Task):
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



@dataclass(frozen=True)
class RunningSumProblem:
    """One running-sum problem: ``terms`` two-digit numbers (zero-padded) to add in order."""

    terms: tuple[int, ...]
    digits: int = 2

    @property
    def prompt(self) -> str:
        """The text the model is given, e.g. ``"37+85+12+64+29+51="``."""
        return "+".join(f"{t:0{self.digits}d}" for t in self.terms) + "="

    @property
    def answer(self) -> int:
        return sum(self.terms)

    @property
    def totals(self) -> list[int]:
        """The running totals, one per term (the last is the answer)."""
        out, total = [], 0
        for t in self.terms:
            total += t
            out.append(total)
        return out

    @property
    def width(self) -> int:
        """Digits of every written total (enough for the largest possible sum)."""
        return len(str(len(self.terms) * (10**self.digits - 1)))

    @property
    def scratch(self) -> str:
        """Every running total, ones first and zero-padded to :attr:`width`, separated by spaces
        (``"730 221 431 891 722 872"`` for 37, 122, 134, 198, 227, 278)."""
        return " ".join(f"{t:0{self.width}d}"[::-1] for t in self.totals)

    @property
    def target(self) -> str:
        """The full supervised response, scratch then marker then answer."""
        return f"{self.scratch}{MARKER}{self.answer}"

    def first_error(self, response: str) -> Optional[int]:
        """The index of the first character of ``response`` that departs from :attr:`target` (a
        wrong digit, a missing or extra character, or an early end), or ``None`` when the response
        is exactly the target. The scratch is fully determined by the problem, so the first
        departure is the first wrong step: the step verifier that an outcome-only method never sees.
        """
        target = self.target
        for i, (got, want) in enumerate(zip(response, target)):
            if got != want:
                return i
        return None if len(response) == len(target) else min(len(response), len(target))


class RunningSumTask(Task):
    """Running sums of ``terms`` numbers of ``digits`` digits, with a fixed held-out set.

    The same interface as :class:`AdditionTask` (``heldout``, :meth:`sample`, :meth:`Task.stream`), so
    every training loop and evaluation runs on it unchanged; answers need ``max_new_tokens`` of at
    least ``len(problem.target) + 1`` (the ``<eos>``): :attr:`max_new_tokens`.
    """

    def __init__(self, terms: int = 6, digits: int = 2, heldout_size: int = 500, heldout_seed: int = 4321):
        if not (isinstance(terms, int) and 2 <= terms <= 12):
            raise ValueError(f"terms must be an int in [2, 12], got {terms!r}")
        if not (isinstance(digits, int) and 1 <= digits <= 3):
            raise ValueError(f"digits must be an int in [1, 3], got {digits!r}")
        if heldout_size > (10**digits) ** terms // 2:
            raise ValueError(f"heldout_size={heldout_size} is too large for {terms} terms of {digits} digits")
        self.terms, self.digits, self.high = terms, digits, 10**digits
        self.step_ends = (" ", "#")  # a running total ends at a space, the last one at the '#'
        rng = random.Random(heldout_seed)
        held: dict[tuple[int, ...], None] = {}
        while len(held) < heldout_size:
            held[tuple(rng.randrange(self.high) for _ in range(terms))] = None
        self._heldout_pairs = set(held)
        self.heldout = [RunningSumProblem(t, digits) for t in held]

    @property
    def max_new_tokens(self) -> int:
        """The generation budget a full answer needs, the target's length plus ``<eos>``, plus one."""
        return len(self.heldout[0].target) + 2

    def sample(self, n: int, rng: random.Random) -> list[RunningSumProblem]:
        """``n`` training problems from ``rng``, none of them in the held-out set."""
        out = []
        while len(out) < n:
            terms = tuple(rng.randrange(self.high) for _ in range(self.terms))
            if terms not in self._heldout_pairs:
                out.append(RunningSumProblem(terms, self.digits))
        return out
