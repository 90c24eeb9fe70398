"""Benchmarks, run on demand:  ``python -m rlcore.bench gae``, ``logprobs`` and ``trl``.

Not a test: timings depend on the machine. Each benchmark times its contenders side by side in
one process on the same inputs, reports medians and ratios, and checks that they agree.

``gae`` compares, in float32 with dones and masks:

* ``rlcore.gae`` — the blocked scan of ``rlcore.scan`` (one matrix product per 16-step chunk,
  log-depth carries between chunks);
* ``loop`` — the per-step reversed Python loop used by TRL and CleanRL (one iteration per step);
* ``lfilter`` — SciPy's IIR filter, Spinning Up's ``discount_cumsum`` (it cannot handle dones,
  so it gets the same-sized problem without them: a lower bound on what it would cost);
* ``scan`` — ``rlcore.scan.discounted_reverse_scan`` on exactly lfilter's problem (the same
  residuals, no dones, no masks, no checks): the scan alone, like for like with lfilter, so that
  the rest of ``rlcore.gae``'s time is seen to be its bookkeeping (checks, δ, dones, masks, returns);
* ``copy`` — copying the same bytes once, the floor no implementation can beat.

It also times ``rlcore.gae`` with the masks but without dones: one answer per row, the shape of
language-model RL, where the cost of finding and cutting at episode ends is not paid.

``trl`` trains chapter 8's GRPO twice per seed from the shipped fifth grader, with the book's loop
and with TRL's ``GRPOTrainer`` (:mod:`rlcore.scale`), same settings and budget, one after the other
in this process on one thread: CPU seconds per 1,000 sampled answers (the evaluations excluded, as
each run evaluates the same held-out problems at the same points) and held-out accuracy, with the
ratio TRL / rlcore. ``--steps`` and ``--seeds`` set the budget.

``logprobs`` compares the peak extra memory and time of ``rlcore.token_logprobs`` with the naive
``log_softmax(logits).gather(...)`` on logits of ``8 × 512 × 32000`` float32.

Before timing ``gae`` the C allocator is brought to the state it has in a long-running training
process (:func:`settle_allocator`); ``--cold-allocator`` skips that, and every contender then pays
a page fault for each 4 KiB page of memory it allocates, touches and frees per call.

PyTorch uses its default number of threads unless ``--threads N`` says otherwise; the table's title
names it. SciPy's filter and the loop's Python steps use one core whatever the setting, so
``--threads 1`` compares core for core, as chapter 5 does.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Callable, Optional

import numpy as np
import torch

from .advantages import gae
from .scan import discounted_reverse_scan
from .tokens import token_logprobs

__all__ = [
    "gae_loop",
    "discount_cumsum_lfilter",
    "time_call",
    "settle_allocator",
    "bench_gae",
    "bench_logprobs",
    "main",
]


def gae_loop(rewards, values, *, gamma, lam, dones=None, mask=None, last_value=None):
    """GAE the way most PPO code writes it: a reversed Python loop over time steps.

    ``A_t = δ_t + γλ (1 − done_t) A_{t+1}`` one column at a time (vectorised over the batch only).
    Same conventions and results as :func:`rlcore.gae`; kept as the benchmark's baseline.
    """
    B, T = rewards.shape
    real = torch.ones_like(rewards, dtype=torch.bool) if mask is None else mask.bool()
    ends = torch.zeros_like(real) if dones is None else dones.bool()
    nxt_real = torch.cat([real[:, 1:], real[:, -1:]], dim=1)
    cont = (real & ~ends & nxt_real).to(rewards.dtype)
    r, v = rewards * real, values * real
    boot = torch.zeros(B, dtype=rewards.dtype) if last_value is None else last_value.to(rewards.dtype)
    adv = torch.zeros_like(r)
    last_adv = torch.zeros(B, dtype=rewards.dtype)
    for t in reversed(range(T)):
        next_v = v[:, t + 1] if t + 1 < T else boot
        delta = r[:, t] + gamma * next_v * cont[:, t] - v[:, t]
        last_adv = delta + gamma * lam * cont[:, t] * last_adv
        adv[:, t] = last_adv
    adv = adv * real
    return adv, adv + v


def discount_cumsum_lfilter(x: np.ndarray, discount: float) -> np.ndarray:
    """``y_t = x_t + discount · y_{t+1}`` along the last axis with ``scipy.signal.lfilter``
    (Spinning Up's ``discount_cumsum``). No dones, no masks."""
    from scipy.signal import lfilter

    return lfilter([1.0], [1.0, -discount], x[..., ::-1], axis=-1)[..., ::-1]


def time_call(fn: Callable[[], object], *, repeats: int = 7, min_seconds: float = 0.2) -> float:
    """Median wall time of ``fn()`` in seconds (after one warm-up call)."""
    fn()
    times = []
    deadline = time.perf_counter() + min_seconds
    while len(times) < repeats or (time.perf_counter() < deadline and len(times) < 50):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def settle_allocator() -> None:
    """Allocate and free one 31 MiB block, as a training process does all the time.

    glibc's ``malloc`` serves blocks above a threshold (128 KiB at start) with fresh pages from
    the OS and trims freed memory back to it; freeing a large block raises both thresholds (up
    to 32 MiB). Until that has happened, a function that allocates a few MiB per call pays a
    page fault for every page it touches, which on a small VM costs more than the arithmetic
    being measured. This puts every contender in the steady state of a real run.
    """
    block = torch.empty(31 * 2**20 // 4, dtype=torch.float32)
    del block


def _gae_inputs(B: int, T: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    rewards = torch.randn(B, T, generator=g)
    values = torch.randn(B, T, generator=g)
    dones = torch.rand(B, T, generator=g) < 0.01
    lengths = torch.randint(T // 2, T + 1, (B,), generator=g)
    mask = torch.arange(T)[None, :] < lengths[:, None]
    last_value = torch.randn(B, generator=g)
    return rewards, values, dones, mask, last_value


def bench_gae(shapes=((256, 1024), (64, 4096), (16, 16384)), *, gamma=0.99, lam=0.95,
              repeats: int = 7, include_loop: bool = True, warm_allocator: bool = True,
              out=sys.stdout) -> list[dict]:
    """Time rlcore.gae against the loop, lfilter and a copy; returns one dict per shape."""
    if warm_allocator:
        settle_allocator()
    rows = []
    for B, T in shapes:
        rewards, values, dones, mask, last_value = _gae_inputs(B, T)
        kw = dict(gamma=gamma, lam=lam, dones=dones, mask=mask, last_value=last_value)
        fast, _ = gae(rewards, values, **kw)
        row = {"B": B, "T": T}
        row["rlcore"] = time_call(lambda: gae(rewards, values, **kw), repeats=repeats)
        no_dones = dict(kw, dones=None)  # one answer per row: the language-model case
        row["rlcore_no_dones"] = time_call(lambda: gae(rewards, values, **no_dones), repeats=repeats)
        if include_loop:
            row["max_abs_diff_no_dones"] = float(
                (gae(rewards, values, **no_dones)[0] - gae_loop(rewards, values, **no_dones)[0]).abs().max())
        if include_loop:
            slow, _ = gae_loop(rewards, values, **kw)
            row["max_abs_diff"] = float((fast - slow).abs().max())
            row["loop"] = time_call(lambda: gae_loop(rewards, values, **kw), repeats=repeats)
        deltas_t = rewards + gamma * values - values
        deltas = deltas_t.numpy()
        row["lfilter"] = time_call(lambda: discount_cumsum_lfilter(deltas, gamma * lam), repeats=repeats)
        row["scan"] = time_call(lambda: discounted_reverse_scan(deltas_t, gamma * lam), repeats=repeats)
        same = torch.from_numpy(discount_cumsum_lfilter(deltas, gamma * lam).copy()).to(deltas_t.dtype)
        row["scan_vs_lfilter_max_abs_diff"] = float((discounted_reverse_scan(deltas_t, gamma * lam) - same).abs().max())
        row["copy"] = time_call(lambda: rewards.clone(), repeats=repeats)
        rows.append(row)
    _print_gae_table(rows, out)
    return rows


def _print_gae_table(rows, out) -> None:
    head = f"{'B x T':>12} {'rlcore.gae':>11} {'loop':>10} {'lfilter':>10} {'scan':>8} {'copy':>9} " \
           f"{'loop/rlcore':>12} {'lfilter/rlcore':>15} {'lfilter/scan':>13} {'rlcore/copy':>12} {'max|diff|':>10}"
    print(f"GAE, float32, with dones and masks (median wall time, ms; {torch.get_num_threads()} "
          f"PyTorch thread(s))", file=out)
    print(head, file=out)
    for r in rows:
        loop = r.get("loop", float("nan"))
        print(
            f"{r['B']:>5} x {r['T']:<6}{r['rlcore'] * 1e3:>11.2f} {loop * 1e3:>10.2f} "
            f"{r['lfilter'] * 1e3:>10.2f} {r['scan'] * 1e3:>8.2f} {r['copy'] * 1e3:>9.3f} "
            f"{loop / r['rlcore']:>12.1f} {r['lfilter'] / r['rlcore']:>15.2f} "
            f"{r['lfilter'] / r['scan']:>13.2f} {r['rlcore'] / r['copy']:>12.1f} "
            f"{r.get('max_abs_diff', float('nan')):>10.1e}",
            file=out,
        )
    print("loop: one Python step per time step (TRL, CleanRL); lfilter: SciPy, no dones or masks; "
          "scan: rlcore's scan on lfilter's exact problem; copy: one copy of the rewards", file=out)
    worst = max(r["scan_vs_lfilter_max_abs_diff"] for r in rows)
    print(f"max|diff|: rlcore.gae vs loop; scan vs lfilter on the same problem: {worst:.1e}", file=out)
    print("rlcore.gae with masks but no dones (one answer per row, as in language-model RL):", file=out)
    for r in rows:
        print(f"{r['B']:>5} x {r['T']:<6}{r['rlcore_no_dones'] * 1e3:>8.2f} ms, lfilter / it "
              f"{r['lfilter'] / r['rlcore_no_dones']:.2f}, dones cost {r['rlcore'] / r['rlcore_no_dones']:.2f}x"
              + (f", max|diff| vs loop {r['max_abs_diff_no_dones']:.1e}" if "max_abs_diff_no_dones" in r else ""),
              file=out)


def bench_logprobs(B: int = 8, T: int = 512, V: int = 32000, *, repeats: int = 3, out=sys.stdout) -> dict:
    """Peak extra memory and median time of ``rlcore.token_logprobs`` vs the naive
    ``log_softmax(logits).gather(...)`` on ``B × T × V`` float32 logits.

    Memory is the growth of the process's peak resident set (``ru_maxrss``) while one call runs,
    measured in a fresh subprocess per contender so that neither sees the other's allocations.
    """
    size = B * T * V * 4
    result = {"logits_bytes": size}
    for name in ("naive", "rlcore"):
        result[f"{name}_peak_extra_bytes"] = _peak_extra_bytes(name, B, T, V)
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(B, T, V, generator=g)
    tokens = torch.randint(0, V, (B, T), generator=g)
    naive = lambda: _naive_logprobs(logits, tokens)  # noqa: E731
    ours = lambda: token_logprobs(logits, tokens)  # noqa: E731
    result["max_abs_diff"] = float((naive() - ours()).abs().max())
    result["naive_seconds"] = time_call(naive, repeats=repeats, min_seconds=0.0)
    result["rlcore_seconds"] = time_call(ours, repeats=repeats, min_seconds=0.0)
    print(f"token_logprobs on logits {B}x{T}x{V} float32 ({size / 2**20:.0f} MiB); "
          f"max |diff| {result['max_abs_diff']:.1e}", file=out)
    for name in ("naive", "rlcore"):
        extra = result[f"{name}_peak_extra_bytes"]
        print(f"  {name:>7}: peak extra memory {extra / 2**20:8.1f} MiB ({extra / size:.3f}x the logits), "
              f"median time {result[f'{name}_seconds'] * 1e3:8.1f} ms", file=out)
    return result


def _naive_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(logits, dim=-1).gather(-1, tokens[..., None]).squeeze(-1)


_MEMORY_PROBE = """
import resource, sys, torch
from rlcore.bench import _naive_logprobs
from rlcore.tokens import token_logprobs
B, T, V, which = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
g = torch.Generator().manual_seed(0)
logits = torch.randn(B, T, V, generator=g)
tokens = torch.randint(0, V, (B, T), generator=g)
fn = _naive_logprobs if which == "naive" else token_logprobs
fn(logits[:1, :8].contiguous(), tokens[:1, :8])  # warm up kernels and allocator
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
fn(logits, tokens)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print((after - before) * 1024)
"""


def _peak_extra_bytes(which: str, B: int, T: int, V: int) -> int:
    """Peak resident memory added by one call, in bytes (Linux ``ru_maxrss`` is in KiB)."""
    import subprocess

    out = subprocess.run([sys.executable, "-c", _MEMORY_PROBE, str(B), str(T), str(V), which],
                         capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1])


def bench_trl(*, steps: int = 100, seeds=(0, 1, 2), eval_every: int = 10, progress: bool = True,
              out_path=None) -> dict:
    """Chapter 8's GRPO on the book's loop and on TRL: CPU seconds per 1,000 answers (training only)
    and held-out accuracy per seed, their means and the ratio; prints a table. With ``out`` the
    result, every run's evaluation history included, is saved as JSON (chapter 12 reads
    ``rlcore/assets/results/trl_grpo.json``)."""
    from dataclasses import replace

    from .runs import run_grpo
    from .scale import run_trl
    from .settings import CHAPTER8_GRPO

    config = replace(CHAPTER8_GRPO, eval_every=eval_every)
    rows = []
    for seed in seeds:
        for name in ("rlcore", "trl"):
            cpu0, wall0 = time.process_time(), time.perf_counter()
            if name == "rlcore":
                run = run_grpo(config=config, seed=seed, steps=steps, progress=progress)
            else:
                run = run_trl(config, seed=seed, steps=steps, progress=progress)
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
            train_wall = run["history"][-1]["seconds"]  # training time, the evaluations excluded
            train_cpu = cpu * train_wall / wall  # one thread: CPU time follows wall time
            history = [{k: h[k] for k in ("step", "samples", "accuracy", "seconds")}
                       for h in run["history"] if "accuracy" in h]
            rows.append({"impl": name, "seed": seed, "answers": run["samples"], "accuracy": run["accuracy_after"],
                         "cpu_per_1k": 1000 * train_cpu / run["samples"], "wall_seconds": wall,
                         "history": history})
    out: dict = {}
    for name in ("rlcore", "trl"):
        mine = [r for r in rows if r["impl"] == name]
        out[name] = {"cpu_per_1k": statistics.mean(r["cpu_per_1k"] for r in mine),
                     "accuracy": statistics.mean(r["accuracy"] for r in mine),
                     "accuracy_runs": [r["accuracy"] for r in mine]}
    out["ratio_cpu"] = out["trl"]["cpu_per_1k"] / out["rlcore"]["cpu_per_1k"]
    out["rows"] = rows
    print(f"GRPO, {steps} steps x 128 answers, seeds {list(seeds)}, {torch.get_num_threads()} thread(s)")
    print(f"{'':>8} | {'CPU s / 1k answers':>18} | {'held-out accuracy (per seed)':>30}")
    for name in ("rlcore", "trl"):
        accs = ", ".join(f"{a:.3f}" for a in out[name]["accuracy_runs"])
        print(f"{name:>8} | {out[name]['cpu_per_1k']:>18.2f} | {out[name]['accuracy']:.3f} ({accs})")
    print(f"TRL / rlcore CPU time per answer: {out['ratio_cpu']:.2f}x")
    if out_path is not None:
        import json
        import platform

        out["settings"] = {"steps": steps, "seeds": list(seeds), "eval_every": eval_every,
                           "answers_per_step": config.answers_per_step, "threads": torch.get_num_threads(),
                           "torch": torch.__version__, "trl": _version("trl"), "transformers": _version("transformers"),
                           "cpu_capability": torch.backends.cpu.get_cpu_capability(), "machine": platform.machine()}
        with open(out_path, "w") as f:
            json.dump(out, f, indent=1)
            f.write("\n")
    return out


def _version(package: str) -> str:
    import importlib.metadata

    return importlib.metadata.version(package)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rlcore.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("which", choices=["gae", "logprobs", "trl", "all"])
    parser.add_argument("--steps", type=int, default=100, help="trl: book steps per run (128 answers each)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="trl: seeds")
    parser.add_argument("--out", default=None, help="trl: save the results (and every run's curve) as JSON here")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None,
                        help="PyTorch threads (default: PyTorch's own choice for this machine)")
    parser.add_argument("--cold-allocator", action="store_true",
                        help="do not settle the C allocator before timing gae (see settle_allocator)")
    args = parser.parse_args(argv)
    if args.threads is not None:
        if args.threads < 1:
            parser.error("--threads must be at least 1")
        torch.set_num_threads(args.threads)
    if args.which in ("gae", "all"):
        bench_gae(repeats=args.repeats, warm_allocator=not args.cold_allocator)
    if args.which in ("logprobs", "all"):
        bench_logprobs(repeats=min(args.repeats, 3))
    if args.which == "trl":  # not part of "all": it trains six models
        torch.set_num_threads(args.threads or 1)
        bench_trl(steps=args.steps, seeds=args.seeds, out_path=args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
