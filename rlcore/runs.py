"""The book's runs from the shipped fifth grader: what the chapters and the command line call.

Each ``run_*`` loads a fresh copy of the fifth grader, trains it with :func:`rlcore.train.train`
on the book's task and returns a summary: ``experiment``, ``seed``, ``accuracy_before``,
``accuracy_after`` (held-out, greedy), ``samples`` (answers generated), ``wall_seconds``,
``history``, the trained ``model`` and ``extras`` (the ``critic`` and the ``reference``, when the
run had them). ``seed`` defaults to :func:`~rlcore.reproducibility.book_seed`; ``steps``
overrides the config's.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Optional

from .policy import FIFTH_GRADER_DIR, RUNNING_SUM_GRADER_DIR, load_policy
from .reproducibility import book_seed
from .settings import CHAPTER1_REINFORCE, CHAPTER7_PPO, CHAPTER8_GRPO, CHAPTER9_DPO, make_task
from .train import TrainConfig, train

__all__ = ["GRADER_DIRS", "run", "run_reinforce", "run_ppo", "run_grpo", "run_dpo"]

#: Each task's shipped fifth grader.
GRADER_DIRS = {"addition": FIFTH_GRADER_DIR, "running_sum": RUNNING_SUM_GRADER_DIR}


def run(name: str, config: TrainConfig, *, seed: Optional[int] = None, steps: Optional[int] = None,
        device: str = "cpu", progress: bool = True, time_guard: Optional[float] = None,
        stop_at_accuracy: Optional[float] = None, task: str = "addition", max_samples: Optional[int] = None) -> dict:
    """Train a fresh fifth grader of ``task`` (``"addition"``, or ``"running_sum"`` with its own
    grader, :data:`~rlcore.policy.RUNNING_SUM_GRADER_DIR`) with ``config``: its ``seed`` and ``steps``
    replaced when given, and for the running sums its ``max_new_tokens`` set to the task's budget.
    ``max_samples`` is :func:`~rlcore.train.train`'s budget of sampled answers."""
    problems = make_task(task)
    model, tokenizer = load_policy(GRADER_DIRS[task], device=device)
    seed = book_seed() if seed is None else seed
    config = replace(config, seed=seed, **({} if steps is None else {"steps": steps}))
    if task != "addition":
        config = replace(config, max_new_tokens=problems.max_new_tokens)
    result = train(model, tokenizer, problems, config, progress=progress, time_guard=time_guard,
                   stop_at_accuracy=stop_at_accuracy, max_samples=max_samples)
    evals = [h for h in result["history"] if "accuracy" in h]
    return {
        "experiment": name, "seed": seed,
        "accuracy_before": evals[0]["accuracy"], "accuracy_after": evals[-1]["accuracy"],
        "samples": result["samples"], "wall_seconds": result["wall_seconds"],
        "history": result["history"], "model": model,
        "extras": {k: result[k] for k in ("critic", "reference") if result[k] is not None},
    }


def run_reinforce(*, config: TrainConfig = CHAPTER1_REINFORCE, **options) -> dict:
    """Chapter 1: REINFORCE from the shipped fifth grader (options as :func:`run`)."""
    return run("reinforce", config, **options)


def run_ppo(*, config: TrainConfig = CHAPTER7_PPO, **options) -> dict:
    """Chapter 7: PPO from the shipped fifth grader."""
    return run("ppo", config, **options)


def run_grpo(*, config: TrainConfig = CHAPTER8_GRPO, **options) -> dict:
    """Chapter 8: GRPO from the shipped fifth grader."""
    return run("grpo", config, **options)


def run_dpo(*, config: TrainConfig = CHAPTER9_DPO, online: Optional[bool] = None, **options) -> dict:
    """Chapter 9: DPO from the shipped fifth grader; ``online`` overrides ``config.online``
    (``True``: pairs re-sampled from the current policy; ``False``: one fixed pool)."""
    if online is not None:
        config = replace(config, online=online)
    result = run("dpo", config, **options)
    result["online"] = config.online
    return result
