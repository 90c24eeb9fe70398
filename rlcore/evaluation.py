"""Held-out accuracy: the number every training chapter reports."""

from __future__ import annotations

from typing import Callable, Mapping, Optional, Sequence

import torch

from .rollout import generate
from .tasks import Problem, verify_batch

__all__ = ["accuracy", "answer_table", "evaluate_and_stop", "pass_at_k", "right_counts"]


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


def pass_at_k(n, c, k: int):
    r"""The unbiased estimate of pass@k from ``n`` samples per problem of which ``c`` are right:

    .. math::

        \widehat{\text{pass@}k} = 1 - \binom{n - c}{k} \Big/ \binom{n}{k}
        = 1 - \prod_{i = n - c + 1}^{n} \Big(1 - \frac{k}{i}\Big),

    the probability that ``k`` of the ``n`` samples, drawn without replacement, include a right one;
    its mean over problems estimates the chance that ``k`` fresh samples solve a problem. The product
    form never forms the huge binomials.

    Args:
      n: ``[P]`` samples per problem (an int or an integer tensor), each at least ``k``.
      c: ``[P]`` right samples per problem, ``0 <= c <= n``.
      k: the number of attempts, ``1 <= k``.

    Returns:
      ``[P]`` float64 estimates (a 0-d tensor for scalar inputs).

    Reference: Chen et al., "Evaluating Large Language Models Trained on Code", 2021, eq. 1 and
    figure 3.
    """
    n_t = torch.as_tensor(n)
    c_t = torch.as_tensor(c)
    for name, x in (("n", n_t), ("c", c_t)):
        if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
            raise ValueError(f"{name} must hold integers, got dtype {x.dtype}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an int >= 1, got {k!r}")
    n_t, c_t = torch.broadcast_tensors(n_t, c_t)
    if bool((c_t < 0).any()) or bool((c_t > n_t).any()):
        raise ValueError("c must satisfy 0 <= c <= n for every problem")
    if bool((n_t < k).any()):
        raise ValueError(f"n must be at least k={k} for every problem, got min n = {int(n_t.min())}")
    n64, c64 = n_t.to(torch.float64), c_t.to(torch.float64)
    width = int(c_t.max()) if c_t.numel() else 0
    i = (n64 - c64)[..., None] + 1 + torch.arange(width, dtype=torch.float64)  # n-c+1, ..., n-c+width
    terms = torch.where(torch.arange(width) < c64[..., None], 1 - k / i, torch.ones((), dtype=torch.float64))
    fail = terms.clamp(min=0).prod(-1)  # C(n-c, k) / C(n, k): 0 once n - c < k
    return 1 - fail


@torch.no_grad()
def right_counts(model, tokenizer, problems: Sequence[Problem], n: int, *, max_new_tokens: int = 12,
                 temperature: float = 1.0, seed: int = 0, batch_size: int = 4096) -> torch.Tensor:
    """How many of ``n`` answers sampled to each problem the verifier marks right, ``[P]`` (int64):
    the counts :func:`pass_at_k` needs. The answers are sampled in batches of about ``batch_size``."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    problems = list(problems)
    rows = [p for p in problems for _ in range(n)]
    right = torch.zeros(len(rows), dtype=torch.long)
    per = max(1, batch_size // n) * n
    for b, start in enumerate(range(0, len(rows), per)):
        chunk = rows[start:start + per]
        ro = generate(model, tokenizer, [p.prompt for p in chunk], max_new_tokens=max_new_tokens,
                      temperature=temperature, seed=seed + b, compute_logp=False)
        right[start:start + len(chunk)] = torch.tensor([m == 1.0 for m in verify_batch(ro.texts, chunk)])
    return right.view(len(problems), n).sum(1)
