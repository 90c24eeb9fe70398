"""rlcore.credit: every method's per-token credit, three ways (hand-computed values, a slow loop,
identities), against the code it replaced, and on bad input."""

from __future__ import annotations

import math

import pytest
import torch

import rlcore
from rlcore import credit
from rlcore.advantages import gae
from rlcore.kl import kl_estimate
from rlcore.masked import whiten

# Chapter 10's credit table: three problems, four answers each (hard, easy, hopeless).
G = 4
MARKS = torch.tensor([1.0, 0.0, 0.0, -0.1,
                      1.0, 1.0, 1.0, 0.0,
                      0.0, 0.0, 0.0, 0.0])
LENGTHS = torch.tensor([3, 5, 4, 1, 2, 5, 5, 3, 4, 4, 1, 2])
T = 6


def _mask(lengths=LENGTHS, width=T):
    return torch.arange(width)[None, :] < lengths[:, None]  # (B, T) trailing padding


def _first_token(c):
    """The credit of each answer's first token, after checking every real token has the same one."""
    m = _mask()
    for b in range(len(c)):
        row = c[b][m[b]]
        assert torch.all(row == row[0]), f"answer {b}: outcome credit must be the same on every token"
        assert torch.all(c[b][~m[b]] == 0), f"answer {b}: padding must get 0"
    return c[:, 0]


# ---------------------------------------------------------------- hand-computed values

def test_outcome_credits_on_chapter_10s_batch():
    m = _mask()
    sign = _first_token(credit.sign_credit(MARKS, m))
    assert sign.tolist() == [1, -1, -1, -1, 1, 1, 1, -1, -1, -1, -1, -1]
    raw = _first_token(credit.raw_credit(MARKS, m))
    assert torch.equal(raw, MARKS)
    batch = _first_token(credit.batch_credit(MARKS, m))
    assert torch.allclose(batch, MARKS - 3.9 / 12)  # the batch's mean mark is 3.9 / 12 = 0.325
    rloo = _first_token(credit.rloo_credit(MARKS, m, G))
    expected = [1 + 0.1 / 3, -0.9 / 3, -0.9 / 3, -0.1 - 1.0 / 3,  # hard: the others sum to 0.9 - r
                1 / 3, 1 / 3, 1 / 3, -1.0,  # easy: a wrong answer among three right ones
                0.0, 0.0, 0.0, 0.0]  # hopeless: no signal
    assert torch.allclose(rloo, torch.tensor(expected), atol=1e-6)
    # easy group: mean 0.75, std (Bessel) sqrt((3 * 0.25^2 + 0.75^2) / 3) = 0.5
    grpo = _first_token(credit.group_credit(MARKS, m, G))
    assert torch.allclose(grpo[4:8], torch.tensor([0.5, 0.5, 0.5, -1.5]), atol=1e-5)  # 0.25 / 0.5, -0.75 / 0.5
    assert torch.all(grpo[8:] == 0)
    dr = _first_token(credit.group_credit(MARKS, m, G, scale_rewards="none"))
    assert torch.allclose(dr[4:8], torch.tensor([0.25, 0.25, 0.25, -0.75]))
    assert torch.allclose(dr[:4], MARKS[:4] - 0.225)


def test_critic_credit_hand_computed():
    """One answer of three tokens, mark 1, values [0.5, 0.5, 0.5], γ = 1, λ = 0.5, no KL, no whitening:
    δ = [0, 0, 0.5], A = [0.125, 0.25, 0.5], returns = A + V."""
    mask = torch.tensor([[True, True, True]])
    values = torch.full((1, 3), 0.5)
    adv, returns = credit.critic_credit(torch.tensor([1.0]), values, mask, gamma=1.0, lam=0.5,
                                        whiten_advantages=False)
    assert torch.allclose(adv, torch.tensor([[0.125, 0.25, 0.5]]))
    assert torch.allclose(returns, adv + values)


def test_dpo_credit_at_the_start_is_half_beta():
    """Policy = reference: h = 0, σ(0) = 1/2, so each token of the chosen answer gets β/2 and each of
    the rejected −β/2 (chapter 10's table)."""
    K, beta = 3, 0.1
    zeros = torch.zeros(K)
    cm, rm = _mask(torch.tensor([2, 4, 1]), 5), _mask(torch.tensor([3, 1, 5]), 5)
    chosen, rejected = credit.dpo_credit(zeros, zeros, zeros, zeros, cm, rm, beta=beta)
    assert torch.allclose(chosen, beta / 2 * cm.float()) and torch.allclose(rejected, -beta / 2 * rm.float())


# ---------------------------------------------------------------- against a slow loop

@pytest.mark.parametrize("seed", range(5))
def test_outcome_credits_match_a_per_answer_loop(seed):
    gen = torch.Generator().manual_seed(seed)
    groups, G_ = 5, 3
    N = groups * G_
    marks = torch.randint(0, 2, (N,), generator=gen).float() - 0.1 * (torch.rand(N, generator=gen) < 0.2)
    lengths = torch.randint(0, 7, (N,), generator=gen)
    m = _mask(lengths, 7)
    expected = {name: torch.zeros(N, 7) for name in ("sign", "raw", "batch", "rloo", "group")}
    mean_all = sum(marks.tolist()) / N
    for b in range(N):
        g = b // G_
        siblings = marks[g * G_:(g + 1) * G_].tolist()
        mean_g = sum(siblings) / G_
        std_g = math.sqrt(sum((x - mean_g) ** 2 for x in siblings) / (G_ - 1))
        r = marks[b].item()
        per_answer = {"sign": 1.0 if r == 1.0 else -1.0, "raw": r, "batch": r - mean_all,
                      "rloo": r - (sum(siblings) - r) / (G_ - 1), "group": (r - mean_g) / (std_g + 1e-6)}
        for t in range(int(lengths[b])):
            for name, value in per_answer.items():
                expected[name][b, t] = value
    for name, want in expected.items():
        got = credit.outcome_credit(name, marks, m, group_size=G_)
        assert torch.allclose(got, want, atol=1e-5), name


@pytest.mark.parametrize("seed", range(3))
def test_dpo_credit_is_minus_the_gradient_of_the_dpo_loss(seed):
    """A step on −Σ_t c_t log π(y_t) (summed over tokens, averaged over pairs) has exactly the
    gradient of dpo_loss(...).losses.mean(), for every loss type."""
    gen = torch.Generator().manual_seed(seed)
    K, width = 4, 6
    cm = _mask(torch.randint(1, width + 1, (K,), generator=gen), width)
    rm = _mask(torch.randint(1, width + 1, (K,), generator=gen), width)
    for loss_type in ("sigmoid", "ipo", "hinge"):
        logp_c = (-torch.rand(K, width, generator=gen, dtype=torch.float64)).requires_grad_(True)
        logp_r = (-torch.rand(K, width, generator=gen, dtype=torch.float64)).requires_grad_(True)
        ref_c, ref_r = -torch.rand(K, generator=gen, dtype=torch.float64), -torch.rand(K, generator=gen, dtype=torch.float64)
        seq_c, seq_r = (logp_c * cm).sum(1), (logp_r * rm).sum(1)
        rlcore.dpo_loss(seq_c, seq_r, ref_c, ref_r, beta=0.3, loss_type=loss_type, chosen_lengths=cm.sum(1),
                        rejected_lengths=rm.sum(1)).losses.mean().backward()
        c_c, c_r = credit.dpo_credit(seq_c.detach(), seq_r.detach(), ref_c, ref_r, cm, rm, beta=0.3,
                                     loss_type=loss_type)
        assert torch.allclose(logp_c.grad, -c_c / K) and torch.allclose(logp_r.grad, -c_r / K), loss_type


# ---------------------------------------------------------------- identities

def test_identities_between_the_outcome_credits():
    gen = torch.Generator().manual_seed(7)
    marks = torch.randint(0, 2, (24,), generator=gen).float()  # 0/1 marks
    m = _mask(torch.randint(1, 9, (24,), generator=gen), 8)
    # ±1 is the raw mark with the constant baseline 1/2, doubled
    assert torch.equal(credit.sign_credit(marks, m), 2 * (credit.raw_credit(marks, m) - 0.5 * m))
    # the group mean is the leave-one-out mean rescaled by (G − 1) / G
    for G_ in (2, 3, 4):
        assert torch.allclose(credit.group_credit(marks, m, G_, scale_rewards="none"),
                              (G_ - 1) / G_ * credit.rloo_credit(marks, m, G_), atol=1e-6)
    # a batch baseline centres the answers' credits
    assert abs(credit.batch_credit(marks, m)[:, 0].sum().item()) < 1e-5
    # DPO's implicit per-token rewards add up to the sequence-level implicit reward
    logp, ref = -torch.rand(24, 8, generator=gen), -torch.rand(24, 8, generator=gen)
    per_token = credit.dpo_token_rewards(logp, ref, m, beta=0.2)
    seq = rlcore.dpo_loss((logp * m).sum(1), (logp * m).sum(1), (ref * m).sum(1), (ref * m).sum(1), beta=0.2)
    assert torch.allclose(per_token.sum(1), seq.chosen_rewards, atol=1e-5)


def test_critic_credit_with_lambda_one_is_the_return_minus_the_value():
    gen = torch.Generator().manual_seed(3)
    m = _mask(torch.tensor([3, 5, 1, 4]), 5)
    marks, values = torch.tensor([1.0, 0.0, -0.1, 1.0]), torch.rand(4, 5, generator=gen) * m
    adv, returns = credit.critic_credit(marks, values, m, gamma=1.0, lam=1.0, whiten_advantages=False)
    mark_to_go = torch.where(m, marks[:, None], torch.zeros(()))  # γ = 1: every token's return is the mark
    assert torch.allclose(adv, (mark_to_go - values) * m, atol=1e-6)
    assert torch.allclose(returns, mark_to_go, atol=1e-6)


# ---------------------------------------------------------------- against the code it replaced

def test_each_credit_equals_what_its_old_loop_computed():
    """The formulas of the four loops rlcore.train replaced (reinforce.py's _weights, grpo.py's
    grpo_advantages broadcast over tokens, ppo.py's inline reward shaping + GAE + whitening), written
    out as they were, give bit-identical credit on a real rollout's marks and mask."""
    from rlcore.policy import load_policy
    from rlcore.rollout import generate, response_logprobs
    from rlcore.settings import make_task
    from rlcore.tasks import verify_batch

    torch.manual_seed(0)
    model, tokenizer = load_policy()
    problems = [p for p in make_task().heldout[:8] for _ in range(4)]
    ro = generate(model, tokenizer, [p.prompt for p in problems], seed=11, compute_logp=False)
    marks = torch.tensor(verify_batch(ro.texts, problems))
    mask = ro.response_mask
    # reinforce.py: w = where(r > 0.5, 1, -1), and per_token = -w[:, None] * logp
    old_sign = torch.where(marks > 0.5, 1.0, -1.0)[:, None] * mask
    assert torch.equal(credit.sign_credit(marks, mask), old_sign)
    assert torch.equal(credit.batch_credit(marks, mask), (marks - marks.mean())[:, None] * mask)
    # grpo.py: one advantage per answer, broadcast over tokens by ppo_clip_loss
    old_group = rlcore.group_advantages(marks, 4, scale="std")
    assert torch.equal(credit.group_credit(marks, mask, 4), old_group[:, None] * mask)
    assert torch.equal(credit.rloo_credit(marks, mask, 4), rlcore.rloo_advantages(marks, 4)[:, None] * mask)
    # ppo.py: k1 KL in the reward, GAE over tokens, whitening
    with torch.no_grad():
        logp = response_logprobs(model, ro)
    ref_logp = logp + 0.01 * torch.randn(logp.shape, generator=torch.Generator().manual_seed(1)) * mask
    values = torch.rand(logp.shape, generator=torch.Generator().manual_seed(2)) * mask
    kl_reward = kl_estimate(logp, ref_logp, kind="k1") * mask
    rewards = torch.zeros(mask.shape)
    rewards[torch.arange(len(marks)), mask.sum(1) - 1] = marks
    rewards = (rewards - 0.05 * kl_reward) * mask
    old_adv, old_returns = gae(rewards, values, gamma=1.0, lam=0.95, mask=mask)
    adv, returns = credit.critic_credit(marks, values, mask, gamma=1.0, lam=0.95, logp=logp, ref_logp=ref_logp,
                                        beta=0.05, kl_kind="k1")
    assert torch.equal(adv, whiten(old_adv, mask)) and torch.equal(returns, old_returns)


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize("call, name", [
    (lambda: credit.sign_credit(torch.ones(3, 2), _mask(torch.tensor([1, 2, 1]), 2)), "rewards"),
    (lambda: credit.sign_credit(torch.ones(3), torch.ones(4, 2, dtype=torch.bool)), "mask"),
    (lambda: credit.raw_credit(torch.tensor([1.0, float("nan")]), torch.ones(2, 2, dtype=torch.bool)), "rewards"),
    (lambda: credit.batch_credit(torch.ones(2), torch.tensor([[False, True], [True, True]])), "mask"),
    (lambda: credit.rloo_credit(torch.ones(6), torch.ones(6, 2, dtype=torch.bool), 4), "group_size"),
    (lambda: credit.group_credit(torch.ones(4), torch.ones(4, 2, dtype=torch.bool), 2, scale_rewards="std"),
     "scale_rewards"),
    (lambda: credit.outcome_credit("gae", torch.ones(2), torch.ones(2, 2, dtype=torch.bool)), "credit"),
    (lambda: credit.token_rewards(torch.ones(2), torch.ones(2, 2, dtype=torch.bool), beta=-1.0), "beta"),
    (lambda: credit.critic_credit(torch.ones(2), torch.zeros(2, 3), torch.ones(2, 2, dtype=torch.bool)), "values"),
    (lambda: credit.critic_credit(torch.ones(2), torch.zeros(2, 2), torch.ones(2, 2, dtype=torch.bool),
                                  logp=torch.zeros(2, 2)), "ref_logp"),
    (lambda: credit.dpo_token_rewards(torch.zeros(2, 2), torch.zeros(2, 3), torch.ones(2, 2, dtype=torch.bool)),
     "ref_logp"),
    (lambda: credit.dpo_credit(torch.zeros(2), torch.zeros(2), torch.zeros(2), torch.zeros(2),
                               torch.ones(2, 2, dtype=torch.bool), torch.ones(2, 2, dtype=torch.bool),
                               loss_type="kto"), "loss_type"),
])
def test_bad_input_raises_naming_the_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()


def test_every_credit_name_is_known_to_the_training_loop():
    from rlcore.train import TrainConfig, check_config

    assert set(credit.CREDITS) == set(credit.OUTCOME_CREDITS) | {"gae", "dpo", "mc", "oracle"}
    for name in credit.CREDITS:
        check_config(TrainConfig(credit=name, group_size=2, beta=0.1 if name == "dpo" else 0.0))


# ---------------------------------------------------------------- Monte Carlo values (the ground truth)

def _exact_value(model, tokenizer, prompt_ids, prefix, problem, budget, temperature=1.0, penalty=0.1):
    """V(s) by listing every continuation of at most `budget` tokens with its probability."""
    from rlcore.tasks import verify

    eos = tokenizer.eos_token_id
    frontier, total = [(list(prefix), 0.0)], 0.0
    grade = lambda seq: verify(tokenizer.decode(seq, skip_special_tokens=True), problem.answer,
                               no_answer_penalty=penalty)
    for _ in range(budget):
        ids = torch.tensor([prompt_ids + seq for seq, _ in frontier])
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=ids).logits[:, -1].double() / temperature, dim=-1)  # (n, V)
        new = []
        for (seq, lp), row in zip(frontier, logp.tolist()):
            for v, lv in enumerate(row):
                if v == eos:
                    total += math.exp(lp + lv) * grade(seq)
                else:
                    new.append((seq + [v], lp + lv))
        frontier = new
    return total + sum(math.exp(lp) * grade(seq) for seq, lp in frontier)  # cut by the budget


def test_mc_values_match_exact_enumeration():
    """On the fifth grader, the last states of two answers, where at most 3 tokens are left, have
    values that can be listed exactly; the Monte Carlo estimates must agree within 4.5 standard errors."""
    from rlcore.policy import load_policy
    from rlcore.rollout import generate
    from rlcore.settings import make_task

    torch.set_num_threads(1)
    model, tokenizer = load_policy()
    problems = make_task().heldout[:2]
    ro = generate(model, tokenizer, [p.prompt for p in problems], seed=4, compute_logp=False)
    budget = int(ro.lengths.max()) + 1
    mc = credit.mc_values(model, tokenizer, ro, problems, k=800, max_new_tokens=budget, seed=0)
    checked = 0
    for b, problem in enumerate(problems):
        prompt = ro.prompt_ids[b][ro.prompt_mask[b]].tolist()
        L = int(ro.lengths[b])
        for t in range(max(0, budget - 3), L):
            exact = _exact_value(model, tokenizer, prompt, ro.response_ids[b, :t].tolist(), problem, budget - t)
            se = max(mc.values_stderr[b, t].item(), 1e-3)
            assert abs(mc.values[b, t].item() - exact) < 4.5 * se, (b, t, mc.values[b, t].item(), exact)
            checked += 1
    assert checked >= 2


def test_mc_values_shapes_terminal_values_and_advantages():
    from rlcore.policy import load_policy
    from rlcore.rollout import generate
    from rlcore.settings import make_task
    from rlcore.tasks import verify_batch

    model, tokenizer = load_policy()
    problems = make_task().heldout[:6]
    ro = generate(model, tokenizer, [p.prompt for p in problems], seed=2, compute_logp=False)
    mc = credit.mc_values(model, tokenizer, ro, problems, k=4, seed=1)
    B, T = ro.response_ids.shape
    assert mc.values.shape == mc.values_stderr.shape == (B, T + 1)
    assert mc.advantages.shape == mc.advantages_stderr.shape == (B, T)
    marks = torch.tensor(verify_batch(ro.texts, problems))
    assert torch.equal(mc.values[torch.arange(B), ro.lengths], marks)  # the terminal state is its own mark
    assert torch.all(mc.values_stderr[torch.arange(B), ro.lengths] == 0)
    # the advantages telescope: summed over an answer they are its mark minus V(s_0)
    assert torch.allclose(mc.advantages.sum(1), marks - mc.values[:, 0], atol=1e-5)
    assert torch.all(mc.advantages[~ro.response_mask] == 0)
    with pytest.raises(ValueError, match="k"):
        credit.mc_values(model, tokenizer, ro, problems, k=1)
    with pytest.raises(ValueError, match="problems"):
        credit.mc_values(model, tokenizer, ro, problems[:3], k=2)


def test_mc_values_at_step_starts():
    """VinePPO's step-level values: estimated where a step starts, one advantage per step on all of
    its tokens; with every token a step it is the token-level estimate, draw for draw."""
    from rlcore.policy import RUNNING_SUM_GRADER_DIR, load_policy
    from rlcore.rollout import generate
    from rlcore.settings import make_task

    torch.set_num_threads(1)
    model, tokenizer = load_policy(RUNNING_SUM_GRADER_DIR)
    task = make_task("running_sum")
    problems = task.heldout[:3]
    ro = generate(model, tokenizer, [p.prompt for p in problems], seed=3, compute_logp=False,
                  max_new_tokens=task.max_new_tokens)
    ends = tokenizer.convert_tokens_to_ids(list(task.step_ends))
    mc = credit.mc_values(model, tokenizer, ro, problems, k=2, max_new_tokens=task.max_new_tokens, seed=5,
                          step_ends=ends)
    token = credit.mc_values(model, tokenizer, ro, problems, k=2, max_new_tokens=task.max_new_tokens, seed=5)
    every = credit.mc_values(model, tokenizer, ro, problems, k=2, max_new_tokens=task.max_new_tokens, seed=5,
                             step_ends=range(len(tokenizer)))
    assert torch.equal(every.advantages, token.advantages) and every.continuations == token.continuations
    marks = mc.values[torch.arange(len(ro)), ro.lengths]
    n_steps = 0
    for b in range(len(ro)):
        L = int(ro.lengths[b])
        starts = [0] + [t + 1 for t in range(L - 1) if int(ro.response_ids[b, t]) in ends]
        n_steps += len(starts)
        for s, e in zip(starts, starts[1:] + [L]):
            assert torch.all(mc.advantages[b, s:e] == mc.values[b, e] - mc.values[b, s])
        # one advantage per step, and the steps' advantages telescope to the mark minus V(s_0)
        assert mc.advantages[b, starts].sum() == pytest.approx(float(marks[b] - mc.values[b, 0]), abs=1e-5)
    assert mc.continuations == 2 * n_steps < token.continuations
    assert torch.all(mc.advantages[~ro.response_mask] == 0)


# ---------------------------------------------------------------- the step verifier's credit

def _rollout_of(texts, tokenizer, prompt="37+85+12+64+29+51="):
    """A hand-made rollout: each text as response tokens, <eos> after it, right-padded."""
    from rlcore.rollout import Rollout

    rows = [tokenizer(t, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for t in texts]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), tokenizer.pad_token_id)
    for b, r in enumerate(rows):
        ids[b, : len(r)] = torch.tensor(r)
    mask = torch.arange(width)[None, :] < torch.tensor([len(r) for r in rows])[:, None]
    prompt_ids = torch.tensor([tokenizer(prompt)["input_ids"]] * len(rows))
    return Rollout(prompt_ids, torch.ones_like(prompt_ids, dtype=torch.bool), ids, mask,
                   torch.ones(len(rows), dtype=torch.bool), torch.zeros(ids.shape), list(texts))


def test_oracle_credit_blames_the_first_wrong_step_only():
    from rlcore.policy import load_tokenizer
    from rlcore.tasks import RunningSumProblem

    tokenizer = load_tokenizer()
    problem = RunningSumProblem((37, 85, 12, 64, 29, 51))
    right = problem.target
    slip = "731" + right[3:]  # the third character is wrong; the answer is still copied right
    late = right[:-1] + "9"  # only the copied answer is wrong
    ro = _rollout_of([right, slip, late], tokenizer)
    c = credit.oracle_credit(ro, [problem] * 3, tokenizer)
    L = len(right) + 1  # + <eos>
    assert c[0, :L].tolist() == [1.0] * L  # right work, right answer: every token +1
    assert c[1, :L].tolist() == [1.0, 1.0, -1.0] + [0.0] * (L - 3)  # blame on the slip, nothing after
    assert c[2, :L].tolist() == [1.0] * (L - 2) + [-1.0, 0.0]
    assert torch.all(c[~ro.response_mask] == 0)
    with pytest.raises(ValueError, match="first_error"):
        credit.oracle_credit(ro, [object()] * 3, tokenizer)


# ---------------------------------------------------------------- scoring credit

def test_credit_correlation_hand_computed_and_padding_ignored():
    mask = torch.tensor([[True, True, False], [True, True, True]])
    truth = torch.tensor([[1.0, 2.0, 99.0], [3.0, 4.0, 5.0]])
    assert credit.credit_correlation(2 * truth + 1, truth, mask) == pytest.approx(1.0)
    assert credit.credit_correlation(-truth, truth, mask) == pytest.approx(-1.0)
    flat = torch.where(mask, torch.ones(()), torch.full((), -7.0))
    assert math.isnan(credit.credit_correlation(flat, truth, mask))  # outcome credit that does not vary
    x = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # pooled over the five real tokens
    xs, ys = x[mask].tolist(), truth[mask].tolist()
    mx, my = sum(xs) / 5, sum(ys) / 5
    r = sum((a - mx) * (b - my) for a, b in zip(xs, ys)) / math.sqrt(sum((a - mx) ** 2 for a in xs) *
                                                                        sum((b - my) ** 2 for b in ys))
    assert credit.credit_correlation(x, truth, mask) == pytest.approx(r)


def test_blame_localisation_counts_ties_fractionally():
    mask = torch.tensor([[True, True, True, True], [True, True, False, False], [True, True, True, False]])
    c = torch.tensor([[0.5, -1.0, 0.2, 0.0],  # lowest at 1, the first wrong token: a hit
                      [-1.0, -1.0, 0.0, 0.0],  # a tie of two, one of them right: half a hit
                      [0.0, 0.0, 0.0, 0.0]])  # right answer: left out
    first_wrong = torch.tensor([1, 0, -1])
    hit, chance = credit.blame_localisation(c, first_wrong, mask)
    assert hit == pytest.approx((1 + 0.5) / 2) and chance == pytest.approx((1 / 4 + 1 / 2) / 2)
    constant = torch.where(mask, -torch.ones(()), torch.zeros(()))
    assert credit.blame_localisation(constant, first_wrong, mask) == pytest.approx((chance, chance))
    with pytest.raises(ValueError, match="first_wrong"):
        credit.blame_localisation(c, torch.tensor([1, 2, -1]), mask)  # answer 1 has only 2 real tokens
    with pytest.raises(ValueError, match="first_wrong"):
        credit.blame_localisation(c, torch.tensor([1, 0]), mask)  # one index per answer


def test_split_half_reliability_is_one_for_identical_halves_and_spearman_brown():
    adv = torch.tensor([[0.1, -0.2, 0.3], [0.0, 0.5, -0.1]])
    mask = torch.ones(2, 3, dtype=torch.bool)
    half = credit.MCValues(torch.zeros(2, 4), torch.zeros(2, 4), adv, torch.zeros(2, 3), 0)
    assert credit.split_half_reliability(half, half, mask) == pytest.approx(1.0)
    other = credit.MCValues(torch.zeros(2, 4), torch.zeros(2, 4), adv + torch.tensor([[0.3, 0.0, -0.2], [0.1, -0.3, 0.2]]),
                            torch.zeros(2, 3), 0)
    r = credit.credit_correlation(adv, other.advantages, mask)
    assert credit.split_half_reliability(half, other, mask) == pytest.approx(2 * r / (1 + r))
