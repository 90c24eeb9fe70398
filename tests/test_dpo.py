"""rlcore.pairs (verifier-judged preference pairs, sequence log-probs) and DPO through the one
training loop (rlcore.train with the dpo preset)."""

from __future__ import annotations

import pytest
import torch

from rlcore.pairs import PreferencePairs, pair_logprobs, preference_pairs, sample_pairs, sequence_logprobs
from rlcore.policy import load_policy
from rlcore.presets import dpo
from rlcore.train import train
from rlcore.rollout import generate, response_logprobs
from rlcore.tasks import AdditionTask, Problem, verify_batch


@pytest.fixture(scope="module")
def policy():
    torch.set_num_threads(1)
    return load_policy()


@pytest.fixture(scope="module")
def task():
    return AdditionTask()


# ---------------------------------------------------------------- pair construction by hand

def test_pairs_on_a_hand_made_batch():
    # Four problems, three answers each (groups contiguous):
    #   problem 0: right, wrong, right      -> one pair (a right one vs answer 1)
    #   problem 1: all right                -> no pair
    #   problem 2: all wrong (0 and -0.1)   -> no pair
    #   problem 3: wrong, right, no answer  -> one pair (answer 10 vs one of 9, 11)
    rewards = torch.tensor([1.0, 0.0, 1.0,  1.0, 1.0, 1.0,  0.0, -0.1, 0.0,  0.0, 1.0, -0.1])
    chosen, rejected = preference_pairs(rewards, 3)
    assert chosen.tolist() == [0, 10] and rejected.tolist() == [1, 9]  # in order without a generator
    chosen, rejected = preference_pairs(rewards, 3, generator=torch.Generator().manual_seed(0))
    assert len(chosen) == len(rejected) == 2
    assert (rewards[chosen] == 1).all() and (rewards[rejected] <= 0).all()  # right preferred to wrong
    assert (chosen // 3).tolist() == (rejected // 3).tolist() == [0, 3]  # same problem; 1 and 2 give none
    assert set(chosen[:1].tolist()) <= {0, 2} and set(rejected[1:].tolist()) <= {9, 11}


def test_pairs_use_each_answer_once_and_respect_the_cap():
    rewards = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, -0.1, 0.0, 1.0])  # one problem: 4 right, 4 wrong
    chosen, rejected = preference_pairs(rewards, 8, generator=torch.Generator().manual_seed(1))
    assert len(chosen) == 4 and len(set(chosen.tolist())) == 4 and len(set(rejected.tolist())) == 4
    assert set(chosen.tolist()) == {0, 1, 2, 7} and set(rejected.tolist()) == {3, 4, 5, 6}
    chosen, _ = preference_pairs(rewards, 8, max_pairs_per_prompt=1)
    assert len(chosen) == 1


def test_all_agree_gives_no_pairs():
    chosen, rejected = preference_pairs(torch.tensor([1.0, 1.0, 0.0, 0.0, -0.1, -0.1]), 2)
    assert chosen.numel() == 0 and rejected.numel() == 0


@pytest.mark.parametrize("group_size, cap", [(1, None), (4, None), (3, 0)],
                         ids=["group-of-one", "group-does-not-divide", "zero-cap"])
def test_pairs_reject_bad_input(group_size, cap):
    with pytest.raises(ValueError):
        preference_pairs(torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0, 0.0]), group_size, max_pairs_per_prompt=cap)


# ---------------------------------------------------------------- sequence log-probs

def test_sequence_logprob_is_the_sum_over_real_tokens():
    logp = torch.tensor([[-0.5, -1.0, -2.0], [-0.25, -9.0, -9.0]])
    mask = torch.tensor([[True, True, True], [True, False, False]])
    torch.testing.assert_close(sequence_logprobs(logp, mask), torch.tensor([-3.5, -0.25]))
    with pytest.raises(ValueError):
        sequence_logprobs(logp, mask[:, :2])


def test_pair_logprobs_match_per_token_sums(policy, task):
    model, tok = policy
    pairs, stats = sample_pairs(model, tok, task.heldout[:24], reference=model, samples_per_prompt=8, seed=0)
    assert len(pairs) > 0 and stats["samples"] == 24 * 8
    for a, b in zip(pairs.chosen.prompt_ids, pairs.rejected.prompt_ids):
        assert torch.equal(a, b)  # the same problem, row by row
    assert verify_batch(pairs.chosen.texts, pairs.problems) == [1.0] * len(pairs)
    assert all(r <= 0 for r in verify_batch(pairs.rejected.texts, pairs.problems))
    with torch.no_grad():
        chosen, rejected = pair_logprobs(model, pairs)
        by_loop = []
        for ro in (pairs.chosen, pairs.rejected):
            logp = response_logprobs(model, ro, temperature=1.0)
            by_loop.append(torch.tensor([sum(logp[b, t].item() for t in range(int(ro.lengths[b])))
                                         for b in range(len(ro))]))
    torch.testing.assert_close(chosen, by_loop[0], atol=1e-4, rtol=0)
    torch.testing.assert_close(rejected, by_loop[1], atol=1e-4, rtol=0)
    torch.testing.assert_close(pairs.ref_chosen_logps, chosen, atol=1e-4, rtol=0)  # the reference is the model


def test_concatenating_pairs_pads_responses(policy):
    model, tok = policy
    problems = [Problem(1, 2, 3), Problem(500, 500, 3)]
    short = generate(model, tok, [p.prompt for p in problems], max_new_tokens=3, seed=0, compute_logp=False)
    long = generate(model, tok, [p.prompt for p in problems], max_new_tokens=12, seed=0, compute_logp=False)
    zero = torch.zeros(2)
    a = PreferencePairs(short, short, zero, zero, problems)
    b = PreferencePairs(long, long, zero, zero, problems)
    both = PreferencePairs.cat([a, b])
    assert len(both) == 4 and both.chosen.response_ids.shape[1] == long.response_ids.shape[1]
    with torch.no_grad():
        seq, _ = pair_logprobs(model, both)
        alone, _ = pair_logprobs(model, a)
    torch.testing.assert_close(seq[:2], alone, atol=1e-4, rtol=0)  # padding changes nothing


# ---------------------------------------------------------------- the training loop

def test_train_dpo_smoke(policy, task):
    model, tok = load_policy()
    config = dpo(steps=3, pairs_per_step=8, prompts_per_step=8, group_size=4, online=False,
                 offline_pairs=16, eval_every=2, eval_size=20, kl_size=8, probe_prompts=8, seed=0)
    result = train(model, tok, task, config, progress=False)
    history = result["history"]
    assert [h["step"] for h in history] == [0, 1, 2, 3]
    assert [("accuracy" in h) for h in history] == [True, False, True, True]
    assert history[0]["kl"] == 0.0 and history[0]["probe_chosen"] == 0.0
    for h in history[1:]:
        assert h["samples"] == result["samples"] > 0  # offline: every answer generated before step 1
        assert 0.0 <= h["reward_accuracy"] <= 1.0 and h["loss"] > 0 and h["pairs"] >= 8
        assert h["chosen_logp"] < 0 and h["rejected_logp"] < 0
    assert history[1]["loss"] == pytest.approx(torch.nn.functional.softplus(torch.tensor(0.0)).item(), abs=1e-5)
    assert result["config"]["online"] is False
    again = train(load_policy()[0], tok, task, config, progress=False)["history"]
    assert [h.get("loss") for h in again] == [h.get("loss") for h in history]  # deterministic under the seed


def test_online_dpo_moves_accuracy(task):
    torch.set_num_threads(1)
    model, tok = load_policy()
    config = dpo(steps=30, pairs_per_step=32, lr=1e-4, beta=0.1, online=True, eval_every=30,
                 eval_size=200, kl_size=32, probe_prompts=0, seed=0)
    history = train(model, tok, task, config, progress=False)["history"]
    before, after = history[0]["accuracy"], history[-1]["accuracy"]
    assert after > before + 0.04, (before, after)
    assert history[-1]["kl"] > 0


def test_no_pairs_means_no_update(task):
    # One token is too short to write '#' and an answer: every blank is empty, so no pair exists.
    model, tok = load_policy()
    before = [p.detach().clone() for p in model.parameters()]
    config = dpo(steps=1, pairs_per_step=4, prompts_per_step=4, group_size=2, max_new_tokens=1,
                 eval_every=1, eval_size=4, kl_size=2, probe_prompts=0, seed=0)
    history = train(model, tok, task, config, progress=False)["history"]
    assert history[-1]["pairs"] == 0 and "loss" not in history[-1]
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
