"""Chapter 11's machinery: the credit race's contestants and its budget in sampled answers
(Monte Carlo continuations counted), and the credit-accuracy measurement on a tiny sample."""

from __future__ import annotations


import pytest
import torch

from rlcore import compare, credit_accuracy, settings
from rlcore.compare import SUITES, method_configs
from rlcore.policy import RUNNING_SUM_GRADER_DIR, ValueModel, load_policy


def test_the_race_shares_one_update_and_differs_in_credit():
    specs = method_configs(suite="credit")
    assert list(specs) == list(settings.CREDIT_RACE)
    credit = {name: spec["config"].credit for name, spec in specs.items()}
    assert credit == {"reinforce": "batch", "rloo": "rloo", "grpo": "group", "ppo": "gae", "mc": "mc",
                      "dpo_online": "dpo", "oracle": "oracle"}
    for name, spec in specs.items():
        config = spec["config"]
        for field, value in settings.CREDIT_RACE_UPDATE.items():
            if (field == "loss_agg_mode" and name == "grpo") or (field == "clip_eps" and name == "dpo_online"):
                continue
            assert getattr(config, field) == value, (name, field)
    assert specs["mc"]["config"].mc_steps and specs["mc"]["config"].mc_samples >= 2
    assert compare.command_line(budget=SUITES["credit"].budget, seeds=SUITES["credit"].seeds,
                                methods=list(specs), eval_samples=SUITES["credit"].eval_samples,
                                out=SUITES["credit"].path, suite="credit") == "python -m rlcore.experiments credit"
    with pytest.raises(ValueError, match="suite"):
        method_configs(suite="chess")


def test_monte_carlo_credit_stops_on_the_budget_with_its_continuations_counted():
    torch.set_num_threads(1)
    budget = 1_000
    run = compare.run_method("mc", suite="credit", budget=budget, eval_samples=500, progress=False,
                             final_measures=False)
    per_step = [p["samples"] for p in run["curve"]]
    assert per_step[0] == 0 and run["curve"][-1]["samples"] == run["train_samples"] <= budget
    # each step samples 16 answers and 4 continuations from the start of each of their steps:
    # far more than 16, and the run stopped because one more such step would pass the budget
    step_cost = run["train_samples"] / run["curve"][-1]["step"]
    assert step_cost > 16 * 4
    assert run["train_samples"] + step_cost > budget * 0.9


def test_max_samples_is_checked():
    from rlcore.train import TrainConfig, train

    model, tokenizer = load_policy()
    with pytest.raises(ValueError, match="max_samples"):
        train(model, tokenizer, settings.make_task(), TrainConfig(steps=1), progress=False, max_samples=0)


def test_bootstrap_interval():
    assert credit_accuracy.bootstrap(lambda idx: 3.0, 10, resamples=20) == (3.0, 3.0)
    values = torch.arange(100, dtype=torch.float64)
    low, high = credit_accuracy.bootstrap(lambda idx: float(values[idx].mean()), 100, resamples=400)
    assert low < 49.5 < high and high - low == pytest.approx(2 * 1.96 * values.std().item() / 10, rel=0.3)


def test_credit_accuracy_on_a_tiny_sample():
    """Every method scored on the same 16 answers: the step checker finds every first wrong step,
    credit that is the same on every token of an answer finds it at the chance rate, exactly."""
    torch.set_num_threads(1)
    model, tokenizer = load_policy(RUNNING_SUM_GRADER_DIR)
    task = settings.make_task("running_sum")
    critic = ValueModel.from_policy(model)
    dpo = load_policy(RUNNING_SUM_GRADER_DIR)[0]
    with torch.no_grad():
        dpo.lm_head.weight.add_(0.05 * torch.randn(dpo.lm_head.weight.shape, generator=torch.Generator().manual_seed(0)))
    out = credit_accuracy.measure_checkpoint(model, critic, dpo, model, tokenizer, task, prompts=4, group=4,
                                             truth_k=4, mc_k=2, resamples=30)
    assert out["answers"] == 16 and out["wrong_work"] >= 8
    methods = out["methods"]
    assert list(methods) == list(credit_accuracy.METHODS)
    assert methods["oracle"]["blame"] == 1.0
    for name in ("reinforce", "rloo", "grpo"):
        assert methods[name]["blame"] == pytest.approx(out["chance"])
    for name, m in methods.items():
        low, high = m["blame_ci"]
        assert low <= m["blame"] + 1e-9 and m["blame"] - 1e-9 <= high, name
    assert 0 < out["chance"] < 0.1 and len(out["examples"]) >= 1
    example = out["examples"][0]
    assert len(example["tokens"]) == len(example["truth"]) == len(example["credit"]["oracle"])
    assert example["credit"]["oracle"][example["first_wrong"]] == -1.0


@pytest.mark.skipif(not credit_accuracy.RESULTS_PATH.exists(), reason="no results yet (credit-accuracy)")
def test_the_shipped_credit_accuracy_file():
    results = credit_accuracy.load_results()
    assert set(results["checkpoints"]) == {"start", "mid"}
    for name, c in results["checkpoints"].items():
        assert c["answers"] >= 200 and c["truth_k"] >= 32  # two halves of at least 16 each
        assert list(c["methods"]) == list(credit_accuracy.METHODS)
        for m in c["methods"].values():
            assert m["correlation_ci"][0] <= m["correlation"] <= m["correlation_ci"][1]
            assert m["blame_ci"][0] <= m["blame"] <= m["blame_ci"][1]
        assert len(c["examples"]) == 3
    assert results["checkpoints"]["mid"]["accuracy"] > results["checkpoints"]["start"]["accuracy"]


@pytest.mark.skipif(not SUITES["credit"].path.exists(), reason="no results yet (python -m rlcore.experiments credit)")
def test_the_shipped_credit_race_file():
    results = compare.load_results(suite="credit")
    assert results["suite"] == "credit" and results["task"] == "running_sum"
    assert list(results["methods"]) == list(settings.CREDIT_RACE)
    assert len(results["seeds"]) >= 5
    assert len(results["runs"]) == len(results["methods"]) * len(results["seeds"]) * len(results["kernels"])
    for run in results["runs"]:
        assert run["curve"][-1]["samples"] <= results["budget"]
        assert run["curve"][0]["accuracy"] == results["runs"][0]["curve"][0]["accuracy"]  # one start
    assert results["summary"] == compare.summarise(results["runs"], thresholds=results["thresholds"])


def test_step_level_monte_carlo_needs_a_task_with_steps():
    from rlcore import presets
    from rlcore.train import train

    model, tokenizer = load_policy()
    with pytest.raises(ValueError, match="step_ends"):
        train(model, tokenizer, settings.make_task(), presets.vineppo(mc_steps=True, mc_samples=2, steps=1),
              progress=False)
