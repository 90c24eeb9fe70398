"""Every training run the book shows, from the shell.

    python -m rlcore.experiments sft        [--seed N] [--steps N] [--device cpu|cuda] [--out DIR]
    python -m rlcore.experiments reinforce  [--seed N] [--steps N] [--device cpu|cuda]
    python -m rlcore.experiments ppo        [--seed N] [--steps N] [--device cpu|cuda]
    python -m rlcore.experiments grpo       [--seed N | --seeds 0 1 2] [--steps N] [--device cpu|cuda]
    python -m rlcore.experiments dpo        [--online | --offline] [--seed N | --seeds 0 1 2] [--steps N]
    python -m rlcore.experiments compare    [--seeds 0 1 2 3 4] [--kernels native default] [--budget N] [--methods NAME ...] [--out PATH]

A tqdm bar goes to stderr; the last line on stdout is one JSON object with at least
``accuracy_before`` and ``accuracy_after`` (held-out, greedy, 0–1), ``samples`` (answers
generated) and ``wall_seconds``. The defaults reproduce the book's figures, and the chapters
call the same functions (:func:`run_sft`, :func:`run_reinforce`, :func:`run_ppo`, :func:`run_grpo`,
:func:`run_dpo`).
With ``--seeds`` the JSON line holds one result per seed plus their mean and standard deviation.
``compare`` runs every method on one budget of sampled answers (chapter 10, :mod:`rlcore.compare`),
writes the results file and prints one summary per method.
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

from .dpo import DPOConfig, train_dpo
from .evaluation import accuracy
from .grpo import GRPOConfig, train_grpo
from .ppo import PPOConfig, train_ppo
from .policy import FIFTH_GRADER_DIR, TOKENIZER_DIR, load_policy, save_policy, save_tokenizer
from .reinforce import ReinforceConfig, train_reinforce
from .reproducibility import book_seed
from .sft import SFTConfig, train_sft
from .tasks import AdditionTask

__all__ = ["DEFAULT_TASK", "make_task", "run_sft", "run_reinforce", "run_ppo", "run_grpo", "run_dpo",
           "CHAPTER1_REINFORCE", "CHAPTER7_PPO", "CHAPTER8_GRPO", "CHAPTER9_DPO", "main"]

#: The book's task, 3-digit addition with 500 fixed held-out problems.
DEFAULT_TASK = dict(digits=3, heldout_size=500, heldout_seed=1234)

#: Chapter 1's run, the story's update (+1 for right and -1 for wrong, one answer per problem).
CHAPTER1_REINFORCE = ReinforceConfig(steps=200, batch_size=64, lr=1e-4, baseline="sign", eval_every=10)


#: Chapter 7's run, PPO with a critic, GAE over tokens (λ = 0.95) and a per-token k1 KL penalty in
#: the reward (β = 0.05): 100 steps of 64 answers, two epochs of two minibatches, gradients clipped to norm 1.
CHAPTER7_PPO = PPOConfig(steps=100, batch_size=64, lr=3e-4, lam=0.95, beta=0.05, eval_every=10)

#: Chapter 8's headline run, GRPO with 16 problems x 8 answers per step, two passes over each
#: batch in two minibatches (so the clip is live), no KL term: 250 steps, 32,000 answers.
CHAPTER8_GRPO = GRPOConfig(steps=250, prompts_per_step=16, group_size=8, lr=1e-4, epochs=2, minibatches=2,
                           eval_every=10)

#: Chapter 9's run, DPO on verifier-judged pairs (a right answer preferred to a wrong one to the
#: same problem), re-sampled from the current policy every step ("online"; the chapter measures
#: it against offline DPO on one fixed set of pairs from the fifth grader).
CHAPTER9_DPO = DPOConfig(steps=60, pairs_per_step=32, samples_per_prompt=8, lr=1e-4, beta=0.1,
                         loss_type="sigmoid", online=True, eval_every=10)


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
            save_tokenizer(tokenizer, TOKENIZER_DIR)
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


def _run_rl(name: str, train, config, *, seed: Optional[int], steps: Optional[int], device: str,
            progress: bool, time_guard: Optional[float], stop_at_accuracy: Optional[float] = None) -> dict:
    task = make_task()
    model, tokenizer = load_policy(device=device)
    seed = book_seed() if seed is None else seed
    config = replace(config, seed=seed, **({} if steps is None else {"steps": steps}))
    result = train(model, tokenizer, task, config, progress=progress, time_guard=time_guard,
                   stop_at_accuracy=stop_at_accuracy)
    history = result["history"]
    evals = [h for h in history if "accuracy" in h]
    return {
        "experiment": name, "seed": seed,
        "accuracy_before": evals[0]["accuracy"], "accuracy_after": evals[-1]["accuracy"],
        "samples": result["samples"], "wall_seconds": result["wall_seconds"],
        "history": history, "model": model, "extras": {k: v for k, v in result.items()
                                                       if k in ("critic", "reference")},
    }


def run_reinforce(*, seed: Optional[int] = None, steps: Optional[int] = None, device: str = "cpu",
                  config: ReinforceConfig = CHAPTER1_REINFORCE, progress: bool = True,
                  time_guard: Optional[float] = None, stop_at_accuracy: Optional[float] = None) -> dict:
    """Chapter 1: REINFORCE from the shipped fifth grader (``seed`` defaults to :func:`~rlcore.reproducibility.book_seed`)."""
    return _run_rl("reinforce", train_reinforce, config, seed=seed, steps=steps, device=device,
                   progress=progress, time_guard=time_guard, stop_at_accuracy=stop_at_accuracy)


def run_ppo(*, seed: Optional[int] = None, steps: Optional[int] = None, device: str = "cpu",
            config: PPOConfig = CHAPTER7_PPO, progress: bool = True, time_guard: Optional[float] = None,
            stop_at_accuracy: Optional[float] = None) -> dict:
    """Chapter 7: PPO from the shipped fifth grader."""
    return _run_rl("ppo", train_ppo, config, seed=seed, steps=steps, device=device, progress=progress,
                   time_guard=time_guard, stop_at_accuracy=stop_at_accuracy)


def run_grpo(*, seed: Optional[int] = None, steps: Optional[int] = None, device: str = "cpu",
             config: GRPOConfig = CHAPTER8_GRPO, progress: bool = True, time_guard: Optional[float] = None,
             stop_at_accuracy: Optional[float] = None) -> dict:
    """Chapter 8: GRPO from the shipped fifth grader."""
    return _run_rl("grpo", train_grpo, config, seed=seed, steps=steps, device=device, progress=progress,
                   time_guard=time_guard, stop_at_accuracy=stop_at_accuracy)


def run_dpo(*, seed: Optional[int] = None, steps: Optional[int] = None, device: str = "cpu",
            config: DPOConfig = CHAPTER9_DPO, online: Optional[bool] = None, progress: bool = True,
            time_guard: Optional[float] = None, stop_at_accuracy: Optional[float] = None) -> dict:
    """Chapter 9: DPO from the shipped fifth grader; ``online`` overrides ``config.online``
    (``True``: pairs re-sampled from the current policy; ``False``: one fixed set)."""
    if online is not None:
        config = replace(config, online=online)
    result = _run_rl("dpo", train_dpo, config, seed=seed, steps=steps, device=device, progress=progress,
                     time_guard=time_guard, stop_at_accuracy=stop_at_accuracy)
    result["online"] = config.online
    return result


def _summarise(results: list[dict]) -> dict:
    import statistics

    after = [r["accuracy_after"] for r in results]
    return {
        "experiment": results[0]["experiment"], "seeds": [r["seed"] for r in results],
        "accuracy_before": results[0]["accuracy_before"],
        "accuracy_after": statistics.mean(after),
        "accuracy_after_std": statistics.stdev(after) if len(after) > 1 else 0.0,
        "samples": statistics.mean(r["samples"] for r in results),
        "wall_seconds": statistics.mean(r["wall_seconds"] for r in results),
        "runs": results,
    }


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rlcore.experiments", description=__doc__.split("\n\n")[0])
    parser.add_argument("name", choices=["sft", "reinforce", "ppo", "grpo", "dpo", "compare"])
    parser.add_argument("--seed", type=int, default=None,
                        help="random seed (default: $RLCORE_SEED, or 0 when it is unset)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="several seeds: mean and spread")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the book's)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--out", type=Path, default=None,
                        help="sft, compare: where to save (default: inside the package)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default on CPU: 1, fastest for these tiny models)")
    pairs = parser.add_mutually_exclusive_group()
    pairs.add_argument("--online", dest="online", action="store_true", default=None,
                       help="dpo: re-sample pairs from the current policy (the default)")
    pairs.add_argument("--offline", dest="online", action="store_false",
                       help="dpo: one fixed set of pairs sampled from the fifth grader")
    parser.add_argument("--budget", type=int, default=None, help="compare: answers sampled per run")
    parser.add_argument("--methods", nargs="+", default=None, help="compare: which methods (default: all)")
    parser.add_argument("--kernels", nargs="+", default=None,
                        help="compare: CPU kernel families, ATEN_CPU_CAPABILITY values or native "
                             "(default: native default)")
    parser.add_argument("--eval-samples", type=int, default=None,
                        help="compare: evaluate about every this many sampled answers")
    args = parser.parse_args(argv)
    if args.seed is None:
        args.seed = book_seed()
    if args.name == "compare":
        from .compare import main_compare

        return main_compare(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    elif args.device == "cpu":
        torch.set_num_threads(1)
    start = time.perf_counter()
    if args.name == "sft":
        result = run_sft(seed=args.seed, steps=args.steps, device=args.device,
                         out=args.out or FIFTH_GRADER_DIR)
    else:
        runner = {"reinforce": run_reinforce, "ppo": run_ppo, "grpo": run_grpo, "dpo": run_dpo}[args.name]
        options = {"online": args.online} if args.name == "dpo" else {}
        runs = []
        for seed in args.seeds or [args.seed]:
            run = runner(seed=seed, steps=args.steps, device=args.device, **options)
            run.pop("model", None)
            run.pop("extras", None)
            runs.append(run)
        result = runs[0] if len(runs) == 1 else _summarise(runs)
    result["total_seconds"] = time.perf_counter() - start
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
