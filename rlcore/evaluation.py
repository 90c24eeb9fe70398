"""Held-out accuracy: the number every training chapter reports."""

from __future__ import annotations

from typing import Sequence

import torch

from .rollout import generate
from .tasks import Problem, verify_batch

__all__ = ["accuracy", "answer_table"]


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
