"""rlcore.compare: the head-to-head machinery (chapter 10) on a tiny budget, the results file's
schema, and the summary statistics on a hand-made results dict."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from rlcore import compare, experiments, settings
from rlcore.compare import (
    METHODS,
    RESULTS_PATH,
    mean_curve,
    method_configs,
    policy_kl,
    run_compare,
    summarise,
    time_to,
)
from rlcore.policy import load_policy

RUN_KEYS = {"method", "seed", "kernels", "config", "curve", "final_accuracy", "samples", "wall_seconds", "reached",
            "train_samples", "kl", "kl_per_answer", "response_length"}
TOP_KEYS = {"command", "budget", "seeds", "kernels", "eval_samples", "thresholds", "methods", "versions", "threads",
            "device", "date", "total_seconds", "runs", "summary"}


# ---------------------------------------------------------------- configurations from the budget

def test_every_method_fits_the_budget_and_shares_one_update():
    budget = 16_000
    specs = method_configs(budget, eval_samples=640)
    assert list(specs) == list(METHODS)
    for name, spec in specs.items():
        config = spec["config"]
        assert config.steps * spec["answers_per_step"] <= budget < (config.steps + 1) * spec["answers_per_step"], name
        assert abs(config.eval_every * spec["answers_per_step"] - 640) <= spec["answers_per_step"] / 2 + 1e-9, name
    # every contestant but the control runs the same update: only the credit (and what it needs) differs
    shared = settings.HEAD_TO_HEAD_UPDATE
    for name in METHODS:
        config = specs[name]["config"]
        if name == "reinforce_one_pass":
            continue
        for field, value in shared.items():
            if field == "loss_agg_mode" and name in ("grpo", "dr_grpo"):
                continue  # GRPO's per-answer token mean and Dr. GRPO's constant are part of their credit
            if field == "clip_eps" and config.credit == "dpo":
                assert config.clip_eps is None  # DPO's loss has no importance ratio to clip
                continue
            assert getattr(config, field) == value, (name, field)
        if config.credit != "dpo":
            assert spec_answers(specs, name) == 64, name  # the same answers per step
    credit = {name: specs[name]["config"].credit for name in METHODS}
    assert credit == {"reinforce": "sign", "reinforce_baseline": "batch", "rloo": "rloo", "ppo": "gae",
                      "grpo": "group", "dr_grpo": "group", "dpo_online": "dpo", "dpo_offline": "dpo",
                      "reinforce_one_pass": "sign"}
    strip = dict(steps=0, eval_every=0)
    assert replace(specs["reinforce_one_pass"]["config"], **strip) == replace(settings.CHAPTER1_REINFORCE, **strip)
    assert replace(specs["ppo"]["config"], **strip, **shared) == replace(settings.CHAPTER7_PPO, **strip, **shared)
    assert specs["dr_grpo"]["config"].scale_rewards == "none" and specs["grpo"]["config"].scale_rewards == "group"
    assert specs["dpo_online"]["config"].online and not specs["dpo_offline"]["config"].online
    assert specs["dpo_online"]["config"].steps == specs["dpo_offline"]["config"].steps


def spec_answers(specs, name):
    return specs[name]["answers_per_step"]


def test_configs_are_read_from_the_settings_at_call_time(monkeypatch):
    changed = dict(settings.HEAD_TO_HEAD, grpo=replace(settings.HEAD_TO_HEAD["grpo"], lr=1.234e-5))
    monkeypatch.setattr(settings, "HEAD_TO_HEAD", changed)
    specs = method_configs(4_000)
    assert specs["grpo"]["config"].lr == 1.234e-5 and specs["dr_grpo"]["config"].lr == 1e-4


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="budget"):
        method_configs(0)
    with pytest.raises(ValueError, match="name"):
        compare.run_method("sarsa", budget=100)
    with pytest.raises(ValueError, match="methods"):
        run_compare(methods=["sarsa"], out=None)


# ---------------------------------------------------------------- statistics on hand-made runs

def _run(method, seed, accs, samples_per_eval=100, seconds_per_eval=2.0, kl=0.1, length=9.0):
    curve = [{"step": 10 * i, "samples": samples_per_eval * i, "seconds": seconds_per_eval * i, "accuracy": a}
             for i, a in enumerate(accs)]
    return {"method": method, "seed": seed, "curve": curve, "final_accuracy": accs[-1],
            "samples": curve[-1]["samples"], "wall_seconds": curve[-1]["seconds"],
            "reached": {str(t): time_to(curve, t) for t in (0.8, 0.9)}, "kl": kl, "response_length": length}


def test_time_to_is_the_first_crossing():
    curve = _run("m", 0, [0.4, 0.85, 0.7, 0.95])["curve"]
    assert time_to(curve, 0.8) == {"samples": 100, "seconds": 2.0, "step": 10}  # the first point >= 0.8
    assert time_to(curve, 0.9) == {"samples": 300, "seconds": 6.0, "step": 30}
    assert time_to(curve, 0.99) is None
    assert time_to(curve, 0.85) == {"samples": 100, "seconds": 2.0, "step": 10}  # ">=": reaching it counts


def test_summarise_on_a_hand_made_results_dict():
    runs = [
        _run("a", 0, [0.4, 0.8, 0.9], kl=0.1, length=8.0),
        _run("a", 1, [0.4, 0.7, 0.8], kl=0.3, length=10.0),
        _run("a", 2, [0.4, 0.6, 0.7], kl=0.2, length=9.0),
        _run("b", 0, [0.4, 0.5, 0.6], seconds_per_eval=1.0),
    ]
    out = summarise(runs)
    assert list(out) == ["a", "b"]
    a = out["a"]
    assert a["runs"] == 3
    assert a["final_accuracy"] == pytest.approx(0.8)
    assert a["final_accuracy_std"] == pytest.approx(0.1)  # sample std of 0.9, 0.8, 0.7
    assert (a["final_accuracy_min"], a["final_accuracy_max"]) == (0.7, 0.9)
    # 0.8: seed 0 at its point 1 (100 answers, 2 s), seed 1 at its point 2 (200 answers, 4 s), seed 2 never
    assert a["reached"]["0.8"] == {"reached": 2, "samples": pytest.approx(150), "seconds": pytest.approx(3.0)}
    assert a["reached"]["0.9"] == {"reached": 1, "samples": 200, "seconds": 4.0}
    assert a["kl"] == pytest.approx(0.2) and a["kl_std"] == pytest.approx(0.1)
    assert a["response_length"] == pytest.approx(9.0) and a["response_length_std"] == pytest.approx(1.0)
    assert a["wall_seconds"] == pytest.approx(4.0)
    b = out["b"]
    assert b["final_accuracy_std"] == 0.0  # one seed
    assert b["reached"]["0.8"] == {"reached": 0, "samples": None, "seconds": None}
    assert "kl_per_answer" not in b  # not measured, not invented


def test_mean_curve_interpolates_and_never_extrapolates():
    runs = [_run("a", 0, [0.2, 0.4, 0.6]), _run("a", 1, [0.4, 0.6])]  # the second stops at 100 answers
    mean, low, high = mean_curve(runs, [0, 50, 100, 150, 200])
    np.testing.assert_allclose(mean[:3], [0.3, 0.4, 0.5])
    np.testing.assert_allclose(low[:3], [0.2, 0.3, 0.4])
    np.testing.assert_allclose(high[:3], [0.4, 0.5, 0.6])
    assert np.isnan(mean[3:]).all()


# ---------------------------------------------------------------- the KL measurement

def test_policy_kl_is_zero_against_itself_and_positive_after_a_nudge():
    torch.set_num_threads(1)
    model, tokenizer = load_policy()
    reference, _ = load_policy()
    problems = settings.make_task().heldout[:32]
    same = policy_kl(model, reference, tokenizer, problems)
    assert same["kl"] == pytest.approx(0.0, abs=1e-6) and same["kl_per_answer"] == pytest.approx(0.0, abs=1e-5)
    assert 2 <= same["response_length"] <= 13
    with torch.no_grad():
        model.lm_head.weight.add_(0.05 * torch.randn(model.lm_head.weight.shape, generator=torch.Generator().manual_seed(0)))
    moved = policy_kl(model, reference, tokenizer, problems)
    assert moved["kl"] > 1e-4
    assert moved["kl_per_answer"] == pytest.approx(moved["kl"] * moved["response_length"], rel=0.3)


# ---------------------------------------------------------------- a tiny comparison, end to end

def test_tiny_comparison_from_the_command_line(tmp_path, capsys):
    out = tmp_path / "compare.json"
    code = experiments.main(["compare", "--methods", "reinforce", "grpo", "--seeds", "0", "--budget", "1280",
                             "--kernels", "native", "--out", str(out)])
    assert code == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["experiment"] == "compare" and set(line["summary"]) == {"reinforce", "grpo"}
    results = json.loads(out.read_text())
    assert TOP_KEYS <= set(results)
    assert results["command"].startswith("python -m rlcore.experiments compare")
    assert "--budget 1280" in results["command"] and "--methods reinforce grpo" in results["command"]
    assert "--kernels native" in results["command"] and results["kernels"] == ["native"]
    assert results["budget"] == 1280 and results["seeds"] == [0]
    assert set(results["methods"]) == {"reinforce", "grpo"}
    assert {"torch", "transformers"} <= set(results["versions"])
    assert len(results["runs"]) == 2
    for run in results["runs"]:
        assert RUN_KEYS <= set(run)
        samples = [p["samples"] for p in run["curve"]]
        assert samples[0] == 0 and samples == sorted(samples) and samples[-1] <= 1280
        assert len(run["curve"]) == 3  # the start, then every 640 answers
        assert run["final_accuracy"] == run["curve"][-1]["accuracy"]
        assert run["config"] == results["methods"][run["method"]]["config"]
        assert set(run["reached"]) == {"0.8", "0.9"}
        assert math.isfinite(run["kl"]) and run["kl"] > 0  # it trained, so it moved
    assert results["summary"] == summarise(results["runs"])
    # the start is the shipped fifth grader for every method
    assert len({run["curve"][0]["accuracy"] for run in results["runs"]}) == 1


def test_other_kernel_families_run_in_a_child_process(tmp_path):
    """Each kernel family is a separate set of runs, labelled with the family PyTorch really used
    (whatever ATEN_CPU_CAPABILITY this test process itself was started with)."""
    results = run_compare(methods=["reinforce"], seeds=[0, 1], budget=128, eval_samples=64,
                          kernels=["native", "default"], out=tmp_path / "k.json", progress=False)
    runs = results["runs"]
    native = runs[0]["kernels"]
    assert [(r["seed"], r["kernels"]) for r in runs] == [(0, native), (1, native), (0, "DEFAULT"), (1, "DEFAULT")]
    assert results["kernels"] == ["native", "default"] and "--kernels" not in results["command"]
    assert results["summary"]["reinforce"]["runs"] == 4
    with pytest.raises(ValueError, match="kernels"):
        run_compare(methods=["reinforce"], seeds=[0], kernels=["native", "native"], out=None)


def test_a_prefix_of_a_run_repeats_it_exactly():
    """What chapter 10's proof cell relies on: the first steps do not depend on the budget."""
    short = compare.run_method("reinforce", seed=1, budget=640, eval_samples=128, steps=2, progress=False,
                               final_measures=False)
    long = compare.run_method("reinforce", seed=1, budget=640, eval_samples=128, steps=4, progress=False,
                              final_measures=False)
    assert [p["accuracy"] for p in short["curve"]] == [p["accuracy"] for p in long["curve"][:2]]


# ---------------------------------------------------------------- the shipped results file

@pytest.mark.skipif(not RESULTS_PATH.exists(), reason="no results file yet (python -m rlcore.experiments compare)")
def test_the_shipped_results_file():
    assert RESULTS_PATH.stat().st_size < 400_000  # 90 runs: small enough to ship inside the package
    results = compare.load_results()
    assert TOP_KEYS <= set(results)
    assert list(results["methods"]) == list(METHODS)
    assert len(results["seeds"]) >= 5 and len(results["kernels"]) >= 2  # claims need a spread, not a run
    assert len(results["runs"]) == len(METHODS) * len(results["seeds"]) * len(results["kernels"])
    assert len({run["kernels"] for run in results["runs"]}) == len(results["kernels"])
    for run in results["runs"]:
        assert RUN_KEYS <= set(run)
        assert run["curve"][-1]["samples"] <= results["budget"]
    assert results["summary"] == summarise(results["runs"])


def test_t_interval_and_the_t95_band():
    mean, half = compare.t_interval([0.5, 0.6, 0.7])
    assert mean == pytest.approx(0.6) and half == pytest.approx(4.302653 * 0.1 / math.sqrt(3), rel=1e-6)
    runs = [{"curve": [{"samples": 0, "accuracy": a}, {"samples": 100, "accuracy": b}]}
            for a, b in ((0.2, 0.5), (0.2, 0.6), (0.2, 0.7))]
    m, low, high = mean_curve(runs, [0, 100], band="t95")
    assert m[1] == pytest.approx(0.6) and high[1] - m[1] == pytest.approx(half)
    assert low[0] == pytest.approx(0.2) and high[0] == pytest.approx(0.2)
    with pytest.raises(ValueError, match="band"):
        mean_curve(runs, [0], band="sd")
    with pytest.raises(ValueError, match="values"):
        compare.t_interval([0.5])


# ---------------------------------------------------------------- chapter 10's exercise: RLOO's two differences

def test_the_rloo_split_changes_only_the_batch_shape():
    """The batch baseline on RLOO's 16 × 4, RLOO on 32 × 2 and 8 × 8: each is a chapter-10 contestant
    with another batch shape, the same update and 64 answers a step; ``rloo-split`` writes its file."""
    specs, h2h = method_configs(suite="rloo_split"), method_configs()
    shapes = {name: (spec["config"].prompts_per_step, spec["config"].group_size) for name, spec in specs.items()}
    assert shapes == {"reinforce_baseline_16x4": (16, 4), "rloo_32x2": (32, 2), "rloo_8x8": (8, 8)}
    shape = dict(prompts_per_step=0, group_size=0)
    for name, spec in specs.items():
        base = "reinforce_baseline" if name.startswith("reinforce_baseline") else "rloo"
        assert replace(spec["config"], **shape) == replace(h2h[base]["config"], **shape), name
        assert spec["answers_per_step"] == 64
    suite = compare.SUITES["rloo_split"]
    assert suite.path == RESULTS_PATH.parent / "head_to_head_rloo_split.json"
    assert compare.command_line(budget=suite.budget, seeds=suite.seeds, methods=list(specs), out=suite.path,
                                eval_samples=suite.eval_samples, suite="rloo_split") == "python -m rlcore.experiments rloo-split"
    with pytest.raises(SystemExit, match="rloo-split"):  # the command exists, and its budget sets the steps
        experiments.main(["rloo-split", "--steps", "1"])


@pytest.mark.skipif(not compare.SUITES["rloo_split"].path.exists(),
                    reason="no results file yet (python -m rlcore.experiments rloo-split)")
def test_the_shipped_rloo_split_file():
    results = compare.load_results(suite="rloo_split")
    specs = method_configs(suite="rloo_split")
    assert TOP_KEYS <= set(results) and results["suite"] == "rloo_split"
    assert list(results["methods"]) == list(specs) and len(results["seeds"]) >= 5
    assert len(results["runs"]) == len(specs) * len(results["seeds"]) * len(results["kernels"])
    for name, spec in specs.items():  # the file describes the code as it is now
        saved = results["methods"][name]["config"]
        assert {k: saved.get(k) for k in spec["config"].in_use()} == spec["config"].in_use(), name
    for run in results["runs"]:
        assert RUN_KEYS <= set(run)
        assert run["curve"][-1]["samples"] <= results["budget"]
    assert results["summary"] == summarise(results["runs"])
