"""Head to head: every training method of the book on the same fifth grader, task, held-out set
and budget of sampled answers (chapter 10).

    python -m rlcore.experiments compare [--seeds 0 1 2 3 4] [--kernels native default] [--budget N] [--methods NAME ...] [--out PATH]
    python -m rlcore.experiments rloo-split [--seeds 0 1 2 3 4] [--jobs N]

The contestants are :data:`rlcore.settings.HEAD_TO_HEAD` (read when the comparison runs): every
method with one shared update (:data:`rlcore.settings.HEAD_TO_HEAD_UPDATE`), so that they differ in
their credit and in what the credit needs by design:

* ``reinforce``: ±1 per answer, one answer per problem (chapter 1's credit);
* ``reinforce_baseline``: the mark minus the batch's mean mark;
* ``rloo``: the mark minus the mean of the other answers to the same problem, 16 problems × 4 answers;
* ``ppo``: a critic, GAE over tokens, a k1 KL penalty in the reward (chapter 7's credit);
* ``grpo``: the mark against its group of 8 answers, each answer's tokens averaged (chapter 8);
* ``dr_grpo``: the same without the division by the group's std, and a constant normaliser;
* ``dpo_online``: DPO on pairs re-sampled from the current policy (chapter 9);
* ``dpo_offline``: the same with one fixed pool of pairs sampled from the fifth grader;
* ``reinforce_one_pass``: the control, chapter 1's REINFORCE exactly: one plain step per batch.

**The budget** is a number of answers sampled and graded. Each method's number of steps is the
budget divided by the answers it samples per step (rounded down). Online DPO samples at least
``prompts_per_round × samples_per_prompt`` answers per step, and more when a round gives too few
pairs; it gets ``budget // that`` steps and its curve is cut at the budget (the loops have no
"stop at N samples" switch, so the run may go a little past the budget; the final accuracy is the
last evaluation within it, while KL and length are measured on the policy at the end of the run).
Offline DPO runs as many steps as online DPO and samples its whole pool of pairs (one per step slot,
as far as the training loop's cap on sampling rounds (:class:`~rlcore.train.PairPool`) allows; a smaller pool is cycled)
from the fifth grader before its first step; its curve counts the
answers *behind the pairs trained on so far*, the pool's cost pro-rated over the steps, so that
offline and online DPO are compared at equal numbers of answers used (``pool_samples`` holds the
pool's real cost).

Every run evaluates held-out greedy accuracy about every ``eval_samples`` answers; afterwards, for
every method alike, :func:`policy_kl` measures the exact per-token KL(π ‖ π_ref) to the shipped
fifth grader and the mean length of answers the final policy samples. The results (a curve per run
at its evaluation points, and the statistics :func:`summarise` computes) are written as JSON to
:data:`RESULTS_PATH`, inside the package so that a chapter can load them anywhere.

``rloo-split`` runs the same machinery on three variants of the batch baseline and RLOO (the suite
``"rloo_split"`` of :data:`SUITES`) for chapter 10's exercise that separates RLOO's baseline from its
batch shape, and writes ``head_to_head_rloo_split.json`` next to the comparison's file.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import torch

from . import settings as _settings
from .masked import masked_mean
from .policy import ASSETS, load_policy
from .reproducibility import cpu_kernels
from .rollout import generate, response_forward
from . import runs as _runs

__all__ = [
    "METHODS",
    "SUITES",
    "Suite",
    "DEFAULT_BUDGET",
    "DEFAULT_SEEDS",
    "DEFAULT_KERNELS",
    "DEFAULT_EVAL_SAMPLES",
    "THRESHOLDS",
    "RESULTS_PATH",
    "method_configs",
    "policy_kl",
    "run_method",
    "run_compare",
    "summarise",
    "time_to",
    "mean_curve",
    "t_interval",
    "load_results",
    "command_line",
    "main_compare",
]

#: The methods, in the order the chapter shows them.
METHODS = tuple(_settings.HEAD_TO_HEAD)
#: Answers sampled and graded per run.
DEFAULT_BUDGET = 20_000
DEFAULT_SEEDS = (0, 1, 2, 3, 4)
#: CPU kernel families the comparison runs under (``ATEN_CPU_CAPABILITY``; ``"native"`` is the
#: processor's own choice). Each rounds differently, so each seed gives another trajectory in
#: each family, as on a reader's machine; the chapter's claims must hold over all of them.
DEFAULT_KERNELS = ("native", "default")
#: Held-out accuracy is measured about every this many sampled answers.
DEFAULT_EVAL_SAMPLES = 640
#: Accuracy levels whose first crossing is timed (in answers and in seconds).
THRESHOLDS = (0.8, 0.9)
#: Where ``python -m rlcore.experiments compare`` writes its results by default.
RESULTS_PATH = ASSETS / "results" / "compare.json"
#: Seed of the answers :func:`policy_kl` samples after training (the same for every run).
KL_SEED = 10_007


@dataclass(frozen=True)
class Suite:
    """One comparison: its task, where its contestants live in :mod:`rlcore.settings` (read when it
    runs), its defaults and its results file. ``contestants`` names a dict of
    :class:`~rlcore.train.TrainConfig` in :mod:`rlcore.settings`, or is a function that builds one
    from them."""

    task: str
    contestants: Union[str, Callable[[], dict]]
    budget: int
    seeds: tuple
    kernels: tuple
    eval_samples: int
    thresholds: tuple
    path: Path
    command: str

    def configs(self) -> dict:
        """The contestants' configurations, as :mod:`rlcore.settings` holds them now."""
        return self.contestants() if callable(self.contestants) else getattr(_settings, self.contestants)


def _rloo_split() -> dict:
    """Chapter 10's second exercise: RLOO differs from the batch baseline in its baseline and in its
    batch (16 problems × 4 answers against 64 × 1). These variants separate the two: the batch
    baseline on RLOO's 16 × 4, and RLOO on 32 × 2 and on 8 × 8, each with chapter 10's shared update
    and 64 answers a step (:data:`rlcore.settings.HEAD_TO_HEAD`, read now)."""
    h2h = _settings.HEAD_TO_HEAD
    return {"reinforce_baseline_16x4": replace(h2h["reinforce_baseline"], prompts_per_step=16, group_size=4),
            "rloo_32x2": replace(h2h["rloo"], prompts_per_step=32, group_size=2),
            "rloo_8x8": replace(h2h["rloo"], prompts_per_step=8, group_size=8)}


#: Every comparison by name. Chapter 10's head-to-head on addition (``compare``); chapter 10's
#: exercise that splits RLOO's baseline from its batch shape (``rloo-split``, the same budget, 5 seeds,
#: native kernels); and chapter 11's credit race on the running sums (``credit``, 5 seeds, native
#: kernels, 12,800 answers, Monte Carlo continuations counted as answers).
SUITES = {
    "head_to_head": Suite("addition", "HEAD_TO_HEAD", DEFAULT_BUDGET, DEFAULT_SEEDS, DEFAULT_KERNELS,
                          DEFAULT_EVAL_SAMPLES, THRESHOLDS, RESULTS_PATH, "compare"),
    "rloo_split": Suite("addition", _rloo_split, DEFAULT_BUDGET, DEFAULT_SEEDS, ("native",), DEFAULT_EVAL_SAMPLES,
                        THRESHOLDS, ASSETS / "results" / "head_to_head_rloo_split.json", "rloo-split"),
    "credit": Suite("running_sum", "CREDIT_RACE", 12_800, DEFAULT_SEEDS, ("native",), 1_280, (0.4, 0.5),
                    ASSETS / "results" / "credit_race.json", "credit"),
}


def method_configs(budget: Optional[int] = None, *, eval_samples: Optional[int] = None,
                   suite: str = "head_to_head") -> dict:
    """Each contestant of ``suite`` (:data:`SUITES`) and its configuration for a budget of ``budget``
    sampled answers (default: the suite's).

    Returns:
      A dict from each name of :data:`METHODS` (in that order) to a dict with ``config`` (its
      :class:`~rlcore.train.TrainConfig`) and ``answers_per_step``. In each config, ``steps`` is
      the budget divided by ``answers_per_step``, rounded down (for DPO, whose steps may sample
      more than one round, a ceiling on the steps the budget allows), and ``eval_every`` is the
      whole number of steps closest to ``eval_samples`` answers. :data:`rlcore.settings.HEAD_TO_HEAD`
      (or the suite's contestants) is read now, not at import. A method with Monte Carlo credit
      samples continuations too: its ``steps`` is only a ceiling, and the run stops on the budget.
    """
    spec = _suite(suite)
    budget = spec.budget if budget is None else budget
    eval_samples = spec.eval_samples if eval_samples is None else eval_samples
    if budget < 1 or eval_samples < 1:
        raise ValueError(f"budget and eval_samples must be >= 1, got {budget} and {eval_samples}")
    out = {}
    for name, config in spec.configs().items():
        per_step = config.answers_per_step
        steps = max(1, budget // per_step)
        eval_every = max(1, round(eval_samples / _samples_per_step(config, spec.task)))
        out[name] = {"config": replace(config, steps=steps, eval_every=eval_every), "answers_per_step": per_step}
    return out


def _samples_per_step(config, task_name: str) -> float:
    """About how many answers a step samples: with Monte Carlo credit, each answer's continuations too
    (``mc_samples`` from every state whose value is estimated), for spacing the evaluations."""
    if config.credit != "mc":
        return config.answers_per_step
    task = _settings.make_task(task_name)
    target = task.heldout[0].target
    states = 1 + sum(target.count(c) for c in task.step_ends) if config.mc_steps else len(target) + 1
    return config.answers_per_step * (1 + config.mc_samples * states)


def _suite(name: str) -> Suite:
    if name not in SUITES:
        raise ValueError(f"suite must be one of {list(SUITES)}, got {name!r}")
    return SUITES[name]


@torch.no_grad()
def policy_kl(model, reference, tokenizer, problems, *, seed: int = KL_SEED, max_new_tokens: int = 12) -> dict:
    r"""Exact per-token KL of ``model`` from ``reference`` on answers ``model`` samples.

    One answer per problem is sampled from ``model`` at temperature 1. At every real token
    position ``t`` of it, both models' full next-token distributions give
    :math:`\mathrm{KL}_t = \sum_v \pi(v \mid s_t) \log \frac{\pi(v \mid s_t)}{\pi_\text{ref}(v \mid s_t)}`
    (no single-sample estimator: the sum runs over the whole vocabulary).

    Returns:
      A dict with ``kl`` (the mean of :math:`\mathrm{KL}_t` over all real tokens, in nats per
      token), ``kl_per_answer`` (the mean over answers of :math:`\sum_t \mathrm{KL}_t`, the
      sequence-level KL) and ``response_length`` (the mean number of real tokens per answer,
      ``<eos>`` included).
    """
    ro = generate(model, tokenizer, [p.prompt for p in problems], temperature=1.0,
                  max_new_tokens=max_new_tokens, seed=seed, compute_logp=False)
    args = (ro.prompt_ids, ro.prompt_mask, ro.response_ids, ro.response_mask)
    logp = torch.log_softmax(response_forward(model, *args).float(), dim=-1)  # (B, R, V)
    ref_logp = torch.log_softmax(response_forward(reference, *args).float(), dim=-1)  # (B, R, V)
    kl = (logp.exp() * (logp - ref_logp)).sum(-1)  # (B, R) exact KL of each next-token distribution
    mask = ro.response_mask
    return {
        "kl": round(masked_mean(kl, mask).item(), 6),
        "kl_per_answer": round((kl * mask).sum(1).mean().item(), 5),
        "response_length": round(ro.lengths.float().mean().item(), 4),
    }


def time_to(curve: Sequence[dict], threshold: float) -> Optional[dict]:
    """The first evaluation point whose accuracy is at least ``threshold``:
    ``{"samples", "seconds", "step"}``, or ``None`` when the curve never gets there."""
    for point in curve:
        if point["accuracy"] >= threshold:
            return {"samples": point["samples"], "seconds": point["seconds"], "step": point["step"]}
    return None


def run_method(name: str, *, seed: int = 0, budget: Optional[int] = None,
               eval_samples: Optional[int] = None, steps: Optional[int] = None,
               device: str = "cpu", progress: bool = True, final_measures: bool = True,
               thresholds: Optional[Sequence[float]] = None, suite: str = "head_to_head") -> dict:
    """Train one method from its task's shipped fifth grader and return its record (JSON-ready).

    Args:
      name: one of :data:`METHODS` (or of the ``suite``'s contestants).
      seed, budget, eval_samples: as in :func:`method_configs`.
      steps: run only this many steps: a cheap prefix of the full run, identical to its first
        ``steps`` steps (except for ``dpo_offline``, whose pool of pairs grows with the steps).
      final_measures: also measure :func:`policy_kl` on the final policy (500 held-out prompts).
      thresholds: accuracies whose first crossing is recorded (default: the suite's).
      suite: which comparison (:data:`SUITES`).

    Returns:
      ``method``, ``seed``, ``config`` (the dataclass as a dict), ``curve`` (one
      ``{"step", "samples", "seconds", "accuracy"}`` per evaluation within the budget),
      ``final_accuracy`` (the curve's last point), ``samples`` and ``wall_seconds`` at that point,
      ``reached`` (``{"0.8": time_to(...), ...}``), ``train_samples`` (what the loop really
      sampled), for offline DPO ``pool_samples``, and with ``final_measures`` ``kl``,
      ``kl_per_answer`` and ``response_length``.
    """
    suite_spec = _suite(suite)
    budget = suite_spec.budget if budget is None else budget
    thresholds = suite_spec.thresholds if thresholds is None else thresholds
    specs = method_configs(budget, eval_samples=eval_samples, suite=suite)
    if name not in specs:
        raise ValueError(f"name must be one of {list(specs)}, got {name!r}")
    spec = specs[name]
    config = spec["config"]
    if steps is not None:
        config = replace(config, steps=steps)
    task = _settings.make_task(suite_spec.task)
    if suite_spec.task != "addition":  # as rlcore.runs.run does: the task's own budget
        config = replace(config, max_new_tokens=task.max_new_tokens)
    by_budget = budget if config.credit == "mc" and steps is None else None  # its steps cost more than answers
    result = _runs.run(name, config, seed=seed, device=device, progress=progress, task=suite_spec.task,
                       max_samples=by_budget)
    evals = [h for h in result["history"] if "accuracy" in h]
    curve = [{"step": h["step"], "samples": h["samples"], "seconds": round(h["seconds"], 3),
              "accuracy": h["accuracy"]} for h in evals]
    record = {"method": name, "seed": seed, "kernels": cpu_kernels(), "config": asdict(config),
              "train_samples": result["samples"]}
    if name == "dpo_offline":  # pro-rate the up-front pool over the steps: answers behind the pairs used
        pool = result["samples"]
        for point in curve:
            point["samples"] = round(pool * point["step"] / config.steps)
        record["pool_samples"] = pool
    curve = [p for p in curve if p["samples"] <= budget]
    record.update({
        "curve": curve,
        "final_accuracy": curve[-1]["accuracy"],
        "samples": curve[-1]["samples"],
        "wall_seconds": curve[-1]["seconds"],
        "reached": {str(t): time_to(curve, t) for t in thresholds},
    })
    if final_measures:
        model = result["model"]
        reference, tokenizer = load_policy(_runs.GRADER_DIRS[suite_spec.task], device=device)
        record.update(policy_kl(model, reference, tokenizer, task.heldout, max_new_tokens=config.max_new_tokens))
    return record


def _mean(xs):
    return statistics.mean(xs) if xs else None


def _std(xs):
    return statistics.stdev(xs) if len(xs) > 1 else 0.0 if xs else None


def summarise(runs: Sequence[dict], thresholds: Sequence[float] = THRESHOLDS) -> dict:
    """Statistics over seeds, one entry per method (in order of first appearance).

    Each entry: ``runs`` (how many seeds), ``final_accuracy`` / ``final_accuracy_std`` (mean and
    sample standard deviation over seeds; std 0 for one seed) and ``final_accuracy_min`` /
    ``_max``; for each threshold ``t``, ``reached[str(t)] = {"reached": k, "samples": mean,
    "seconds": mean}`` where the means are over the ``k`` seeds that reached ``t`` (``None`` when
    none did); ``kl``, ``kl_per_answer``, ``response_length`` (mean and ``_std``, when measured)
    and ``wall_seconds`` (mean).
    """
    by_method: dict[str, list[dict]] = {}
    for run in runs:
        by_method.setdefault(run["method"], []).append(run)
    out = {}
    for method, group in by_method.items():
        final = [r["final_accuracy"] for r in group]
        entry = {
            "runs": len(group),
            "final_accuracy": _mean(final), "final_accuracy_std": _std(final),
            "final_accuracy_min": min(final), "final_accuracy_max": max(final),
            "reached": {},
            "wall_seconds": _mean([r["wall_seconds"] for r in group]),
        }
        for t in thresholds:
            hits = [r["reached"].get(str(t)) for r in group]
            hits = [h for h in hits if h is not None]
            entry["reached"][str(t)] = {"reached": len(hits), "samples": _mean([h["samples"] for h in hits]),
                                        "seconds": _mean([h["seconds"] for h in hits])}
        for key in ("kl", "kl_per_answer", "response_length"):
            values = [r[key] for r in group if r.get(key) is not None]
            if values:
                entry[key], entry[f"{key}_std"] = _mean(values), _std(values)
        out[method] = entry
    return out


def t_interval(values: Sequence[float], axis: int = 0):
    r"""Mean and half-width of a 95% Student-t interval over runs (seeds):
    :math:`\bar x \pm t_{0.975,\,n-1}\, s / \sqrt n`, along ``axis`` (``n`` ≥ 2 runs)."""
    import numpy as np
    from scipy import stats

    values = np.asarray(values, dtype=float)
    n = values.shape[axis]
    if n < 2:
        raise ValueError(f"values must hold at least 2 runs along axis {axis}, got {n}")
    half = stats.t.ppf(0.975, n - 1) * values.std(axis=axis, ddof=1) / np.sqrt(n)
    return values.mean(axis=axis), half


def mean_curve(runs: Sequence[dict], grid: Sequence[float], *, band: str = "range"):
    """Accuracy of several runs (seeds) on a common grid of sample counts, by linear interpolation
    between evaluations (never extrapolated: NaN beyond a run's last evaluation).

    Returns:
      ``(mean, low, high)``: three ``numpy`` arrays of ``len(grid)``. With ``band="range"``,
      ``low``/``high`` are the smallest and largest run at each grid point; with ``band="t95"``,
      the ends of the 95% t-interval of the mean (:func:`t_interval`).
    """
    import numpy as np

    if band not in ("range", "t95"):
        raise ValueError(f"band must be 'range' or 't95', got {band!r}")

    grid = np.asarray(grid, dtype=float)
    rows = []
    for run in runs:
        x = np.array([p["samples"] for p in run["curve"]], dtype=float)
        y = np.array([p["accuracy"] for p in run["curve"]], dtype=float)
        row = np.interp(grid, x, y)
        row[(grid < x[0]) | (grid > x[-1])] = np.nan
        rows.append(row)
    rows = np.vstack(rows)  # (runs, len(grid))
    if band == "t95":
        mean, half = t_interval(rows)
        return mean, mean - half, mean + half
    return rows.mean(0), rows.min(0), rows.max(0)


def command_line(*, budget: int, seeds: Sequence[int], methods: Sequence[str], eval_samples: int,
                 out: Optional[Path] = None, kernels: Optional[Sequence[str]] = None,
                 suite: str = "head_to_head") -> str:
    """The shell command that reproduces a comparison (the suite's defaults left out)."""
    spec = _suite(suite)
    kernels = spec.kernels if kernels is None else kernels
    parts = [f"python -m rlcore.experiments {spec.command}"]
    if list(seeds) != list(spec.seeds):
        parts.append("--seeds " + " ".join(map(str, seeds)))
    if list(kernels) != list(spec.kernels):
        parts.append("--kernels " + " ".join(kernels))
    if budget != spec.budget:
        parts.append(f"--budget {budget}")
    if list(methods) != list(spec.configs()):
        parts.append("--methods " + " ".join(methods))
    if eval_samples != spec.eval_samples:
        parts.append(f"--eval-samples {eval_samples}")
    if out is not None and Path(out).resolve() != spec.path.resolve():
        parts.append(f"--out {out}")
    return " ".join(parts)


#: The kernel family this process was started with (PyTorch reads ``ATEN_CPU_CAPABILITY`` once, at
#: start-up, so a later change of the variable does not change the kernels in use).
_STARTUP_KERNELS = os.environ.get("ATEN_CPU_CAPABILITY", "").strip().lower() or "native"


def _runs_in_subprocess(family: str, *, methods, seeds, budget, eval_samples, device, suite, jobs) -> list[dict]:
    """The runs of one kernel family, made by a child process with ``ATEN_CPU_CAPABILITY`` set
    (PyTorch reads it once, at start-up)."""
    env = dict(os.environ)
    env.pop("ATEN_CPU_CAPABILITY", None)
    if family != "native":
        env["ATEN_CPU_CAPABILITY"] = family
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "runs.json"
        cmd = [sys.executable, "-m", "rlcore.experiments", SUITES[suite].command, "--kernels", family,
               "--seeds", *map(str, seeds), "--methods", *methods, "--budget", str(budget),
               "--eval-samples", str(eval_samples), "--device", device, "--threads", str(torch.get_num_threads()),
               "--jobs", str(jobs), "--out", str(out)]
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
        return load_results(out)["runs"]


def _run_in_worker(name: str, options: dict) -> dict:
    """One run in a worker process (one torch thread, no progress bar)."""
    torch.set_num_threads(1)
    return run_method(name, progress=False, **options)


def run_compare(*, methods: Optional[Sequence[str]] = None, seeds: Optional[Sequence[int]] = None,
                budget: Optional[int] = None, eval_samples: Optional[int] = None, device: str = "cpu",
                out: Optional[Path] = RESULTS_PATH, progress: bool = True,
                kernels: Optional[Sequence[str]] = None, suite: str = "head_to_head", jobs: int = 1) -> dict:
    """Run every method for every seed under every CPU kernel family, summarise, and (unless ``out``
    is None) write JSON to ``out``.

    Every argument left ``None`` takes the ``suite``'s default (:data:`SUITES`). ``kernels`` names
    ``ATEN_CPU_CAPABILITY`` values (``"native"`` leaves the processor's choice); the family this
    process runs under is run here, every other one by a child process. ``jobs`` runs that many
    runs at once, each in its own process with one thread.

    Returns the results: ``suite``, ``task``, ``command``, ``budget``, ``seeds``, ``kernels``, ``methods`` (name →
    ``answers_per_step`` and ``config``), ``eval_samples``, ``thresholds``, ``versions``
    (python, torch, transformers, rlcore), ``threads``, ``date``, ``total_seconds``, ``runs``
    (the :func:`run_method` records) and ``summary`` (:func:`summarise`).
    """
    import concurrent.futures
    import multiprocessing

    import transformers

    from . import __version__

    spec = _suite(suite)
    contestants = tuple(spec.configs())
    methods = contestants if methods is None else tuple(methods)
    seeds = spec.seeds if seeds is None else tuple(seeds)
    budget = spec.budget if budget is None else budget
    eval_samples = spec.eval_samples if eval_samples is None else eval_samples
    kernels = spec.kernels if kernels is None else kernels
    unknown = [m for m in methods if m not in contestants]
    if unknown or not methods:
        raise ValueError(f"methods must be a non-empty subset of {list(contestants)}, got {list(methods)}")
    if not seeds:
        raise ValueError("seeds must not be empty")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be an int >= 1, got {jobs!r}")
    kernels = [k.strip().lower() for k in kernels]
    if not kernels or len(set(kernels)) != len(kernels):
        raise ValueError(f"kernels must be a non-empty list without repeats, got {list(kernels)}")
    specs = method_configs(budget, eval_samples=eval_samples, suite=suite)
    options = dict(budget=budget, eval_samples=eval_samples, device=device, suite=suite)
    start = time.perf_counter()
    runs = []
    for family in kernels:
        if family != _STARTUP_KERNELS:
            runs += _runs_in_subprocess(family, methods=methods, seeds=seeds, budget=budget, jobs=jobs,
                                        eval_samples=eval_samples, device=device, suite=suite)
        elif jobs == 1:
            for name in methods:
                for seed in seeds:
                    runs.append(run_method(name, seed=seed, progress=progress, **options))
        else:
            context = multiprocessing.get_context("spawn")
            with concurrent.futures.ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
                futures = [pool.submit(_run_in_worker, name, {"seed": seed, **options})
                           for name in methods for seed in seeds]
                runs += [f.result() for f in futures]
    order = {m: i for i, m in enumerate(methods)}
    runs.sort(key=lambda r: order[r["method"]])  # stable: within a method, kernel family then seed
    results = {
        "suite": suite,
        "task": spec.task,
        "command": command_line(budget=budget, seeds=seeds, methods=methods, eval_samples=eval_samples, out=out,
                                kernels=kernels, suite=suite),
        "budget": budget,
        "seeds": list(seeds),
        "kernels": kernels,
        "eval_samples": eval_samples,
        "thresholds": list(spec.thresholds),
        "methods": {name: {"answers_per_step": specs[name]["answers_per_step"],
                           "config": asdict(specs[name]["config"])} for name in methods},
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__, "rlcore": __version__},
        "threads": torch.get_num_threads() if jobs == 1 else 1,
        "jobs": jobs,
        "device": device,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "total_seconds": round(time.perf_counter() - start, 1),
        "runs": runs,
        "summary": summarise(runs, thresholds=spec.thresholds),
    }
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(_dumps(results))
    return results


def _dumps(results: dict) -> str:
    """JSON with one line per run (small, and a re-run shows up as a readable diff)."""
    parts = []
    for key, value in results.items():
        if key == "runs":
            body = ",\n".join("  " + json.dumps(run, allow_nan=False) for run in value)
            parts.append(f' "runs": [\n{body}\n ]')
        else:
            parts.append(f" {json.dumps(key)}: " + json.dumps(value, indent=1, allow_nan=False).replace("\n", "\n "))
    return "{\n" + ",\n".join(parts) + "\n}\n"


def load_results(path: Optional[Path] = None, *, suite: str = "head_to_head") -> dict:
    """The results a comparison saved (by default the ``suite``'s file shipped with the package)."""
    return json.loads(Path(_suite(suite).path if path is None else path).read_text())


def main_compare(args, suite: str = "head_to_head") -> int:
    """``python -m rlcore.experiments compare`` (or ``credit``, the running sums' race): run, write
    the file, print one JSON line (the summary per method, the budget, the seeds, where the file went
    and the total time). ``args`` is the namespace that ``rlcore.experiments.main`` parsed; one torch
    thread unless ``--threads`` says otherwise."""
    if args.steps is not None:
        raise SystemExit(f"{SUITES[suite].command}: the budget (--budget, in sampled answers) sets every "
                         "method's steps; --steps does not apply")
    torch.set_num_threads(args.threads or 1)
    out = args.out or SUITES[suite].path
    results = run_compare(methods=args.methods, seeds=args.seeds, budget=args.budget, eval_samples=args.eval_samples,
                          device=args.device, out=out, kernels=args.kernels, suite=suite, jobs=args.jobs)
    line = {"experiment": SUITES[suite].command, "command": results["command"], "budget": results["budget"],
            "seeds": results["seeds"], "out": str(out), "total_seconds": results["total_seconds"],
            "summary": results["summary"]}
    print(json.dumps(line))
    return 0
