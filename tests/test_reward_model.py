"""The learned reward model (rlcore.reward_model), best-of-N's KL, pass@k, and the loop's grader hook."""

from __future__ import annotations

import copy
import math
from collections import Counter
from math import comb

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rlcore.evaluation import pass_at_k, right_counts
from rlcore.overoptimisation import best_of_n_kl
from rlcore.reward_model import (RewardModel, RewardModelConfig, bradley_terry_loss, collect_pairs, load_reward_model,
                                 pair_accuracy, reward_grader, save_reward_model, score_texts, wilson_interval)

F64 = torch.float64


# ---------------------------------------------------------------- Bradley-Terry

def test_bradley_terry_loss_by_hand():
    # differences 0 and 2: -log sigma(0) = log 2; -log sigma(2) = log(1 + e^-2)
    loss = bradley_terry_loss(torch.tensor([1.0, 3.0], dtype=F64), torch.tensor([1.0, 1.0], dtype=F64))
    assert math.isclose(loss.item(), (math.log(2) + math.log1p(math.exp(-2))) / 2, rel_tol=1e-12)


def test_bradley_terry_loss_against_a_loop_and_its_gradient():
    g = torch.Generator().manual_seed(0)
    c, r = torch.randn(9, generator=g, dtype=F64, requires_grad=True), torch.randn(9, generator=g, dtype=F64)
    loss = bradley_terry_loss(c, r)
    loop = sum(-math.log(1 / (1 + math.exp(-(a - b)))) for a, b in zip(c.tolist(), r.tolist())) / 9
    assert math.isclose(loss.item(), loop, rel_tol=1e-12)
    (grad,) = torch.autograd.grad(loss, c)
    # d/dc -log sigma(c - r) = -sigma(r - c), averaged
    torch.testing.assert_close(grad, -torch.sigmoid(r - c.detach()) / 9)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(-30, 30), st.floats(-30, 30)), min_size=1, max_size=8), st.floats(-50, 50))
def test_bradley_terry_loss_sees_only_differences(rows, shift):
    c, r = (torch.tensor(col, dtype=F64) for col in zip(*rows))
    a, b = bradley_terry_loss(c, r), bradley_terry_loss(c + shift, r + shift)
    assert torch.isfinite(a) and a >= 0
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("args, name", [
    ((torch.zeros(3), torch.zeros(2)), "rejected_scores"),
    ((torch.zeros(3, 1), torch.zeros(3, 1)), "chosen_scores"),
    ((torch.zeros(0), torch.zeros(0)), "chosen_scores"),
    ((torch.tensor([1.0, float("nan")]), torch.zeros(2)), "chosen_scores"),
    ((torch.zeros(2, dtype=torch.long), torch.zeros(2)), "chosen_scores"),
], ids=["shape", "rank", "empty", "nan", "int"])
def test_bradley_terry_loss_rejects_bad_input(args, name):
    with pytest.raises(ValueError, match=name):
        bradley_terry_loss(*args)


# ---------------------------------------------------------------- Wilson interval

def test_wilson_interval_by_hand():
    # 8 of 10: centre (0.8 + 1.92/10) / 1.384 = 0.7168, half 1.96 * sqrt(0.016 + 0.0096) / 1.384 = 0.2266
    low, high = wilson_interval(8, 10)
    assert abs(low - 0.4902) < 1e-3 and abs(high - 0.9433) < 1e-3
    assert wilson_interval(0, 5)[0] == 0.0 and wilson_interval(5, 5)[1] == 1.0
    for bad in ((3, 0), (-1, 4), (5, 4), (1.0, 4), (True, 4)):
        with pytest.raises(ValueError):
            wilson_interval(*bad)


# ---------------------------------------------------------------- the shipped reward model

@pytest.fixture(scope="module")
def shipped():
    from rlcore.policy import load_policy
    from rlcore.settings import make_task

    rm, meta = load_reward_model()
    model, tokenizer = load_policy()
    return rm, meta, model, tokenizer, make_task()


def test_the_shipped_reward_model_ranks_held_out_pairs_well_above_chance(shipped):
    rm, meta, model, tokenizer, task = shipped
    config = RewardModelConfig(prompts_per_round=64)
    heldout = iter([task.heldout[i:i + 64] for i in range(0, 500, 64)] * 4)
    pairs = collect_pairs(model, tokenizer, heldout, 200, config, seed_offset=77_000)  # answers it never saw
    acc = pair_accuracy(rm, pairs)
    low, high = wilson_interval(round(acc * len(pairs)), len(pairs))
    assert low > 0.75, f"held-out pair accuracy {acc:.3f} (95% interval {low:.3f}-{high:.3f})"
    assert meta["heldout_accuracy"] > 0.85 and meta["heldout_interval"][0] > 0.8  # what it was built with
    assert meta["config"]["n_pairs"] == RewardModelConfig().n_pairs


def test_a_score_depends_on_the_answer_not_on_the_padding(shipped):
    rm, _, model, tokenizer, task = shipped
    problems = task.heldout[:3]
    texts = [p.target for p in problems]
    alone = torch.stack([score_texts(rm, tokenizer, [p], [t])[0] for p, t in zip(problems, texts)])
    padded = score_texts(rm, tokenizer, problems + [task.heldout[3]], texts + [texts[0] + "0000"])[:3]
    torch.testing.assert_close(alone, padded, rtol=1e-5, atol=1e-5)
    # the score is read at <eos>: changing the last digit of the answer changes it
    wrong = [t[:-1] + str((int(t[-1]) + 1) % 10) for t in texts]
    assert (score_texts(rm, tokenizer, problems, wrong) != alone).all()


def test_save_and_load_round_trip(shipped, tmp_path):
    rm, _, model, tokenizer, task = shipped
    fresh = RewardModel.from_policy(model)
    with torch.no_grad():
        fresh.head.bias.fill_(0.25)
    save_reward_model(fresh, tmp_path, metadata={"note": 1})
    back, meta = load_reward_model(tmp_path)
    ps = task.heldout[:4]
    torch.testing.assert_close(score_texts(back, tokenizer, ps, [p.target for p in ps]),
                               score_texts(fresh.eval(), tokenizer, ps, [p.target for p in ps]))
    assert meta == {"note": 1}
    with pytest.raises(FileNotFoundError, match="rlcore.experiments rm"):
        load_reward_model(tmp_path / "missing")


def test_a_fresh_reward_model_scores_every_answer_zero(shipped):
    _, _, model, tokenizer, task = shipped
    fresh = RewardModel.from_policy(model)
    ps = task.heldout[:5]
    assert torch.equal(score_texts(fresh, tokenizer, ps, [p.target for p in ps]), torch.zeros(5))


# ---------------------------------------------------------------- the loop with a grader

def test_the_loop_trains_on_the_graders_marks_and_evaluates_with_the_verifier(shipped):
    from rlcore import presets
    from rlcore.train import train

    rm, _, model, tokenizer, task = shipped
    calls = []

    def grader(rollout, problems):
        calls.append(len(problems))
        return reward_grader(rm)(rollout, problems)

    config = presets.reinforce("batch", prompts_per_step=8, steps=2, eval_every=2, eval_size=20)
    result = train(copy.deepcopy(model), tokenizer, task, config, progress=False, grader=grader,
                   extra_eval=lambda m: {"probe": 1.0})
    assert calls == [8, 8]
    evals = [h for h in result["history"] if "accuracy" in h]
    assert [h["probe"] for h in evals] == [1.0, 1.0]
    assert result["history"][1]["reward"] not in (0.0, 1.0)  # a mean of scores, not of marks
    with pytest.raises(ValueError, match="grader"):
        train(copy.deepcopy(model), tokenizer, task, config, progress=False,
              grader=lambda ro, ps: torch.zeros(len(ps) + 1))
    with pytest.raises(ValueError, match="grader"):
        train(copy.deepcopy(model), tokenizer, task, presets.dpo(steps=1), progress=False, grader=grader)


# ---------------------------------------------------------------- best-of-N's KL

def test_best_of_n_kl():
    assert best_of_n_kl(1) == 0.0
    assert math.isclose(best_of_n_kl(2), math.log(2) - 0.5)
    assert math.isclose(best_of_n_kl(64), math.log(64) - 63 / 64)
    # exact for a continuous score: the density of the best of n is n F^{n-1}, KL = E[log(n F^{n-1})]
    n = 8
    u = (torch.arange(200_000, dtype=F64) + 0.5) / 200_000  # F of the chosen sample, on a fine grid
    density = n * u ** (n - 1)
    assert abs((density * torch.log(density)).mean().item() - best_of_n_kl(n)) < 1e-4
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="n must"):
            best_of_n_kl(bad)


# ---------------------------------------------------------------- pass@k

def test_pass_at_k_against_the_binomial_formula():
    g = torch.Generator().manual_seed(0)
    n = torch.randint(20, 60, (50,), generator=g)
    c = (torch.rand(50, generator=g) * (n + 1)).long().clamp(max=n)
    for k in (1, 2, 5, 20):
        want = torch.tensor([1 - comb(int(a - b), k) / comb(int(a), k) for a, b in zip(n, c)], dtype=F64)
        torch.testing.assert_close(pass_at_k(n, c, k), want, rtol=0, atol=1e-12)


def test_pass_at_k_identities():
    n, c = torch.tensor([10, 10, 10, 256]), torch.tensor([0, 3, 10, 1])
    torch.testing.assert_close(pass_at_k(n, c, 1), c.double() / n, rtol=0, atol=1e-12)  # pass@1 = c / n
    assert pass_at_k(n, c, 7)[0] == 0 and pass_at_k(n, c, 7)[2] == 1
    assert pass_at_k(10, 3, 8).item() == 1.0  # fewer than k wrong samples: every k-subset holds a right one
    ks = [pass_at_k(n, c, k) for k in (1, 2, 4, 8)]
    assert all(bool((a <= b).all()) for a, b in zip(ks, ks[1:]))  # non-decreasing in k
    # unbiased: the mean over every k-subset of one problem's samples
    import itertools
    samples = [1, 0, 0, 1, 0, 0]
    subsets = list(itertools.combinations(samples, 3))
    assert math.isclose(pass_at_k(6, 2, 3).item(), sum(max(s) for s in subsets) / len(subsets))


@pytest.mark.parametrize("n, c, k, name", [
    (10, 11, 1, "c"), (10, -1, 1, "c"), (4, 1, 5, "n"), (10, 1, 0, "k"), (10, 1, 1.0, "k"),
    (torch.tensor([10.0]), torch.tensor([1]), 1, "n"), (10, torch.tensor([True]), 1, "c"),
], ids=["c>n", "c<0", "n<k", "k0", "k-float", "n-float", "c-bool"])
def test_pass_at_k_rejects_bad_input(n, c, k, name):
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        pass_at_k(n, c, k)


def test_right_counts_matches_the_verifier_on_the_same_samples(shipped):
    _, _, model, tokenizer, task = shipped
    counts = right_counts(model, tokenizer, task.heldout[:6], 8, seed=3, batch_size=16)
    assert counts.shape == (6,) and counts.dtype == torch.long and bool(((counts >= 0) & (counts <= 8)).all())
    assert torch.equal(counts, right_counts(model, tokenizer, task.heldout[:6], 8, seed=3, batch_size=16))


# ---------------------------------------------------------------- the chapter 13 measurements

def test_best_of_n_by_hand_on_a_few_problems(shipped):
    from rlcore.overoptimisation import best_of_n

    rm, _, model, tokenizer, task = shipped
    out = best_of_n(model, tokenizer, rm, task.heldout[:12], n_values=(1, 2, 4), seed=1)
    assert [o["n"] for o in out] == [1, 2, 4]
    assert out[0]["true"] == out[0]["oracle"] and out[0]["kl"] == 0.0  # one sample: nothing to choose
    assert out[0]["oracle"] <= out[1]["oracle"] <= out[2]["oracle"]  # the verifier's pick never gets worse
    assert out[0]["proxy"] <= out[1]["proxy"] <= out[2]["proxy"]  # nor does the reward model's own score
    assert all(o["true"] <= o["oracle"] for o in out)


def test_sampled_evaluation_is_zero_kl_at_the_reference_and_a_run_records_it(shipped):
    from rlcore.overoptimisation import run_against_reward_model
    from rlcore.policy import frozen_copy
    from rlcore.reward_model import sampled_evaluation

    rm, _, model, tokenizer, task = shipped
    evaluate = sampled_evaluation(rm, frozen_copy(model), tokenizer, task.heldout[:16], seed=2)
    first = evaluate(model)
    assert first["kl"] == 0.0 and 0.0 <= first["true"] <= 1.0 and evaluate(model) == first  # same seed, same answers
    run = run_against_reward_model(0.0, 0, steps=2, reward_model=rm, eval_problems=16)
    assert [p["step"] for p in run["curve"]] == [0, 2]
    assert set(run["curve"][0]) == {"step", "samples", "accuracy", "proxy", "true", "kl"}
    assert run["curve"][0]["kl"] == 0.0 and run["curve"][1]["samples"] == 2 * 64


def test_the_saved_sweep_has_every_run():
    from rlcore import overoptimisation
    from rlcore.settings import OVEROPTIMISATION_BETAS

    saved = overoptimisation.load_results()
    kinds = Counter((r["kind"], r.get("beta")) for r in saved["runs"])
    for beta in OVEROPTIMISATION_BETAS:
        assert kinds["rm", beta] == len(overoptimisation.SEEDS)
    assert kinds["grpo", None] == kinds["base", None] == len(overoptimisation.SEEDS)
    for r in saved["runs"]:
        if "pass_counts" in r:
            assert len(r["pass_counts"]) == overoptimisation.PASS_PROBLEMS
            assert all(0 <= c <= overoptimisation.PASS_SAMPLES for c in r["pass_counts"])
