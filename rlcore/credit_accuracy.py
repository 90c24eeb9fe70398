"""How right is each method's credit? Every credit source of the book scored, token by token,
against the Monte Carlo ground truth on the running sums (chapter 11).

    python -m rlcore.experiments credit-accuracy [--seed S] [--out PATH]

At two checkpoints of the running-sum fifth grader (the shipped one, and the policy after
``mid_steps`` steps of the credit race's REINFORCE from it), :func:`measure_checkpoint` samples
``prompts × group`` answers to held-out problems and computes, on the very same answers:

* the **ground truth**: per-token Monte Carlo advantages :math:`A_t = V(s_{t+1}) - V(s_t)` from
  ``truth_k`` continuations of every prefix (:func:`rlcore.credit.mc_values`), estimated as two
  independent halves so that their agreement (split-half reliability) says how noisy the truth is;
* the **step checker's first wrong token** of every answer whose work goes wrong;
* every method's credit: REINFORCE with a batch baseline, RLOO and GRPO (one number per answer,
  broadcast), PPO's critic with GAE at λ ∈ {0, 0.5, 0.95, 1} (the critic trained by PPO's critic
  update on the checkpoint's own answers; KL penalty left out, whitening left out: neither changes a
  correlation or a ranking), VinePPO-style Monte Carlo credit as the race trains with it (values
  at the start of every running total from 4 continuations, independent of the truth's), DPO's
  implicit per-token reward β log π_DPO/π_ref (π_DPO trained by online DPO from the fifth grader),
  and the oracle (the step checker itself).

Each method is scored by :func:`rlcore.credit.credit_correlation` with the truth and by
:func:`rlcore.credit.blame_localisation`, with percentile-bootstrap 95% intervals over answers.
The results go to :data:`RESULTS_PATH` as JSON, with three answers' credit token by token for the
chapter's figure.
"""

from __future__ import annotations

import copy
import datetime
import json
import platform
import time
from dataclasses import replace
from pathlib import Path
from typing import Optional, Sequence

import torch

from . import settings as _settings
from .credit import (batch_credit, blame_localisation, credit_correlation, critic_credit, dpo_token_rewards,
                     group_credit, mc_values, oracle_credit, rloo_credit, split_half_reliability)
from .evaluation import accuracy
from .policy import ASSETS, RUNNING_SUM_GRADER_DIR, load_policy
from .reproducibility import step_seed
from .rollout import response_logprobs
from .train import sample_and_grade, train

__all__ = ["METHODS", "LAMBDAS", "RESULTS_PATH", "train_checkpoints", "measure_checkpoint", "bootstrap",
           "run_credit_accuracy", "load_results", "main_credit_accuracy"]

#: The GAE λ's at which the critic's credit is scored.
LAMBDAS = (0.0, 0.5, 0.95, 1.0)
#: The credit sources, in the order the chapter shows them.
METHODS = ("reinforce", "rloo", "grpo", *(f"gae_{lam:g}" for lam in LAMBDAS), "mc", "dpo", "oracle")
#: Where ``python -m rlcore.experiments credit-accuracy`` writes its results by default.
RESULTS_PATH = ASSETS / "results" / "credit_accuracy.json"


def train_checkpoints(*, seed: int = 0, warmup_steps: int = 50, mid_steps: int = 100, dpo_steps: int = 60,
                      progress: bool = True) -> dict:
    """The models the measurement needs, trained from the running-sum fifth grader with the credit
    race's settings (:data:`rlcore.settings.CREDIT_RACE`).

    * ``start``: the fifth grader; ``mid``: the policy after ``mid_steps`` steps of the race's REINFORCE
      (a batch baseline, 64 answers a step), the race's fastest outcome-only learner.
    * ``critic_start``, ``critic_mid``: PPO's critic for each, trained by PPO's own critic update on the
      checkpoint's answers for ``warmup_steps`` steps with the policy frozen (PPO's critic warm-up), so
      that each critic has seen the policy it judges.
    * ``dpo``: the policy after ``dpo_steps`` steps of online DPO from the fifth grader, whose
      log-ratio to the fifth grader is DPO's implicit reward.

    Returns those, with ``tokenizer``, ``task`` and the runs' ``history``.
    """
    task = _settings.make_task("running_sum")
    budget = dict(max_new_tokens=task.max_new_tokens, eval_every=10**9, seed=seed)
    start, tokenizer = load_policy(RUNNING_SUM_GRADER_DIR)
    mid = copy.deepcopy(start)
    run = train(mid, tokenizer, task, replace(_settings.CREDIT_RACE["reinforce"], steps=mid_steps, **budget),
                progress=progress)
    ppo = replace(_settings.CREDIT_RACE["ppo"], steps=warmup_steps, critic_warmup=warmup_steps, **budget)
    critics = {}
    for name, policy in (("start", start), ("mid", mid)):
        frozen = copy.deepcopy(policy)  # the warm-up trains only the critic; a copy makes sure of it
        critics[name] = train(frozen, tokenizer, task, replace(ppo, seed=seed + 1), progress=progress)["critic"]
    dpo_model = copy.deepcopy(start)
    dpo = train(dpo_model, tokenizer, task, replace(_settings.CREDIT_RACE["dpo_online"], steps=dpo_steps, **budget),
                progress=progress)
    for m in (start, mid, dpo_model, *critics.values()):
        m.eval()
    return {"start": start, "critic_start": critics["start"], "mid": mid, "critic_mid": critics["mid"],
            "dpo": dpo_model, "tokenizer": tokenizer, "task": task,
            "history": {"mid": run["history"], "dpo": dpo["history"]}}


def bootstrap(statistic, n: int, *, resamples: int = 1000, seed: int = 0) -> tuple[float, float]:
    """A percentile-bootstrap 95% interval of ``statistic(rows)`` over ``n`` rows resampled with
    replacement (``rows`` a ``[n]`` long tensor of indices); NaN resamples are dropped."""
    g = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(resamples):
        v = statistic(torch.randint(n, (n,), generator=g))
        if v == v:
            values.append(v)
    if not values:
        return float("nan"), float("nan")
    values = torch.tensor(values, dtype=torch.float64)
    return float(values.quantile(0.025)), float(values.quantile(0.975))


@torch.no_grad()
def measure_checkpoint(policy, critic, dpo_policy, reference, tokenizer, task, *, prompts: int = 25,
                       group: int = 8, truth_k: int = 32, mc_k: int = 4, seed: int = 0, resamples: int = 1000,
                       examples: int = 3, problems: Optional[Sequence] = None) -> dict:
    """Sample ``prompts × group`` answers from ``policy`` and score every method's credit on them.

    Args:
      policy: the checkpoint that samples (its values are the truth).
      critic: its PPO critic (a :class:`~rlcore.policy.ValueModel`).
      dpo_policy, reference: DPO's trained policy and its reference, for the implicit reward.
      tokenizer, task: the running sums' tokenizer and task.
      prompts, group: held-out problems, and answers to each (groups for RLOO and GRPO).
      truth_k: continuations per prefix for the truth, in two independent halves.
      mc_k: continuations per step start for the "mc" method (as the race trains).
      seed: seeds sampling, continuations and the bootstrap.
      resamples: bootstrap resamples.
      examples: wrong answers kept token by token for a figure, each to another problem.
      problems: the held-out problems to use (default: the first ``prompts`` of the task's).

    Returns:
      A JSON-ready dict with ``answers``, ``sample_accuracy``, ``wrong_work`` (answers with a wrong step),
      ``right_despite_wrong_work``, ``chance`` (the blame rate of a random token), ``reliability``
      (split-half, stepped up to ``truth_k``), ``truth_blame`` (the truth's own blame rate),
      ``methods`` (name → ``correlation``, ``correlation_ci``, ``blame``, ``blame_ci``) and ``examples``.
    """
    problems = list(task.heldout[:prompts] if problems is None else problems)
    config = replace(_settings.CREDIT_RACE["grpo"], group_size=group, max_new_tokens=task.max_new_tokens)
    ro, marks, graded = sample_and_grade(policy, tokenizer, problems, config, seed=step_seed(seed, 1))
    mask = ro.response_mask
    options = dict(max_new_tokens=task.max_new_tokens, no_answer_penalty=config.no_answer_penalty)
    halves = [mc_values(policy, tokenizer, ro, graded, k=truth_k // 2, seed=step_seed(seed, 2 + i), **options)
              for i in range(2)]
    truth = (halves[0].advantages + halves[1].advantages) / 2
    reliability = split_half_reliability(halves[0], halves[1], mask)
    oracle = oracle_credit(ro, graded, tokenizer)
    first_wrong = torch.where((oracle == -1).any(1), (oracle == -1).float().argmax(1), torch.full_like(ro.lengths, -1))
    ends = tokenizer.convert_tokens_to_ids(list(task.step_ends))
    credits = {
        "reinforce": batch_credit(marks, mask),
        "rloo": rloo_credit(marks, mask, group),
        "grpo": group_credit(marks, mask, group),
    }
    values = critic(ro)
    for lam in LAMBDAS:
        credits[f"gae_{lam:g}"], _ = critic_credit(marks, values, mask, lam=lam, whiten_advantages=False)
    credits["mc"] = mc_values(policy, tokenizer, ro, graded, k=mc_k, seed=step_seed(seed, 4), step_ends=ends,
                              **options).advantages
    beta = _settings.CREDIT_RACE["dpo_online"].beta
    credits["dpo"] = dpo_token_rewards(response_logprobs(dpo_policy, ro), response_logprobs(reference, ro), mask,
                                       beta=beta)
    credits["oracle"] = oracle

    def corr(c, idx):
        return credit_correlation(c[idx], truth[idx], mask[idx])

    def blame(c, idx):
        return blame_localisation(c[idx], first_wrong[idx], mask[idx])[0]

    n = len(ro)
    hit_chance = blame_localisation(credits["reinforce"], first_wrong, mask)
    out_methods = {}
    for i, (name, c) in enumerate(credits.items()):
        out_methods[name] = {
            "correlation": credit_correlation(c, truth, mask),
            "correlation_ci": bootstrap(lambda idx: corr(c, idx), n, resamples=resamples, seed=seed + i),
            "blame": blame_localisation(c, first_wrong, mask)[0],
            "blame_ci": bootstrap(lambda idx: blame(c, idx), n, resamples=resamples, seed=seed + 100 + i),
        }
    wrong_work = first_wrong >= 0
    right = marks == 1.0
    picked, seen = [], set()  # the first wrong reply (first wrong token not at the very start) of each problem
    for b in range(n):
        if len(picked) < examples and wrong_work[b] and int(first_wrong[b]) >= 3 and b // group not in seen:
            picked.append(b)
            seen.add(b // group)
    example_rows = []
    for b in picked:
        L = int(ro.lengths[b])
        example_rows.append({
            "prompt": graded[b].prompt, "target": graded[b].target,
            "tokens": [tokenizer.decode([t]) for t in ro.response_ids[b, :L].tolist()],
            "first_wrong": int(first_wrong[b]), "mark": float(marks[b]),
            "truth": [round(v, 4) for v in truth[b, :L].tolist()],
            "credit": {name: [round(v, 4) for v in c[b, :L].tolist()] for name, c in credits.items()},
        })
    return {
        "answers": n, "prompts": prompts, "group": group, "truth_k": truth_k, "mc_k": mc_k,
        "sample_accuracy": float(right.float().mean()),
        "wrong_work": int(wrong_work.sum()),
        "right_despite_wrong_work": int((wrong_work & right).sum()),
        "chance": hit_chance[1],
        "reliability": reliability,
        "truth_blame": blame_localisation(truth, first_wrong, mask)[0],
        "truth_blame_ci": bootstrap(lambda idx: blame(truth, idx), n, resamples=resamples, seed=seed + 200),
        "methods": out_methods,
        "examples": example_rows,
    }


def run_credit_accuracy(*, seed: int = 0, prompts: int = 25, group: int = 8, truth_k: int = 32, mc_k: int = 4,
                        warmup_steps: int = 50, mid_steps: int = 100, dpo_steps: int = 60, resamples: int = 1000,
                        out: Optional[Path] = RESULTS_PATH, progress: bool = True) -> dict:
    """Train the checkpoints (:func:`train_checkpoints`), measure both (:func:`measure_checkpoint`),
    and (unless ``out`` is None) write JSON to ``out``. Returns ``checkpoints`` (``"start"`` and
    ``"mid"``, each with its held-out greedy ``accuracy``), the settings and the time taken."""
    import transformers

    from . import __version__

    t0 = time.perf_counter()
    models = train_checkpoints(seed=seed, warmup_steps=warmup_steps, mid_steps=mid_steps, dpo_steps=dpo_steps,
                               progress=progress)
    task, tokenizer = models["task"], models["tokenizer"]
    train_seconds = time.perf_counter() - t0
    checkpoints = {}
    for name in ("start", "mid"):
        policy, critic = models[name], models[f"critic_{name}"]
        result = measure_checkpoint(policy, critic, models["dpo"], models["start"], tokenizer, task,
                                    prompts=prompts, group=group, truth_k=truth_k, mc_k=mc_k, seed=seed,
                                    resamples=resamples)
        result["accuracy"] = accuracy(policy, tokenizer, task.heldout, max_new_tokens=task.max_new_tokens)
        checkpoints[name] = result
    checkpoints["mid"]["trained_answers"] = models["history"]["mid"][-1]["samples"]
    results = {
        "command": "python -m rlcore.experiments credit-accuracy" + (f" --seed {seed}" if seed else ""),
        "seed": seed, "warmup_steps": warmup_steps, "mid_steps": mid_steps, "dpo_steps": dpo_steps,
        "lambdas": list(LAMBDAS), "methods": list(METHODS),
        "dpo_accuracy": accuracy(models["dpo"], tokenizer, task.heldout, max_new_tokens=task.max_new_tokens),
        "checkpoints": checkpoints,
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__, "rlcore": __version__},
        "threads": torch.get_num_threads(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "train_seconds": round(train_seconds, 1),
        "total_seconds": round(time.perf_counter() - t0, 1),
    }
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(results, indent=1, allow_nan=False) + "\n")
    return results


def load_results(path: Path = RESULTS_PATH) -> dict:
    """The results :func:`run_credit_accuracy` saved (by default the file shipped with the package)."""
    return json.loads(Path(path).read_text())


def main_credit_accuracy(args) -> int:
    """``python -m rlcore.experiments credit-accuracy``: run with the defaults (``--seed``, ``--out``,
    ``--threads`` apply), write the file and print where it went and the time taken."""
    torch.set_num_threads(args.threads or 1)
    out = args.out or RESULTS_PATH
    results = run_credit_accuracy(seed=args.seed, out=out)
    print(json.dumps({"experiment": "credit-accuracy", "out": str(out), "total_seconds": results["total_seconds"]}))
    return 0
