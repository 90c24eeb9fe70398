"""PPO's parts (per-token rewards and explained variance from rlcore.credit, the critic from
rlcore.policy) and PPO through the one training loop (rlcore.train with the ppo preset)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from rlcore.credit import explained_variance, token_rewards
from rlcore.policy import ValueModel, load_policy
from rlcore.presets import ppo
from rlcore.rollout import generate
from rlcore.settings import CHAPTER7_PPO
from rlcore.train import train

HISTORY_KEYS = {"step", "samples", "seconds", "reward", "kl_ref", "explained_variance", "response_length",
                "policy_loss", "value_loss", "clip_frac", "approx_kl", "entropy"}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def rollout():
    model, tokenizer = load_policy()
    return model, generate(model, tokenizer, ["047+085=", "999+999=", "000+001="], seed=0, compute_logp=False)


# ---------------------------------------------------------------------------------------------
# token_rewards and explained_variance: hand-computed values
# ---------------------------------------------------------------------------------------------


def test_token_rewards_put_the_mark_on_the_last_real_token():
    mask = torch.tensor([[True, True, True], [True, False, False]])
    marks = torch.tensor([1.0, -0.1])
    expected = torch.tensor([[0.0, 0.0, 1.0], [-0.1, 0.0, 0.0]])
    assert torch.equal(token_rewards(marks, mask), expected)


def test_token_rewards_subtract_beta_kl_on_real_tokens_only():
    mask = torch.tensor([[True, True, True], [True, True, False]])
    marks = torch.tensor([1.0, 0.0])
    kl = torch.tensor([[0.5, -0.5, 1.0], [2.0, 1.0, 7.0]])  # the 7 is padding and must not leak
    expected = torch.tensor([[-0.05, 0.05, 1.0 - 0.1], [-0.2, -0.1, 0.0]])
    assert torch.allclose(token_rewards(marks, mask, kl, beta=0.1), expected)
    assert torch.equal(token_rewards(marks, mask, kl, beta=0.0), token_rewards(marks, mask))


@pytest.mark.parametrize("case", ["perfect", "constant", "half"])
def test_explained_variance_hand_computed(case):
    returns = torch.tensor([[0.0, 1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 7.0]])
    mask = torch.ones_like(returns, dtype=torch.bool)
    values = {"perfect": returns.clone(), "constant": torch.full_like(returns, 3.0),
              "half": returns / 2}[case]
    expected = {"perfect": 1.0, "constant": 0.0, "half": 0.75}[case]  # 1 - Var(r/2) / Var(r) = 3/4
    assert explained_variance(values, returns, mask) == pytest.approx(expected, abs=1e-12)


def test_explained_variance_ignores_padding_and_is_nan_without_variance():
    returns = torch.tensor([[1.0, 2.0, 99.0]])
    values = torch.tensor([[1.0, 2.0, -99.0]])
    mask = torch.tensor([[True, True, False]])
    assert explained_variance(values, returns, mask) == pytest.approx(1.0)
    assert math.isnan(explained_variance(values, torch.ones(1, 3), torch.ones(1, 3, dtype=torch.bool)))


# ---------------------------------------------------------------------------------------------
# The critic
# ---------------------------------------------------------------------------------------------


def test_value_model_starts_at_zero_and_is_zero_on_padding(rollout):
    model, ro = rollout
    critic = ValueModel.from_policy(model)
    with torch.no_grad():
        assert torch.equal(critic(ro), torch.zeros(ro.response_ids.shape))
        torch.nn.init.normal_(critic.head.weight, generator=torch.Generator().manual_seed(0))
        values = critic(ro)
    assert values.shape == ro.response_ids.shape
    assert torch.all(values[~ro.response_mask] == 0)
    assert critic.trunk is not model.model  # a separate copy, not shared weights


def test_value_of_s_t_does_not_see_token_t(rollout):
    """V(s_t) is read where the prompt and the tokens before t have been seen, never token t itself."""
    model, ro = rollout
    critic = ValueModel.from_policy(model)
    torch.nn.init.normal_(critic.head.weight, generator=torch.Generator().manual_seed(0))
    t = 2
    changed = replace(ro, response_ids=ro.response_ids.clone())
    changed.response_ids[:, t] = (changed.response_ids[:, t] + 1) % 10 + 5  # another character
    with torch.no_grad():
        before, after = critic(ro), critic(changed)
    assert torch.allclose(before[:, : t + 1], after[:, : t + 1], atol=1e-6)
    assert not torch.allclose(before[:, t + 1], after[:, t + 1], atol=1e-6)


# ---------------------------------------------------------------------------------------------
# The training loop
# ---------------------------------------------------------------------------------------------

TINY = ppo(steps=2, prompts_per_step=8, epochs=1, minibatches=2, eval_every=1, eval_size=16, seed=3)


def _tiny_run(task, config=TINY):
    model, tokenizer = load_policy()
    return model, train(model, tokenizer, task, config, progress=False)


def test_smoke_tiny_budget_logs_every_statistic_and_is_deterministic(task):
    _, first = _tiny_run(task)
    _, second = _tiny_run(task)
    history = first["history"]
    assert [h["step"] for h in history] == [0, 1, 2]
    for h in history[1:]:
        assert HISTORY_KEYS <= set(h) and "accuracy" in h
        assert all(math.isfinite(h[k]) for k in HISTORY_KEYS - {"explained_variance"})
        assert 0.0 <= h["clip_frac"] <= 1.0 and h["approx_kl"] >= 0 and h["entropy"] > 0
    assert history[-1]["samples"] == 2 * TINY.answers_per_step
    assert isinstance(first["critic"], ValueModel)
    without_time = [{k: v for k, v in h.items() if k != "seconds"} for h in history]
    assert without_time == [{k: v for k, v in h.items() if k != "seconds"} for h in second["history"]]


def test_kl_in_the_loss_path_runs(task):
    _, result = _tiny_run(task, replace(TINY, kl_in_reward=False, beta=0.1, steps=1))
    assert math.isfinite(result["history"][-1]["policy_loss"])


def test_critic_warmup_leaves_the_policy_untouched(task):
    model, result = _tiny_run(task, replace(TINY, critic_warmup=2, critic_epochs=2))
    fresh, _ = load_policy()
    for p, q in zip(model.parameters(), fresh.parameters()):
        assert torch.equal(p, q)
    assert all(math.isnan(h["policy_loss"]) and math.isfinite(h["value_loss"]) for h in result["history"][1:])
    assert any(p.abs().sum() > 0 for p in result["critic"].head.parameters())  # the critic did learn


def test_ppo_lifts_held_out_accuracy(task):
    """The real test: 20 steps of the book's configuration lift held-out accuracy by > 10 points
    (observed: 0.376 -> 0.590)."""
    model, tokenizer = load_policy()
    config = replace(CHAPTER7_PPO, steps=20, eval_every=20, eval_size=250)
    history = train(model, tokenizer, task, config, progress=False)["history"]
    before, after = history[0]["accuracy"], history[-1]["accuracy"]
    assert after > before + 0.10, (before, after)
