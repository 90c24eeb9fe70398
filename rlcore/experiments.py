"""Every training run the book shows, from the shell.

    python -m rlcore.experiments sft        [--seed N] [--steps N] [--device cpu|cuda] [--out DIR]
    python -m rlcore.experiments reinforce  [--seed N] [--steps N] [--device cpu|cuda]

A tqdm bar goes to stderr; the last line on stdout is one JSON object with at least
``accuracy_before`` and ``accuracy_after`` (held-out, greedy, 0–1), ``samples`` (answers
generated) and ``wall_seconds``. The defaults reproduce the book's figures, and the chapters
call the same functions (:func:`run_sft`, :func:`run_reinforce`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Optional

import torch

from .evaluation import accuracy
from .policy import FIFTH_GRADER_DIR, TOKENIZER_DIR, load_policy, save_policy
from .reinforce import ReinforceConfig, train_reinforce
from .sft import SFTConfig, train_sft
from .tasks import AdditionTask

__all__ = ["DEFAULT_TASK", "make_task", "run_sft", "run_reinforce", "CHAPTER1_REINFORCE", "main"]

#: The book's task: 3-digit addition, 500 fixed held-out problems.
DEFAULT_TASK = dict(digits=3, heldout_size=500, heldout_seed=1234)

#: Chapter 1's run: the story's update, +1 for right and -1 for wrong, one answer per problem.
CHAPTER1_REINFORCE = ReinforceConfig(steps=200, batch_size=64, lr=1e-4, baseline="sign", eval_every=10)


def make_task() -> AdditionTask:
    return AdditionTask(**DEFAULT_TASK)


def run_sft(*, seed: int = 0, steps: Optional[int] = None, device: str = "cpu",
            out: Optional[Path] = FIFTH_GRADER_DIR, progress: bool = True) -> dict:
    """Train the fifth grader from scratch and (by default) save it into the package."""
    task = make_task()
    config = SFTConfig(seed=seed) if steps is None else SFTConfig(seed=seed, steps=steps)
    result = train_sft(task, config, device=device, progress=progress)
    model, tokenizer = result["model"], result["tokenizer"]
    acc = accuracy(model, tokenizer, task.heldout)
    if out is not None:
        save_policy(model.to("cpu"), tokenizer, out)
        if Path(out) == FIFTH_GRADER_DIR:
            tokenizer.save_pretrained(str(TOKENIZER_DIR))
    return {
        "experiment": "sft",
        "seed": seed,
        "accuracy_before": result["history"][0][1] if result["history"] else 0.0,
        "accuracy_after": acc,
        "samples": 0,
        "examples_seen": result["steps"] * config.batch_size,
        "steps": result["steps"],
        "wall_seconds": result["wall_seconds"],
        "history": result["history"],
        "saved_to": str(out) if out is not None else None,
    }


def run_reinforce(*, seed: int = 0, steps: Optional[int] = None, device: str = "cpu",
                  config: ReinforceConfig = CHAPTER1_REINFORCE, progress: bool = True,
                  max_seconds: Optional[float] = None) -> dict:
    """Chapter 1: REINFORCE from the shipped fifth grader."""
    task = make_task()
    model, tokenizer = load_policy(device=device)
    config = replace(config, seed=seed, **({} if steps is None else {"steps": steps}))
    result = train_reinforce(model, tokenizer, task, config, progress=progress, max_seconds=max_seconds)
    history = result["history"]
    return {
        "experiment": "reinforce",
        "seed": seed,
        "accuracy_before": history[0]["accuracy"],
        "accuracy_after": history[-1]["accuracy"],
        "samples": result["samples"],
        "wall_seconds": result["wall_seconds"],
        "history": history,
        "model": model,
    }


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rlcore.experiments", description=__doc__.split("\n\n")[0])
    parser.add_argument("name", choices=["sft", "reinforce"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the book's)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--out", type=Path, default=None, help="sft: where to save (default: the package)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    if args.name == "sft":
        result = run_sft(seed=args.seed, steps=args.steps, device=args.device,
                         out=args.out or FIFTH_GRADER_DIR)
    else:
        result = run_reinforce(seed=args.seed, steps=args.steps, device=args.device)
    result.pop("model", None)
    result["total_seconds"] = time.perf_counter() - start
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
