"""Held-out accuracy: the number every training chapter reports."""

from __future__ import annotations

from typing import Callable, Mapping, Optional, Sequence

import torch

from .rollout import generate
from .tasks import Problem, verify_batch

__all__ = ["accuracy", "answer_table", "evaluate_and_stop"]


@torch.no_grad()
def accuracy(model, tokenizer, problems: Sequence[Problem], *, batch_size: int = 500,
             max_new_tokens: int = 12, greedy: bool = True, seed: int = 0) -> float:
    """Fraction of ``problems`` answered right (greedy decoding by default), in [0, 1]."""
    right = 0
    for start in range(0, len(problems), batch_size):
        chunk = list(problems[start:start + batch_size])
        ro = generate(model, tokenizer, [p.prompt for p in chunk], max_new_tokens=max_new_tokens,
                      greedy=greedy, seed=seed + start, compute_logp=False)
        right += sum(r == 1.0 for r in verify_batch(ro.texts, chunk))
    return right / max(len(problems), 1)


@torch.no_grad()
def answer_table(model, tokenizer, problems: Sequence[Problem], *, greedy: bool = True,
                 max_new_tokens: int = 12, seed: int = 0) -> list[dict]:
    """One row per problem: prompt, the model's full response, the parsed reward, the right answer."""
    ro = generate(model, tokenizer, [p.prompt for p in problems], max_new_tokens=max_new_tokens,
                  greedy=greedy, seed=seed, compute_logp=False)
    rewards = verify_batch(ro.texts, problems)
    return [
        {"prompt": p.prompt, "response": text, "answer": p.answer, "reward": r}
        for p, text, r in zip(problems, ro.texts, rewards)
    ]


def evaluate_and_stop(
    entry: dict,
    *,
    step: int,
    steps: int,
    eval_every: int,
    seconds: float,
    evaluate: Callable[[], Mapping[str, float]],
    time_guard: Optional[float] = None,
    stop_at_accuracy: Optional[float] = None,
    bar=None,
    show: Sequence[tuple[str, str]] = (("acc", "accuracy"), ("reward", "reward")),
) -> bool:
    """The end of one training step, shared by every training loop: evaluate if it is time, and
    say whether the run is over.

    It is time to evaluate every ``eval_every`` steps and at the last step, ``steps``: budgets are
    counted in steps (and so in answers), never in seconds, so that a run does the same work on
    every machine. ``time_guard`` is only a guard: a run whose training has taken more than that
    many seconds raises, saying the machine is slower than the book assumes. ``evaluate()`` returns the
    held-out numbers (``"accuracy"`` at least), added to ``entry`` in place; a progress ``bar``
    (tqdm) then shows the entries named by ``show`` (``(label, key)`` pairs; NaN where ``entry``
    lacks the key). A run also ends as soon as an evaluation reaches ``stop_at_accuracy``.

    Returns:
      True if the run should stop after this step.

    Raises:
      RuntimeError: ``seconds`` exceeds ``time_guard``.
    """
    if time_guard is not None and seconds > time_guard:
        raise RuntimeError(
            f"this run took more than {time_guard:.0f} s of training by step {step} of {steps}: "
            "this machine is slower than the book assumes (budgets are in steps, so the result "
            "would be the same, only later); raise or drop time_guard to let it finish")
    last = step == steps
    if step % eval_every == 0 or last:
        entry.update(evaluate())
        if bar is not None:
            bar.set_postfix({label: f"{entry.get(key, float('nan')):.2f}" for label, key in show})
        if stop_at_accuracy is not None and entry["accuracy"] >= stop_at_accuracy:
            last = True
    return last
