"""Chapter 13's measurements: reward-model over-optimisation, best-of-N, and pass@k before and after RL.

``python -m rlcore.experiments overopt --jobs 2`` runs them all and saves
:data:`RESULTS_PATH` (about 10 minutes on two cores); the chapter plots the saved results and
re-checks them with short live runs.

* :func:`run_against_reward_model`: the book's loop (:data:`rlcore.settings.OVEROPTIMISATION`)
  trained on the learned reward model's scores instead of the verifier's marks, at a KL strength
  ``beta``; every 10 steps one answer to each of the 500 held-out problems is sampled and scored by
  both graders (the proxy and the truth), and the sequence KL to the fifth grader is estimated on
  the same answers (:func:`rlcore.reward_model.sampled_evaluation`);
* :func:`best_of_n`: best-of-N against the reward model and against the verifier, with the
  analytic KL of best-of-N, :func:`best_of_n_kl`;
* :func:`pass_at_k_counts`: right answers among ``n`` samples per problem, for
  :func:`rlcore.evaluation.pass_at_k`, for the fifth grader, for chapter 8's GRPO (the verifier's
  marks) and for the runs against the reward model.

References: Gao, Schulman and Hilton, "Scaling Laws for Reward Model Overoptimization", 2023;
Yue et al., "Does Reinforcement Learning Really Incentivize Reasoning Capacity in LLMs Beyond the
Base Model?", 2025; Chen et al., "Evaluating Large Language Models Trained on Code", 2021.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Optional, Sequence

import torch

from .evaluation import right_counts
from .policy import ASSETS, frozen_copy, load_policy
from .reward_model import load_reward_model, reward_grader, sampled_evaluation
from .rollout import generate
from .settings import CHAPTER8_GRPO, OVEROPTIMISATION, OVEROPTIMISATION_BETAS, make_task
from .tasks import verify_batch
from .train import train

__all__ = ["RESULTS_PATH", "SEEDS", "N_VALUES", "PASS_PROBLEMS", "PASS_SAMPLES", "best_of_n_kl", "best_of_n",
           "run_against_reward_model", "pass_at_k_counts", "run_overoptimisation", "load_results",
           "main_overoptimisation"]

#: Where ``python -m rlcore.experiments overopt`` saves its results.
RESULTS_PATH = ASSETS / "results" / "overoptimisation.json"
#: The seeds of the saved sweep.
SEEDS = (0, 1, 2)
#: Best-of-N's N.
N_VALUES = (1, 2, 4, 8, 16, 32, 64)
#: Held-out problems for pass@k.
PASS_PROBLEMS = 100
#: Samples per problem for pass@k (k runs up to it).
PASS_SAMPLES = 256


def best_of_n_kl(n: int) -> float:
    r"""The KL divergence from the base policy of best-of-``n`` sampling (the best of ``n``
    independent samples under a score without ties):

    .. math::

        \mathrm{KL}(\pi_{\text{BoN}} \,\|\, \pi) = \log n - \frac{n - 1}{n}.

    (It is an upper bound when the score has ties or the samples repeat, as short answers do.)

    Reference: Stiennon et al., "Learning to summarize from human feedback", 2020, appendix G.3;
    Beirami et al., "Theoretical guarantees on the best-of-n alignment policy", 2024.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    return math.log(n) - (n - 1) / n


@torch.no_grad()
def best_of_n(policy, tokenizer, reward_model, problems, n_values: Sequence[int] = N_VALUES, *, seed: int = 0,
              max_new_tokens: int = 12) -> list[dict]:
    """Best-of-N from ``policy`` on ``problems``: ``max(n_values)`` answers per problem are sampled
    once (temperature 1), and for each ``N`` the first ``N`` of them are ranked by the reward model
    (``proxy`` and ``true``: the mean score and the verifier's accuracy of the answers it picks) and
    by the verifier (``oracle``: the share of problems with a right answer among the ``N``).

    Returns:
      One dict per ``N``: ``n``, ``kl`` (:func:`best_of_n_kl`), ``proxy``, ``true``, ``oracle``.
    """
    problems = list(problems)
    n_max = max(n_values)
    rows = [p for p in problems for _ in range(n_max)]
    scores, right = [], []
    for b, start in enumerate(range(0, len(rows), 4096)):
        chunk = rows[start:start + 4096]
        ro = generate(policy, tokenizer, [p.prompt for p in chunk], max_new_tokens=max_new_tokens, seed=seed + b,
                      compute_logp=False)
        scores.append(reward_model(ro).float())
        right.append(torch.tensor([m == 1.0 for m in verify_batch(ro.texts, chunk)], dtype=torch.float32))
    scores = torch.cat(scores).view(len(problems), n_max)
    right = torch.cat(right).view(len(problems), n_max)
    out = []
    for n in n_values:
        pick = scores[:, :n].argmax(1)  # (P,) the reward model's choice among the first n
        rows_ = torch.arange(len(problems))
        out.append({"n": n, "kl": best_of_n_kl(n), "proxy": scores[rows_, pick].mean().item(),
                    "true": right[rows_, pick].mean().item(), "oracle": right[:, :n].max(1).values.mean().item()})
    return out


def run_against_reward_model(beta: float, seed: int, *, steps: Optional[int] = None, reward_model=None,
                             eval_problems: int = 500, pass_counts: bool = False, progress: bool = False) -> dict:
    """The book's loop trained on the reward model's scores at KL strength ``beta`` (k3 in the loss),
    from the shipped fifth grader.

    Returns:
      ``beta``, ``seed``, ``curve`` (one dict per evaluation: ``step``, ``samples``, ``accuracy``
      (held-out, greedy, the verifier's), ``proxy``, ``true`` and ``kl`` of sampled answers), and with
      ``pass_counts`` the final policy's :func:`pass_at_k_counts`.
    """
    task = make_task()
    model, tokenizer = load_policy()
    rm = reward_model if reward_model is not None else load_reward_model()[0]
    reference = frozen_copy(model)
    config = replace(OVEROPTIMISATION, beta=beta, seed=seed, **({} if steps is None else {"steps": steps}))
    extra = sampled_evaluation(rm, reference, tokenizer, task.heldout[:eval_problems], seed=seed + 99,
                               max_new_tokens=config.max_new_tokens)
    result = train(model, tokenizer, task, config, progress=progress, grader=reward_grader(rm), extra_eval=extra)
    curve = [{k: h[k] for k in ("step", "samples", "accuracy", "proxy", "true", "kl")}
             for h in result["history"] if "accuracy" in h]
    out = {"beta": beta, "seed": seed, "curve": curve, "wall_seconds": result["wall_seconds"], "model": model}
    if pass_counts:
        out["pass_counts"] = pass_at_k_counts(model, tokenizer, task, seed=seed)
    return out


def pass_at_k_counts(model, tokenizer, task, *, seed: int = 0, problems: int = PASS_PROBLEMS,
                     samples: int = PASS_SAMPLES) -> list[int]:
    """Right answers among ``samples`` sampled to each of the first ``problems`` held-out problems."""
    return right_counts(model, tokenizer, task.heldout[:problems], samples, seed=10_000 + seed).tolist()


def _job(kind: str, beta: float, seed: int) -> dict:
    torch.set_num_threads(1)
    start = time.perf_counter()
    if kind == "rm":
        out = run_against_reward_model(beta, seed, pass_counts=True)
    elif kind == "grpo":  # chapter 8's GRPO on the verifier's marks, 100 steps (12,800 answers)
        from .runs import run_grpo

        run = run_grpo(config=replace(CHAPTER8_GRPO, eval_every=100), seed=seed, steps=100, progress=False)
        _, tokenizer = load_policy()
        out = {"seed": seed, "accuracy_after": run["accuracy_after"],
               "pass_counts": pass_at_k_counts(run["model"], tokenizer, make_task(), seed=seed)}
    elif kind == "base":
        model, tokenizer = load_policy()
        task = make_task()
        rm, _ = load_reward_model()
        out = {"seed": seed, "pass_counts": pass_at_k_counts(model, tokenizer, task, seed=seed),
               "best_of_n": best_of_n(model, tokenizer, rm, task.heldout, seed=20_000 + seed)}
    else:  # pragma: no cover - internal
        raise ValueError(kind)
    out.pop("model", None)
    out.update(kind=kind, seconds=time.perf_counter() - start)
    return out


def run_overoptimisation(*, seeds: Sequence[int] = SEEDS, betas: Sequence[float] = OVEROPTIMISATION_BETAS,
                         jobs: int = 1, out: Optional[Path] = RESULTS_PATH, progress: bool = True) -> dict:
    """Every run of chapter 13, ``jobs`` at a time in one-thread processes; saved to ``out``."""
    import concurrent.futures
    import multiprocessing

    from tqdm.auto import tqdm

    specs = [("rm", b, s) for b in betas for s in seeds] + [("grpo", 0.0, s) for s in seeds] + [("base", 0.0, s) for s in seeds]
    start = time.perf_counter()
    results = []
    bar = tqdm(total=len(specs), desc="overopt", disable=not progress)
    if jobs <= 1:
        for spec in specs:
            results.append(_job(*spec))
            bar.update(1)
    else:
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
            futures = [pool.submit(_job, *spec) for spec in specs]
            for f in concurrent.futures.as_completed(futures):
                results.append(f.result())
                bar.update(1)
    bar.close()
    results.sort(key=lambda r: (r["kind"], r.get("beta", 0.0), r["seed"]))
    saved = {"settings": {"config": OVEROPTIMISATION.in_use(), "betas": list(betas), "seeds": list(seeds),
                          "n_values": list(N_VALUES), "pass_problems": PASS_PROBLEMS, "pass_samples": PASS_SAMPLES,
                          "torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability()},
             "runs": results, "total_seconds": time.perf_counter() - start}
    if out is not None:
        Path(out).write_text(json.dumps(saved, indent=1) + "\n")
    return saved


def load_results(path: Path = RESULTS_PATH) -> dict:
    """The saved results of ``python -m rlcore.experiments overopt``."""
    return json.loads(Path(path).read_text())


def main_overoptimisation(args) -> int:
    """The ``overopt`` command."""
    import sys

    saved = run_overoptimisation(seeds=args.seeds or SEEDS, jobs=args.jobs, out=args.out or RESULTS_PATH)
    summary = {"total_seconds": saved["total_seconds"], "out": str(args.out or RESULTS_PATH),
               "runs": [{k: r[k] for k in ("kind", "beta", "seed") if k in r} for r in saved["runs"]]}
    sys.stdout.write(json.dumps(summary) + "\n")
    return 0
