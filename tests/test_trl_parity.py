"""rlcore against Hugging Face TRL, number for number (chapter 12, issue #18).

Every name the book says it shares with TRL (GRPO's ``loss_type`` and ``scale_rewards``, the DPO
``loss_type``s, the k3 KL term, the RLOO baseline, token log-probs) is computed here by TRL's own
code and by rlcore's on identical random tensors, in float64, and compared to 1e-10: the value and
the gradient. TRL's loss code lives inside its trainers' ``_compute_loss`` methods;
:func:`rlcore.scale.trl_grpo_loss` and :func:`rlcore.scale.trl_dpo_loss` call those methods on a
stand-in trainer object that holds only the attributes the method reads, fed the tensors a forward
pass would have produced. TRL's advantages are computed inside
generation, so those tests build a real trainer on the shipped fifth grader and call its
``_generate_and_score_completions`` with rewards the test chooses.

Where the book keeps a different convention on purpose, a test pins the difference:
``group_advantages``' eps (1e-6; TRL 1e-4), GRPO's mean over the answers that have tokens (TRL
counts empty rows too), TRL's importance-weighted KL term (``use_bias_correction_kl``), and
conservative DPO's ``label_smoothing`` (TRL 1.x ignores it for ``"sigmoid"``).
"""

from __future__ import annotations

import copy
import pytest
import torch

import rlcore
from rlcore.presets import LOSS_TYPE_OPTIONS, LOSS_TYPES

trl = pytest.importorskip("trl", reason="TRL is a test dependency (requirements.txt)")
from trl.trainer.utils import selective_log_softmax  # noqa: E402

from rlcore import scale  # noqa: E402

F64 = torch.float64
TOL = dict(rtol=0, atol=1e-10)


def _batch(seed: int, B: int = 6, T: int = 9, empty_row: bool = False):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    lengths[0] = T  # one row fills the width
    if empty_row:
        lengths[-1] = 0
    mask = torch.arange(T)[None, :] < lengths[:, None]  # (B, T) trailing padding
    logp = -torch.rand(B, T, generator=g, dtype=F64) * 3
    old = logp + 0.3 * torch.randn(B, T, generator=g, dtype=F64)  # ratios on both sides of the clip
    ref = logp + 0.2 * torch.randn(B, T, generator=g, dtype=F64)
    adv = torch.randn(B, generator=g, dtype=F64)
    return logp, old, ref, adv, mask


def _trl_grpo_loss(logp, old, ref, adv, mask, *, loss_type, beta, eps=0.2, eps_high=None, max_len=12,
                   gen_tokens=None, minibatches=1, bias_correction=False):
    """TRL's GRPOTrainer._compute_loss on these tensors (rlcore.scale.trl_grpo_loss)."""
    return scale.trl_grpo_loss(logp, old, ref, adv, mask, loss_type=loss_type, beta=beta, epsilon=eps,
                               epsilon_high=eps_high, max_completion_length=max_len, num_items_in_batch=gen_tokens,
                               steps_per_generation=minibatches, use_bias_correction_kl=bias_correction)


def _rlcore_grpo_loss(logp, old, ref, adv, mask, *, loss_type, beta, eps=0.2, eps_high=None, max_len=12,
                      num_tokens=None):
    options = LOSS_TYPE_OPTIONS[loss_type]
    agg = dict(max_len=max_len, num_tokens=num_tokens)
    loss = rlcore.ppo_clip_loss(logp, old, adv, mask, clip_eps=eps, clip_eps_high=eps_high,
                                agg=options["loss_agg_mode"], **agg).loss
    kl = rlcore.kl_estimate(logp, ref, kind="k3")
    return loss + beta * rlcore.aggregate(kl, mask, options["loss_agg_mode"], **agg)


def _value_and_grad(fn, logp):
    x = logp.detach().clone().requires_grad_(True)
    out = fn(x)
    (grad,) = torch.autograd.grad(out, x)
    return out.detach(), grad


# ---------------------------------------------------------------------------------------------
# Token log-probs
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(3))
def test_token_logprobs_match_trls_selective_log_softmax(seed):
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(4, 7, 19, generator=g, dtype=F64) * 4).requires_grad_(True)
    tokens = torch.randint(0, 19, (4, 7), generator=g)
    ours = rlcore.token_logprobs(logits, tokens)
    theirs = selective_log_softmax(logits, tokens)
    torch.testing.assert_close(ours, theirs, **TOL)
    w = torch.randn(4, 7, generator=g, dtype=F64)
    (g_ours,) = torch.autograd.grad((ours * w).sum(), logits)
    (g_theirs,) = torch.autograd.grad((theirs * w).sum(), logits)
    torch.testing.assert_close(g_ours, g_theirs, **TOL)


# ---------------------------------------------------------------------------------------------
# GRPO's loss: every loss_type, with and without the k3 KL term, the clip on both sides
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("eps_high", [None, 0.28], ids=["symmetric", "clip-higher"])
@pytest.mark.parametrize("beta", [0.0, 0.04], ids=["no-kl", "k3-kl"])
@pytest.mark.parametrize("loss_type", sorted(LOSS_TYPES))
@pytest.mark.parametrize("seed", range(3))
def test_grpo_loss_and_gradient_match_trl(loss_type, beta, eps_high, seed):
    logp, old, ref, adv, mask = _batch(seed)
    minibatches, gen_tokens = 2, None
    num_tokens = None
    if loss_type == "dapo":  # this tensor is one of 2 minibatches of a batch with more tokens
        gen_tokens = int(mask.sum()) + 17
        num_tokens = gen_tokens / minibatches
    trl_value, trl_grad = _value_and_grad(
        lambda x: _trl_grpo_loss(x, old, ref, adv, mask, loss_type=loss_type, beta=beta, eps_high=eps_high,
                                 gen_tokens=gen_tokens, minibatches=minibatches)[0], logp)
    our_value, our_grad = _value_and_grad(
        lambda x: _rlcore_grpo_loss(x, old, ref, adv, mask, loss_type=loss_type, beta=beta, eps_high=eps_high,
                                    num_tokens=num_tokens), logp)
    assert trl_value.dtype == F64
    torch.testing.assert_close(our_value, trl_value, **TOL)
    torch.testing.assert_close(our_grad, trl_grad, **TOL)
    assert our_grad.abs().sum() > 0


def test_dapo_and_bnpo_differ_as_trl_says():
    """With a minibatch holding fewer tokens than the batch's average, dapo weighs it less than bnpo."""
    logp, old, ref, adv, mask = _batch(0)
    n = int(mask.sum())
    bnpo = _trl_grpo_loss(logp, old, ref, adv, mask, loss_type="bnpo", beta=0.0)[0]
    dapo = _trl_grpo_loss(logp, old, ref, adv, mask, loss_type="dapo", beta=0.0, gen_tokens=3 * n, minibatches=2)[0]
    torch.testing.assert_close(dapo, bnpo * n / (3 * n / 2), **TOL)


def test_the_k3_term_trl_logs_is_rlcores_kl_estimate():
    logp, old, ref, adv, mask = _batch(1)
    _, metrics = _trl_grpo_loss(logp, old, ref, adv, mask, loss_type="grpo", beta=0.04)
    ours = rlcore.aggregate(rlcore.kl_estimate(logp, ref, kind="k3"), mask, "token-mean")
    assert abs(metrics["kl"][0] - ours.item()) < 1e-10


def test_trls_importance_weighted_kl_is_a_different_term():
    """TRL's default ``use_bias_correction_kl=True`` multiplies k3 by the ratio π/π_old; the book's
    term (and TRL's with the flag off) is plain k3. ``rlcore.scale`` switches the flag off."""
    logp, old, ref, adv, mask = _batch(2)
    weighted = _trl_grpo_loss(logp, old, ref, adv, mask, loss_type="bnpo", beta=0.04, bias_correction=True)[0]
    plain = _rlcore_grpo_loss(logp, old, ref, adv, mask, loss_type="bnpo", beta=0.04)
    assert (weighted - plain).abs() > 1e-6
    ratio = torch.exp(logp - old)
    kl = rlcore.kl_estimate(logp, ref, kind="k3") * ratio
    pg = rlcore.ppo_clip_loss(logp, old, adv, mask, agg="token-mean").loss
    torch.testing.assert_close(weighted, pg + 0.04 * rlcore.aggregate(kl, mask, "token-mean"), **TOL)


def test_grpo_with_an_empty_answer_differs_on_purpose():
    """rlcore's ``"seq-mean-token-mean"`` (verl's) averages over the answers that have a token; TRL's
    ``grpo`` divides by every row. (The book's loop never produces an empty answer: ``<eos>`` counts.)"""
    logp, old, ref, adv, mask = _batch(3, empty_row=True)
    theirs = _trl_grpo_loss(logp, old, ref, adv, mask, loss_type="grpo", beta=0.0)[0]
    ours = _rlcore_grpo_loss(logp, old, ref, adv, mask, loss_type="grpo", beta=0.0)
    B, nonempty = mask.shape[0], int(mask.any(1).sum())
    torch.testing.assert_close(theirs, ours * nonempty / B, **TOL)


def test_the_loss_type_table_covers_trls_aggregations():
    from trl import GRPOConfig

    assert set(LOSS_TYPES) <= set(GRPOConfig.__dataclass_fields__["loss_type"].metadata.get("help", "")
                                  .replace("`", " ").replace(",", " ").replace("'", " ").replace('"', " ").split()
                                  ) | {"grpo", "bnpo", "dapo", "dr_grpo"}
    assert GRPOConfig.__dataclass_fields__["loss_type"].default in LOSS_TYPES  # TRL's default is one of ours


# ---------------------------------------------------------------------------------------------
# Advantages: scale_rewards and RLOO, from TRL's own generation code
# ---------------------------------------------------------------------------------------------

class _Rewards:
    """A reward function that hands out the rewards a test chose, in order."""

    __name__ = "chosen"

    def __init__(self):
        self.values: list[float] = []

    def __call__(self, completions, **kwargs):
        assert len(completions) == len(self.values)
        return list(self.values)


@pytest.fixture(scope="module")
def trl_trainers(tmp_path_factory):
    from rlcore import presets, scale
    from rlcore.policy import load_policy
    from rlcore.settings import make_task

    model, tokenizer = load_policy()
    task = make_task()
    reward = _Rewards()
    out = {}
    for credit, config in (("group", presets.grpo(prompts_per_step=4, group_size=4, steps=1)),
                           ("rloo", presets.reinforce("rloo", prompts_per_step=4, group_size=4, steps=1))):
        out[credit] = scale.build_trainer(config, copy.deepcopy(model), tokenizer, task,
                                          output_dir=tmp_path_factory.mktemp(credit), reward_funcs=[reward])
    return out, reward, scale.prompt_dataset(task, 4, seed=0)


def _trl_advantages(trainer, reward, prompts, rewards):
    reward.values = rewards.tolist()
    rows = [{"prompt": p, "answer": a} for p, a in zip(prompts["prompt"], prompts["answer"]) for _ in range(4)]
    with torch.no_grad(), scale._quiet():
        return trainer._generate_and_score_completions(rows)["advantages"]


@pytest.mark.parametrize("scale_rewards", ["group", "batch", "none"])
@pytest.mark.parametrize("seed", range(2))
def test_group_advantages_match_trls_scale_rewards(trl_trainers, scale_rewards, seed):
    trainers, reward, prompts = trl_trainers
    trainer = trainers["group"]
    trainer.scale_rewards = scale_rewards
    g = torch.Generator().manual_seed(seed)
    rewards = torch.randint(0, 2, (16,), generator=g).float() - 0.1 * (torch.rand(16, generator=g) < 0.2)
    rewards[:4] = 1.0  # one group with no signal: its std is 0
    theirs = _trl_advantages(trainer, reward, prompts, rewards)
    scale = {"group": "std", "batch": "batch", "none": "none"}[scale_rewards]
    ours = rlcore.group_advantages(rewards.double(), 4, scale=scale, eps=1e-4)  # TRL's eps
    credit = rlcore.credit.group_credit(rewards.double(), torch.ones(16, 1, dtype=torch.bool), 4,
                                        scale_rewards=scale_rewards)[:, 0]
    # TRL grades in float32; rlcore in the rewards' dtype
    torch.testing.assert_close(theirs.double(), ours, rtol=0, atol=1e-6)
    if scale_rewards == "none":
        torch.testing.assert_close(credit, ours, rtol=0, atol=1e-12)
    else:  # rlcore's default eps is 1e-6, TRL's 1e-4: the same advantages up to a factor (std + 1e-4) / (std + 1e-6)
        torch.testing.assert_close(credit, rlcore.group_advantages(rewards.double(), 4, scale=scale), rtol=0, atol=1e-12)
        moved = ours != 0
        ratio = credit[moved] / ours[moved]
        assert bool((ratio > 1).all()) and ratio.max() < 1 + 1e-4 / 0.04  # every std here is at least 0.04


@pytest.mark.parametrize("seed", range(2))
def test_rloo_advantages_match_trls_leave_one_out_baseline(trl_trainers, seed):
    trainers, reward, prompts = trl_trainers
    g = torch.Generator().manual_seed(10 + seed)
    rewards = torch.randint(0, 2, (16,), generator=g).float() - 0.1 * (torch.rand(16, generator=g) < 0.2)
    theirs = _trl_advantages(trainers["rloo"], reward, prompts, rewards)
    torch.testing.assert_close(theirs.double(), rlcore.rloo_advantages(rewards.double(), 4), rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# DPO: sigmoid, hinge and IPO, the implicit rewards, and label smoothing
# ---------------------------------------------------------------------------------------------

def _trl_dpo(per_token_logps, completion_mask, ref_chosen, ref_rejected, *, loss_type, beta, label_smoothing=0.0):
    """TRL's DPOTrainer._compute_loss (rlcore.scale.trl_dpo_loss)."""
    return scale.trl_dpo_loss(per_token_logps, completion_mask, ref_chosen, ref_rejected, loss_type=loss_type,
                              beta=beta, label_smoothing=label_smoothing)


def _pairs(seed, K=5, T=8):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, T + 1, (2 * K,), generator=g)
    mask = torch.arange(T)[None, :] < lengths[:, None]  # (2K, T)
    per_token = torch.where(mask, -torch.rand(2 * K, T, generator=g, dtype=F64) * 2, torch.zeros((), dtype=F64))
    completion_mask = torch.cat([torch.zeros(2 * K, 1, dtype=torch.long), mask.long()], dim=1)  # the prompt's slot
    ref = per_token.sum(1) + torch.randn(2 * K, generator=g, dtype=F64)
    return per_token, mask, completion_mask, ref[:K], ref[K:]


@pytest.mark.parametrize("beta", [0.1, 0.5])
@pytest.mark.parametrize("loss_type", ["sigmoid", "hinge", "ipo"])
@pytest.mark.parametrize("seed", range(3))
def test_dpo_loss_and_gradient_match_trl(loss_type, beta, seed):
    per_token, mask, completion_mask, ref_c, ref_r = _pairs(seed)
    K = ref_c.shape[0]
    lengths = mask.sum(1)

    def ours(x):
        seq = (x * mask).sum(1)
        return rlcore.dpo_loss(seq[:K], seq[K:], ref_c, ref_r, beta=beta, loss_type=loss_type,
                               chosen_lengths=lengths[:K], rejected_lengths=lengths[K:]).losses.mean()

    our_value, our_grad = _value_and_grad(ours, per_token)
    trl_value, trl_grad = _value_and_grad(
        lambda x: _trl_dpo(x * mask, completion_mask, ref_c, ref_r, loss_type=loss_type, beta=beta)[0], per_token)
    torch.testing.assert_close(our_value, trl_value, **TOL)
    torch.testing.assert_close(our_grad, trl_grad, **TOL)
    # the implicit rewards TRL logs are rlcore's
    seq = per_token.sum(1)
    out = rlcore.dpo_loss(seq[:K], seq[K:], ref_c, ref_r, beta=beta)
    _, metrics = _trl_dpo(per_token, completion_mask, ref_c, ref_r, loss_type=loss_type, beta=beta)
    assert abs(metrics["rewards/chosen"][0] - out.chosen_rewards.mean().item()) < 1e-10
    assert abs(metrics["rewards/rejected"][0] - out.rejected_rewards.mean().item()) < 1e-10


def test_ipo_on_summed_log_probs_is_not_trls():
    """The IPO paper's equation on summed log-probs (lengths of one) differs from TRL's as soon as
    an answer has more than one token."""
    per_token, mask, completion_mask, ref_c, ref_r = _pairs(4)
    K, seq, ones = ref_c.shape[0], per_token.sum(1), torch.ones(ref_c.shape[0])
    summed = rlcore.dpo_loss(seq[:K], seq[K:], ref_c, ref_r, loss_type="ipo", chosen_lengths=ones,
                             rejected_lengths=ones).losses.mean()
    theirs = _trl_dpo(per_token, completion_mask, ref_c, ref_r, loss_type="ipo", beta=0.1)[0]
    assert (summed - theirs).abs() > 1e-3


def test_label_smoothing_is_conservative_dpo_which_trl_1x_ignores():
    per_token, mask, completion_mask, ref_c, ref_r = _pairs(5)
    K, seq = ref_c.shape[0], per_token.sum(1)
    theirs = _trl_dpo(per_token, completion_mask, ref_c, ref_r, loss_type="sigmoid", beta=0.1, label_smoothing=0.2)[0]
    plain = rlcore.dpo_loss(seq[:K], seq[K:], ref_c, ref_r, beta=0.1).losses.mean()
    smoothed = rlcore.dpo_loss(seq[:K], seq[K:], ref_c, ref_r, beta=0.1, label_smoothing=0.2).losses.mean()
    torch.testing.assert_close(theirs, plain, **TOL)  # TRL: label_smoothing has no effect on "sigmoid"
    assert (smoothed - plain).abs() > 1e-3  # rlcore: cDPO


# ---------------------------------------------------------------------------------------------
# GAE and whitening
# ---------------------------------------------------------------------------------------------

def test_trl_has_no_ppo_trainer_to_check_gae_and_whitening_against():
    """TRL 1.x removed its PPO trainer, and with it its GAE loop and ``masked_whiten``; the book's
    ``gae`` and ``whiten`` are checked against slow loops and identities instead (test_advantages,
    test_masked). If a TRL release brings PPO back, this test fails: add the parity test then."""
    import trl.trainer.utils as utils

    assert not hasattr(trl, "PPOTrainer") and not hasattr(utils, "masked_whiten")
