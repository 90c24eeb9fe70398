"""One seed for the whole book, and claims checked (and recorded) the same way everywhere.

PyTorch's CPU kernels round differently on different processors (``ATEN_CPU_CAPABILITY=default``,
``avx2`` or ``avx512`` forces one family), and a reinforcement-learning run turns a last-bit
difference into a different trajectory. The book therefore fixes *what it can* (one seed, read
from ``RLCORE_SEED``; pinned library ranges) and asserts *claims*, not trajectories: every
stochastic assertion in a chapter goes through :func:`check`, with a threshold set from the
spread measured over several seeds and kernel families by ``python -m rlcore.robustness``.

Three environment variables:

* ``RLCORE_SEED`` (default 0): the book-wide seed, read by :func:`book_seed`. Every random choice
  in a chapter derives from it, and it is the command line's default ``--seed``.
* ``RLCORE_CLAIMS_LOG``: when set, :func:`check` appends one JSON line per claim to this file
  (the claim's name, its value, its bounds, the seed and the CPU kernel family).
* ``RLCORE_CLAIMS_MEASURE=1``: :func:`check` records but does not raise, so a sweep measures
  every claim of a chapter even where one of them fails.
"""

from __future__ import annotations

import json
import math
import os
from typing import Optional

import torch

__all__ = ["SEED_VARIABLE", "book_seed", "step_seed", "cpu_kernels", "check"]

#: The environment variable that holds the book-wide seed.
SEED_VARIABLE = "RLCORE_SEED"


def step_seed(seed: int, step: int) -> int:
    """The seed of one step of a run: ``seed * 1_000_003 + step``.

    Every training loop seeds its sampler (and its minibatch shuffle) at step ``step`` with this
    number, so a step's answers depend only on the run's seed, the step and the weights, never on
    how many steps came before or will follow (a short run is the start of a long one). The prime
    multiplier keeps the steps of different seeds apart for any run shorter than a million steps.
    A chapter that repeats a step by hand calls this too.
    """
    for name, value in (("seed", seed), ("step", step)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a non-negative int, got {value!r}")
    return seed * 1_000_003 + step


def book_seed(default: int = 0) -> int:
    """The book-wide seed: ``RLCORE_SEED`` from the environment, or ``default`` when unset.

    Every chapter calls this once in its setup cell and derives every other seed from it
    (``seed + 1``, ``seed + 2``, ...), so a reader changes one number to see the whole book on
    other random draws. The numbers in the text change with it; the claims the cells assert do not.

    Raises:
      ValueError: ``RLCORE_SEED`` is set but is not a non-negative integer.
    """
    raw = os.environ.get(SEED_VARIABLE, "").strip()
    if raw == "":
        return int(default)
    try:
        seed = int(raw)
    except ValueError:
        raise ValueError(f"{SEED_VARIABLE} must be a non-negative integer, got {raw!r}") from None
    if seed < 0:
        raise ValueError(f"{SEED_VARIABLE} must be a non-negative integer, got {seed}")
    return seed


def cpu_kernels() -> str:
    """The CPU kernel family PyTorch uses here (``"DEFAULT"``, ``"AVX2"``, ``"AVX512"``, ...)."""
    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except Exception:  # pragma: no cover - very old torch
        return "unknown"


def check(name: str, value: float, *, above: Optional[float] = None, below: Optional[float] = None,
          note: str = "") -> float:
    """Assert ``above < value < below`` for a measured claim, and record it when asked to.

    The bounds are strict and either may be omitted. They are set from the spread of ``value``
    over seeds and CPU kernel families (``python -m rlcore.robustness``), with a margin, never
    from one run. ``name`` identifies the claim in that sweep's table (``"ch4/constant baseline
    variance ratio"``); ``note`` says in words what the claim is, and is the assertion's message.

    Returns:
      ``value`` as a float, so a cell can go on using it.

    Raises:
      ValueError: no bound given, or ``value`` is not a finite number.
      AssertionError: the claim does not hold (unless ``RLCORE_CLAIMS_MEASURE=1``).
    """
    if above is None and below is None:
        raise ValueError("check needs at least one of above= or below=")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"value of claim {name!r} must be finite, got {value}")
    ok = (above is None or value > above) and (below is None or value < below)
    log = os.environ.get("RLCORE_CLAIMS_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as f:
            f.write(json.dumps({"name": name, "value": value, "above": above, "below": below, "ok": ok,
                                "seed": book_seed(), "kernels": cpu_kernels(), "note": note}) + "\n")
    if not ok and os.environ.get("RLCORE_CLAIMS_MEASURE") != "1":
        bounds = " and ".join(s for s in (f"> {above:g}" if above is not None else "",
                                          f"< {below:g}" if below is not None else "") if s)
        raise AssertionError(f"{name}: {value:.4g} is not {bounds}" + (f" ({note})" if note else ""))
    return value
