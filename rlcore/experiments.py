"""Every training run the book shows, from the shell.

    python -m rlcore.experiments sft        [--task addition|running_sum] [--seed N] [--steps N] [--device cpu|cuda] [--out DIR]
    python -m rlcore.experiments reinforce  [--seed N] [--steps N] [--device cpu|cuda]
    python -m rlcore.experiments ppo        [--seed N] [--steps N] [--device cpu|cuda]
    python -m rlcore.experiments grpo       [--seed N | --seeds 0 1 2] [--steps N] [--device cpu|cuda]
    python -m rlcore.experiments dpo        [--online | --offline] [--seed N | --seeds 0 1 2] [--steps N]
    python -m rlcore.experiments compare    [--seeds 0 1 2 3 4] [--kernels native default] [--budget N] [--methods NAME ...] [--jobs N] [--out PATH]
    python -m rlcore.experiments rloo-split [--seeds 0 1 2 3 4] [--kernels native] [--jobs N] [--out PATH]
    python -m rlcore.experiments credit     [--seeds 0 1 2 3 4] [--kernels native] [--budget N] [--methods NAME ...] [--jobs N] [--out PATH]
    python -m rlcore.experiments credit-accuracy [--seed N] [--out PATH]
    python -m rlcore.experiments rm         [--seed N] [--out DIR]
    python -m rlcore.experiments overopt    [--seeds 0 1 2] [--jobs N] [--out PATH]
    python -m rlcore.experiments trl-grpo   [--seed N | --seeds 0 1 2] [--steps N] [--loss-type NAME] [--model HUB_ID] [--dataset ID] [--use-vllm]
    python -m rlcore.experiments trl-rloo   [--seed N | --seeds 0 1 2] [--steps N] [--model HUB_ID] [--dataset ID] [--use-vllm]

A tqdm bar goes to stderr; the last line on stdout is one JSON object with at least
``accuracy_before`` and ``accuracy_after`` (held-out, greedy, 0–1), ``samples`` (answers
generated) and ``wall_seconds``. The defaults reproduce the book's figures: the runs are
:mod:`rlcore.runs`' (which the chapters call too) with the settings of :mod:`rlcore.settings`.
With ``--seeds`` the JSON line holds one result per seed plus their mean and standard deviation.
``compare`` runs every method on one budget of sampled answers (chapter 10, :mod:`rlcore.compare`),
writes the results file and prints one summary per method; ``rloo-split`` does the same for chapter
10's exercise that separates RLOO's baseline from its batch shape (three variants of the batch
baseline and RLOO, :data:`rlcore.compare.SUITES`); ``credit`` does the same for the credit
race on the running sums (chapter 11, :data:`rlcore.compare.SUITES`), and ``credit-accuracy``
scores every method's credit against the Monte Carlo ground truth (:mod:`rlcore.credit_accuracy`).
``rm`` rebuilds chapter 13's learned reward model (:mod:`rlcore.reward_model`, about a minute and a
half) and ``overopt`` runs chapter 13's sweep against it (:mod:`rlcore.overoptimisation`).
``trl-grpo`` and ``trl-rloo`` run chapter 8's GRPO, or on-policy RLOO (16 problems × 4 answers), on Hugging Face TRL's
trainers (:mod:`rlcore.scale`, chapter 12): on the CPU with the shipped fifth grader by default, and
unchanged under ``accelerate launch`` on GPUs with ``--model`` (a hub causal LM), a GSM8K-style
dataset and ``--use-vllm``; with ``--model`` the JSON line reports the mean training reward of every
step (``rewards``) instead of the fifth grader's held-out accuracy::

    accelerate launch --config_file rlcore/assets/accelerate/multi_gpu.yaml --num_processes 8 \
        -m rlcore.experiments trl-grpo --model Qwen/Qwen2.5-0.5B-Instruct --use-vllm --steps 500
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Optional

import torch

from .compare import main_compare
from .evaluation import accuracy
from .policy import FIFTH_GRADER_DIR, RUNNING_SUM_GRADER_DIR, TOKENIZER_DIR, save_policy, save_tokenizer
from .reproducibility import book_seed
from .runs import run_dpo, run_grpo, run_ppo, run_reinforce
from . import presets
from .presets import LOSS_TYPES
from .settings import POLICY_SETTINGS, SFT_SETTINGS, TASKS, make_task
from .sft import SFTConfig, train_sft

__all__ = ["run_sft", "main"]


def run_sft(*, seed: int = 0, steps: Optional[int] = None, device: str = "cpu", task: str = "addition",
            out: Optional[Path] = None, progress: bool = True) -> dict:
    """Train a task's fifth grader from scratch and save it (by default into the package:
    :data:`~rlcore.policy.FIFTH_GRADER_DIR` for addition, :data:`~rlcore.policy.RUNNING_SUM_GRADER_DIR`
    for running sums). Settings: :data:`rlcore.settings.SFT_SETTINGS` and ``POLICY_SETTINGS``."""
    problems = make_task(task)
    out = out if out is not None else {"addition": FIFTH_GRADER_DIR, "running_sum": RUNNING_SUM_GRADER_DIR}[task]
    config = SFTConfig(seed=seed, **{**SFT_SETTINGS[task], **({} if steps is None else {"steps": steps})})
    result = train_sft(problems, config, policy=POLICY_SETTINGS[task], device=device, progress=progress)
    model, tokenizer = result["model"], result["tokenizer"]
    acc = accuracy(model, tokenizer, problems.heldout, max_new_tokens=problems.max_new_tokens)
    if out is not None:
        save_policy(model.to("cpu"), tokenizer, out)
        if Path(out) == FIFTH_GRADER_DIR:
            save_tokenizer(tokenizer, TOKENIZER_DIR)
    return {
        "experiment": "sft",
        "task": task,
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
    parser.add_argument("name", choices=["sft", "reinforce", "ppo", "grpo", "dpo", "compare", "rloo-split", "credit",
                                         "credit-accuracy", "rm", "overopt", "trl-grpo", "trl-rloo"])
    parser.add_argument("--seed", type=int, default=None,
                        help="random seed (default: $RLCORE_SEED, or 0 when it is unset)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="several seeds: mean and spread")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the book's)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--task", choices=TASKS, default="addition",
                        help="sft: which task's fifth grader to build (default: addition)")
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
    parser.add_argument("--jobs", type=int, default=1,
                        help="compare, rloo-split, credit: runs at once, each in its own one-thread process (default: 1)")
    parser.add_argument("--eval-samples", type=int, default=None,
                        help="compare: evaluate about every this many sampled answers")
    parser.add_argument("--model", default=None,
                        help="trl-grpo, trl-rloo: a hub causal LM to train instead of the fifth grader")
    parser.add_argument("--dataset", default="openai/gsm8k",
                        help="trl-*, with --model: a GSM8K-style dataset (hub id or JSON-lines file)")
    parser.add_argument("--use-vllm", action="store_true", help="trl-*: generate with vLLM (a GPU)")
    parser.add_argument("--loss-type", default="grpo", choices=sorted(LOSS_TYPES),
                        help="trl-grpo: TRL's loss_type (default: grpo, the book's)")
    parser.add_argument("--lr", type=float, default=None,
                        help="trl-*: learning rate (default: the book's, or 1e-6 with --model)")
    parser.add_argument("--max-new-tokens", type=int, default=None,
                        help="trl-*: the generation budget (default: the book's, or 512 with --model)")
    args = parser.parse_args(argv)
    if args.seed is None:
        args.seed = book_seed()
    if args.name == "compare":
        return main_compare(args)
    if args.name == "rloo-split":
        return main_compare(args, suite="rloo_split")
    if args.name == "credit":
        return main_compare(args, suite="credit")
    if args.name == "overopt":
        from .overoptimisation import main_overoptimisation
        return main_overoptimisation(args)
    if args.name == "credit-accuracy":
        from .credit_accuracy import main_credit_accuracy
        return main_credit_accuracy(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    elif args.device == "cpu":
        torch.set_num_threads(1)
    start = time.perf_counter()
    if args.name in ("trl-grpo", "trl-rloo"):
        return _main_trl(args, start)
    if args.name == "rm":
        return _main_rm(args, start)
    if args.name == "sft":
        result = run_sft(seed=args.seed, steps=args.steps, device=args.device, task=args.task, out=args.out)
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


def _main_rm(args, start: float) -> int:
    """``rm``: chapter 13's reward model from the shipped fifth grader, saved in the package (or ``--out``)."""
    from .policy import load_policy
    from .reward_model import REWARD_MODEL_DIR, RewardModelConfig, save_reward_model, train_reward_model

    model, tokenizer = load_policy()
    result = train_reward_model(model, tokenizer, make_task(), RewardModelConfig(seed=args.seed))
    meta = {k: v for k, v in result.items() if k != "reward_model"}
    save_reward_model(result["reward_model"], args.out or REWARD_MODEL_DIR, metadata=meta)
    meta["total_seconds"] = time.perf_counter() - start
    sys.stdout.write(json.dumps(meta) + "\n")
    return 0


def _main_trl(args, start: float) -> int:
    """``trl-grpo`` / ``trl-rloo``: the book's run on TRL (:func:`rlcore.scale.run_trl`). Under
    ``accelerate launch`` every process trains; the first one prints the JSON line."""
    import os

    from .scale import run_trl

    if args.name == "trl-grpo":
        config = presets.grpo(loss_type=args.loss_type)
    else:  # on-policy RLOO (one plain step per batch), which is what TRL's RLOOTrainer computes then
        config = presets.reinforce("rloo", prompts_per_step=16, group_size=4)
    from dataclasses import replace

    if args.model is not None:
        from .scale import HUB_MODEL_OPTIONS

        config = replace(config, **HUB_MODEL_OPTIONS)
    config = replace(config, **{k: v for k, v in (("lr", args.lr), ("max_new_tokens", args.max_new_tokens))
                                if v is not None})
    main_process = int(os.environ.get("RANK", "0")) == 0
    runs = []
    for seed in args.seeds or [args.seed]:
        run = run_trl(config, seed=seed, steps=args.steps, model_id=args.model, dataset=args.dataset,
                      use_vllm=args.use_vllm, output_dir=args.out, progress=main_process)
        run.pop("model", None)
        runs.append(run)
    result = runs[0] if len(runs) == 1 or args.model else _summarise(runs)
    result["total_seconds"] = time.perf_counter() - start
    if main_process:
        sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
