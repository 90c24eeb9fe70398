"""Measure every claim the chapters assert, over seeds and CPU kernel families.

    python -m rlcore.robustness [--seeds 0 1 2 3 4] [--kernels native default] [--jobs 2]
                                [--notebooks chapters/01_a_story.ipynb ...] [--out PATH]

Each chapter runs once per (seed, kernel family) with ``RLCORE_SEED`` and
``ATEN_CPU_CAPABILITY`` set (``native`` leaves the processor's own choice), and with
``RLCORE_CLAIMS_MEASURE=1``, so :func:`rlcore.reproducibility.check` records every claim instead of
stopping at the first that fails. The table printed at the end has one row per claim: its bounds,
the lowest and highest value measured, and the *margin*, how far the worst run stayed inside the
bounds. A claim with a negative margin failed on some seed or processor: its threshold, or its
prose, is wrong. The results (every value of every run) are written as JSON to ``--out``.

``make robustness`` is the pass/fail version: every notebook under nbval at two other seeds and
with the portable kernels.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional, Sequence

__all__ = ["run_notebook", "sweep", "claim_table", "main"]

_EXECUTE = """
import sys, nbformat, nbclient
path = sys.argv[1]
nb = nbformat.read(path, as_version=4)
nbclient.NotebookClient(nb, timeout=900, kernel_name="python3",
                        resources={"metadata": {"path": sys.argv[2]}}).execute()
"""


def run_notebook(path: Path, *, seed: int, kernels: str) -> dict:
    """Execute one notebook with ``RLCORE_SEED=seed`` and the given kernel family; return its claims."""
    with tempfile.NamedTemporaryFile("r", suffix=".jsonl", delete=False) as log:
        log_path = log.name
    env = dict(os.environ, RLCORE_SEED=str(seed), RLCORE_CLAIMS_LOG=log_path, RLCORE_CLAIMS_MEASURE="1",
               TQDM_DISABLE="1")
    env.pop("ATEN_CPU_CAPABILITY", None)
    if kernels != "native":
        env["ATEN_CPU_CAPABILITY"] = kernels
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _EXECUTE, str(path), str(Path(path).parent)], env=env,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - start
    lines = Path(log_path).read_text(encoding="utf-8").splitlines()
    os.unlink(log_path)
    claims = [json.loads(line) for line in lines if line.strip()]
    error = None
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()
        error = "\n".join(tail[-15:])
    return {"notebook": Path(path).name, "seed": seed, "kernels_requested": kernels,
            "kernels": claims[0]["kernels"] if claims else None, "seconds": seconds,
            "error": error, "claims": claims}


def sweep(notebooks: Sequence[Path], *, seeds: Sequence[int], kernels: Sequence[str], jobs: int = 2,
          progress: bool = True) -> list[dict]:
    """Every notebook at every (seed, kernel family), ``jobs`` at a time, longest notebooks first."""
    tasks = [(nb, s, k) for nb in notebooks for k in kernels for s in seeds]
    done: list[dict] = []
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(run_notebook, nb, seed=s, kernels=k) for nb, s, k in tasks]
        for fut in futures:
            run = fut.result()
            done.append(run)
            if progress:
                status = "ok" if run["error"] is None else "ERROR"
                failed = [c["name"] for c in run["claims"] if not c["ok"]]
                print(f"[{len(done)}/{len(tasks)}] {run['notebook']} seed {run['seed']} "
                      f"{run['kernels_requested']}: {status}, {len(run['claims'])} claims, "
                      f"{len(failed)} failed {failed if failed else ''} ({run['seconds']:.0f} s)",
                      file=sys.stderr, flush=True)
    return done


def claim_table(runs: Sequence[dict]) -> list[dict]:
    """One row per claim: bounds, values over the runs, min, max and the worst margin."""
    rows: dict[str, dict] = {}
    for run in runs:
        for c in run["claims"]:
            row = rows.setdefault(c["name"], {"name": c["name"], "above": c["above"], "below": c["below"],
                                              "note": c["note"], "values": [], "runs": []})
            row["values"].append(c["value"])
            row["runs"].append(f"seed {c['seed']} {c['kernels']}")
    for row in rows.values():
        v = row["values"]
        row["min"], row["max"], row["n"] = min(v), max(v), len(v)
        margins = []
        if row["above"] is not None:
            margins.append(row["min"] - row["above"])
        if row["below"] is not None:
            margins.append(row["below"] - row["max"])
        row["margin"] = min(margins)
    return list(rows.values())


def format_table(rows: Sequence[dict]) -> str:
    lines = ["| claim | bounds | min | max | runs | margin |", "|---|---|---|---|---|---|"]
    for r in rows:
        bounds = " and ".join(s for s in (f"> {r['above']:.4g}" if r["above"] is not None else "",
                                          f"< {r['below']:.4g}" if r["below"] is not None else "") if s)
        flag = "" if r["margin"] > 0 else " **FAILS**"
        lines.append(f"| {r['name']} | {bounds} | {r['min']:.4g} | {r['max']:.4g} | {r['n']} | "
                     f"{r['margin']:+.3g}{flag} |")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rlcore.robustness", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--kernels", nargs="+", default=["native", "default"],
                        help="CPU kernel families: native (the processor's choice), default, avx2, avx512")
    parser.add_argument("--notebooks", type=Path, nargs="+", default=None,
                        help="default: every chapter in ./chapters")
    parser.add_argument("--jobs", type=int, default=2, help="notebooks executed at once")
    parser.add_argument("--out", type=Path, default=None, help="write every run's claims here as JSON")
    args = parser.parse_args(argv)
    notebooks = args.notebooks or sorted(Path("chapters").glob("[0-9]*.ipynb"))
    if not notebooks:
        parser.error("no notebooks found: run from the repository root or pass --notebooks")
    start = time.perf_counter()
    runs = sweep(notebooks, seeds=args.seeds, kernels=args.kernels, jobs=args.jobs)
    rows = claim_table(runs)
    print(format_table(rows))
    errors = [r for r in runs if r["error"]]
    for r in errors:
        print(f"\n{r['notebook']} seed {r['seed']} {r['kernels_requested']} raised:\n{r['error']}")
    total = time.perf_counter() - start
    print(f"\n{len(runs)} runs in {total / 60:.1f} min; {sum(r['margin'] <= 0 for r in rows)} of {len(rows)} "
          f"claims fail somewhere; {len(errors)} runs raised")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"seeds": args.seeds, "kernels": args.kernels, "total_seconds": total,
                                        "claims": rows, "runs": runs}, indent=1) + "\n")
    return 0 if not errors and all(r["margin"] > 0 for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
