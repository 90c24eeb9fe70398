"""REINFORCE on the fifth grader: the plainest possible update from a right/wrong mark.

Each step samples one answer per problem, grades the blank, and takes a gradient step on

.. math::

    L(\\theta) = -\\frac{1}{B}\\sum_{b=1}^{B} w_b \\sum_{t} \\log \\pi_\\theta(y_{b,t} \\mid x_b, y_{b,<t}),

where the weight ``w_b`` of an answer is, depending on ``baseline``:

* ``"sign"`` (the story, chapter 1): +1 if right, −1 otherwise — raise the log-probability of
  what she wrote when it was right, lower it when it was wrong;
* ``"none"``: the raw reward (1 right, 0 wrong, −penalty for an empty blank);
* ``"batch"``: reward minus the batch's mean reward (a constant baseline, chapter 4);
* ``"rloo"``: reward minus the mean of the *other* answers to the same problem (needs
  ``group_size`` ≥ 2; :func:`rlcore.rloo_advantages`).

Every token of an answer is blamed or credited with the same ``w_b``: outcome-only credit.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Optional

import torch
from tqdm import tqdm

from ._checks import check_choice
from .advantages import rloo_advantages
from .evaluation import accuracy, evaluate_and_stop
from .masked import aggregate
from .rollout import generate, response_logprobs
from .tasks import AdditionTask, verify_batch

__all__ = ["ReinforceConfig", "train_reinforce", "BASELINES"]

BASELINES = ("sign", "none", "batch", "rloo")


@dataclass
class ReinforceConfig:
    steps: int = 200
    batch_size: int = 64  # problems per step
    group_size: int = 1  # answers per problem (rloo needs >= 2)
    lr: float = 1e-4
    baseline: str = "sign"
    temperature: float = 1.0
    max_new_tokens: int = 12
    no_answer_penalty: float = 0.1
    eval_every: int = 20
    eval_size: int = 500
    seed: int = 0


def train_reinforce(model, tokenizer, task: AdditionTask, config: ReinforceConfig = ReinforceConfig(),
                    *, progress: bool = True, time_guard: Optional[float] = None,
                    stop_at_accuracy: Optional[float] = None) -> dict:
    """Run REINFORCE in place on ``model``; return the training history.

    The history has one dict per evaluation: ``step``, ``samples`` (answers generated so far),
    ``seconds`` (wall time, evaluation excluded), ``accuracy`` (greedy, held-out) and
    ``reward`` (mean reward of the step's samples).
    """
    check_choice(config.baseline, "baseline", BASELINES)
    if config.baseline == "rloo" and config.group_size < 2:
        raise ValueError(f"group_size must be >= 2 for the rloo baseline, got {config.group_size}")
    heldout = task.heldout[: config.eval_size]
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    batches = task.stream(config.batch_size, seed=config.seed)
    torch.manual_seed(config.seed)

    def evaluate() -> dict:
        return {"accuracy": accuracy(model, tokenizer, heldout)}

    history = [{"step": 0, "samples": 0, "seconds": 0.0, **evaluate()}]
    samples, train_seconds = 0, 0.0
    bar = tqdm(range(1, config.steps + 1), desc=f"reinforce[{config.baseline}]", disable=not progress)
    for step in bar:
        t0 = time.perf_counter()
        problems = [p for p in next(batches) for _ in range(config.group_size)]
        ro = generate(model, tokenizer, [p.prompt for p in problems], temperature=config.temperature,
                      max_new_tokens=config.max_new_tokens, seed=config.seed * 1_000_003 + step,
                      compute_logp=False)
        rewards = torch.tensor(verify_batch(ro.texts, problems, no_answer_penalty=config.no_answer_penalty))
        weights = _weights(rewards, config)  # (B,)
        model.train()
        logp = response_logprobs(model, ro)  # (B, R)
        per_token = -weights[:, None] * logp  # every token inherits its answer's weight
        loss = aggregate(per_token, ro.response_mask, "seq-mean-token-sum")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        samples += len(problems)
        train_seconds += time.perf_counter() - t0
        entry = {"step": step, "samples": samples, "seconds": train_seconds, "reward": rewards.mean().item()}
        stop = evaluate_and_stop(entry, step=step, steps=config.steps, eval_every=config.eval_every,
                                 seconds=train_seconds, evaluate=evaluate, time_guard=time_guard,
                                 stop_at_accuracy=stop_at_accuracy, bar=bar)
        if "accuracy" in entry:  # the history keeps the evaluated steps only
            history.append(entry)
        if stop:
            break
    model.eval()
    return {"history": history, "config": asdict(config), "samples": samples,
            "wall_seconds": train_seconds}


def _weights(rewards: torch.Tensor, config: ReinforceConfig) -> torch.Tensor:
    if config.baseline == "sign":
        return torch.where(rewards > 0.5, 1.0, -1.0)
    if config.baseline == "none":
        return rewards
    if config.baseline == "batch":
        return rewards - rewards.mean()
    return rloo_advantages(rewards, config.group_size)
