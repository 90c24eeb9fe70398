"""Bugs the field shipped: each pitfall's buggy version, and the check that catches it (appendix).

Every entry of :data:`PITFALLS` is one mistake that public RL-for-LLM code has made (the thread
that reported it is in ``reported``): ``buggy`` is a faithful miniature of the mistake, ``right``
the ``rlcore`` function that does the same job, and ``check`` the property a test can verify, which
the buggy version fails and the right one passes. ``tests/test_pitfalls.py`` runs every check on
both; the appendix chapter shows each on the fifth grader's rollouts.

The buggy functions are here to be caught. Nothing else in ``rlcore`` calls them.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from .advantages import group_advantages
from .kl import kl_estimate
from .losses import ppo_clip_loss
from .masked import aggregate
from .returns import rewards_to_go

__all__ = ["Pitfall", "PITFALLS"]


@dataclass(frozen=True)
class Pitfall:
    """One pitfall: a name, where it was reported, what goes wrong, the buggy and the right
    function, and ``check(fn) -> (ok, measured)``: whether ``fn`` has the property, and the number
    that says so. Where a training run shows the bug, ``inject`` is a context manager that puts it into
    the one training loop (:func:`rlcore.train.train`) for the duration of a ``with`` block."""

    name: str
    reported: str
    what: str
    buggy: Callable
    right: Callable
    check: Callable
    inject: Optional[Callable] = None


# --------------------------------------------------------------------------------------------
# 1. a sequence-level ratio and clip where the method is token-level (PPO, GRPO)
# --------------------------------------------------------------------------------------------

def ppo_loss_sequence_ratio(logp, old_logp, advantages, mask, clip_eps=0.2):
    """BUGGY: one ratio per answer, exp(Σ_t logp − Σ_t old_logp), clipped per answer."""
    m = mask.to(logp.dtype)
    ratio = torch.exp(((logp - old_logp) * m).sum(1))  # (B,)
    per_seq = -torch.minimum(ratio * advantages, ratio.clamp(1 - clip_eps, 1 + clip_eps) * advantages)
    return per_seq.mean()


def ppo_loss_token_ratio(logp, old_logp, advantages, mask, clip_eps=0.2):
    """rlcore: one ratio per token, clipped per token, every token weighing the same."""
    return ppo_clip_loss(logp, old_logp, advantages, mask, clip_eps=clip_eps, agg="token-mean").loss


def _check_token_ratio(fn):
    # one answer of 10 tokens, advantage +1, one token moved far out of the clip range: the
    # token-level loss stops pushing that token but keeps the gradient of the other nine
    logp = torch.zeros(1, 10, dtype=torch.float64, requires_grad=True)
    old = torch.zeros(1, 10, dtype=torch.float64)
    old[0, 3] = -1.0  # ratio e on token 3
    (grad,) = torch.autograd.grad(fn(logp, old, torch.ones(1, dtype=torch.float64), torch.ones(1, 10, dtype=torch.bool)), logp)
    live = int((grad[0] != 0).sum())
    return live == 9, live  # tokens still receiving gradient


# --------------------------------------------------------------------------------------------
# 2. k3 with the ratio the wrong way round (π/π_ref instead of π_ref/π)
# --------------------------------------------------------------------------------------------

def k3_reversed(logp, ref_logp):
    """BUGGY: r = π/π_ref; then E_π[r − log r − 1] is not KL(π‖π_ref)."""
    u = logp - ref_logp
    return torch.exp(u) - u - 1


def k3_right(logp, ref_logp):
    """rlcore: r = π_ref/π (Schulman's k3), unbiased for KL(π‖π_ref) under samples from π."""
    return kl_estimate(logp, ref_logp, kind="k3")


def _exact_kl_check(fn):
    # exact expectation under π of the estimator, on a 5-way categorical, against the exact KL
    p = torch.tensor([0.5, 0.2, 0.15, 0.1, 0.05], dtype=torch.float64)
    q = torch.tensor([0.1, 0.3, 0.2, 0.2, 0.2], dtype=torch.float64)
    expected = (p * fn(p.log()[None], q.log()[None])[0]).sum().item()
    kl = (p * (p / q).log()).sum().item()
    return abs(expected - kl) < 1e-12, expected - kl


# --------------------------------------------------------------------------------------------
# 3. k3 computed from probabilities: exp underflows/overflows
# --------------------------------------------------------------------------------------------

def k3_from_probabilities(logp, ref_logp):
    """BUGGY: the ratio as exp(ref_logp) / exp(logp): 0/0 for long answers' log-probs."""
    r = torch.exp(ref_logp) / torch.exp(logp)
    return r - torch.log(r) - 1


def _finite_check(fn):
    logp = torch.tensor([[-800.0, -2.0]], dtype=torch.float64)  # a sequence log-prob far below exp's range
    ref = torch.tensor([[-801.0, -2.5]], dtype=torch.float64)
    out = fn(logp, ref)
    ok = bool(torch.isfinite(out).all()) and abs(out[0, 0].item() - (math.exp(-1) + 1 - 1)) < 1e-9
    return ok, out[0, 0].item()


# --------------------------------------------------------------------------------------------
# 4. the group's std over the wrong axis
# --------------------------------------------------------------------------------------------

def group_advantages_wrong_axis(rewards, group_size):
    """BUGGY: view(group_size, -1) puts the k-th answer of every prompt in one "group"."""
    g = rewards.view(group_size, -1)
    return ((g - g.mean(0, keepdim=True)) / (g.std(0, keepdim=True) + 1e-6)).reshape(-1)


def group_advantages_right(rewards, group_size):
    """rlcore: the answers to one prompt are contiguous: view(-1, group_size)."""
    return group_advantages(rewards, group_size)


def _group_loop_check(fn):
    g = torch.Generator().manual_seed(0)
    rewards = torch.randint(0, 2, (24,), generator=g).double()
    rewards[:4] = torch.tensor([1.0, 0.0, 0.0, 0.0])
    want = []
    for k in range(0, 24, 4):
        grp = rewards[k:k + 4]
        want += ((grp - grp.mean()) / (grp.std() + 1e-6)).tolist()
    err = (fn(rewards, 4) - torch.tensor(want, dtype=torch.float64)).abs().max().item()
    return err < 1e-9, err


# --------------------------------------------------------------------------------------------
# 5. all-equal groups divided by ~0
# --------------------------------------------------------------------------------------------

def group_advantages_no_eps(rewards, group_size):
    """BUGGY: (r − mean) / std with no epsilon: 0/0 = NaN when every answer got the same mark."""
    g = rewards.view(-1, group_size)
    return ((g - g.mean(1, keepdim=True)) / g.std(1, keepdim=True)).reshape(-1)


def _equal_group_check(fn):
    rewards = torch.tensor([1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    out = fn(rewards, 4)
    ok = bool(torch.isfinite(out).all()) and bool((out[:4] == 0).all())
    return ok, out[0].item()


# --------------------------------------------------------------------------------------------
# 6. truncated answers masked out of the numerator but not of the denominator
# --------------------------------------------------------------------------------------------

def token_mean_masking_numerator_only(per_token, mask, keep):
    """BUGGY: the dropped (truncated) answers' tokens are zeroed in the sum but still counted."""
    m = mask & keep[:, None]
    return (per_token * m).sum() / mask.sum().clamp(min=1)


def token_mean_masking_both(per_token, mask, keep):
    """rlcore: drop the answers from the mask, then aggregate: both sides see the same tokens."""
    return aggregate(per_token, mask & keep[:, None], "token-mean")


def _masked_mean_check(fn):
    per_token = torch.ones(4, 5, dtype=torch.float64)
    mask = torch.ones(4, 5, dtype=torch.bool)
    keep = torch.tensor([True, True, False, False])  # two answers truncated and dropped
    out = fn(per_token, mask, keep).item()
    return abs(out - 1.0) < 1e-12, out  # the mean of a loss that is 1 on every kept token is 1


# --------------------------------------------------------------------------------------------
# 7. training log-probs not divided by the sampling temperature
# --------------------------------------------------------------------------------------------

def logprobs_ignoring_temperature(logits, tokens, temperature):
    """BUGGY: the log-probs of the raw logits, although the tokens were sampled at logits / T."""
    return torch.log_softmax(logits, -1).gather(-1, tokens[..., None])[..., 0]


def logprobs_at_temperature(logits, tokens, temperature):
    """rlcore (``response_logprobs(..., temperature=T)``): the sampling distribution's log-probs."""
    from .tokens import token_logprobs

    return token_logprobs(logits / temperature, tokens)


@contextlib.contextmanager
def trainer_ignoring_temperature():
    """Put pitfall 7 into :func:`rlcore.train.train` while the ``with`` block runs: the loop scores the
    tokens it trains on with the raw logits (temperature 1), while the answers, and the old
    log-probabilities the ratio divides by, still come from the sampling temperature, as when a
    sampler such as vLLM samples at T and reports its log-probs, and the trainer forgets T (NeMo-RL
    PR #316). On-policy the ratio is then not 1, so the clip fires before the policy has moved, and the
    gradient is that of the wrong distribution. The loop is restored on leaving the block, also after
    an error.
    """
    from . import train as loop

    right = loop.response_logits

    def ignoring_temperature(model, rollout, *, temperature=None):
        return right(model, rollout, temperature=1.0)

    loop.response_logits = ignoring_temperature
    try:
        yield
    finally:
        loop.response_logits = right


def _first_ratio_check(fn):
    # on-policy, before any update: the importance ratio π/π_old must be exactly 1
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 6, 19, generator=g, dtype=torch.float64) * 3
    T = 0.7
    tokens = torch.distributions.Categorical(logits=logits / T).sample()
    sampler = torch.log_softmax(logits / T, -1).gather(-1, tokens[..., None])[..., 0]  # what generate used
    ratio = torch.exp(fn(logits, tokens, T) - sampler)
    dev = (ratio - 1).abs().max().item()
    return dev < 1e-12, dev


# --------------------------------------------------------------------------------------------
# 8. REINFORCE weighting every step by G_0 instead of G_t
# --------------------------------------------------------------------------------------------

def returns_from_the_start(rewards, gamma):
    """BUGGY: every step credited with the whole episode's return G_0."""
    T = rewards.shape[1]
    g0 = (rewards * gamma ** torch.arange(T, dtype=rewards.dtype)).sum(1, keepdim=True)
    return g0.expand_as(rewards)


def returns_to_go(rewards, gamma):
    """rlcore: G_t = r_t + γ G_{t+1}, the reward that came after the step."""
    return rewards_to_go(rewards, gamma=gamma)


def _reward_to_go_check(fn):
    rewards = torch.tensor([[1.0, 0.0, 2.0]], dtype=torch.float64)
    out = fn(rewards, 0.5)
    want = torch.tensor([[1.5, 1.0, 2.0]], dtype=torch.float64)  # 1 + .5*0 + .25*2, 0 + .5*2, 2
    return bool(torch.allclose(out, want)), out[0, 2].item()


# --------------------------------------------------------------------------------------------
# 9. the token mean of micro-batches averaged under gradient accumulation
# --------------------------------------------------------------------------------------------

def accumulated_mean_of_means(per_token, mask, micro_batches):
    """BUGGY: each micro-batch's token mean, averaged: short micro-batches' tokens weigh more."""
    parts = [aggregate(x, m, "token-mean") for x, m in zip(per_token.chunk(micro_batches), mask.chunk(micro_batches))]
    return sum(parts) / len(parts)


def accumulated_token_mean(per_token, mask, micro_batches):
    """rlcore: every micro-batch divided by the whole batch's tokens per micro-batch
    (``aggregate(num_tokens=)``, TRL's ``dapo``), summed and averaged over micro-batches."""
    n = mask.sum().item() / micro_batches
    parts = [aggregate(x, m, "token-mean", num_tokens=n) for x, m in zip(per_token.chunk(micro_batches),
                                                                           mask.chunk(micro_batches))]
    return sum(parts) / len(parts)


def _accumulation_check(fn):
    per_token = torch.arange(1.0, 13.0, dtype=torch.float64).view(4, 3)
    mask = torch.tensor([[1, 1, 1], [1, 1, 1], [1, 0, 0], [1, 0, 0]], dtype=torch.bool)  # 6 tokens, then 2
    full = aggregate(per_token, mask, "token-mean").item()
    out = fn(per_token, mask, 2).item()
    return abs(out - full) < 1e-12, out - full


# --------------------------------------------------------------------------------------------
# 10. a constant reward (or all-equal groups) trains nothing while the loss looks healthy
# --------------------------------------------------------------------------------------------

def silent_loop(marks_per_step):
    """BUGGY: a loop that logs the loss and nothing else; a constant reward gives loss 0, quietly."""
    return [0.0 for _ in marks_per_step], []


def guarded_loop(marks_per_step):
    """rlcore's loop's guard (:class:`rlcore.train.LearningSignalWarning`), on the same marks."""
    import warnings

    from .train import STALL_STEPS, _Guards

    guards = _Guards(STALL_STEPS)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for marks in marks_per_step:
            credit = marks - marks.mean()
            guards.observe({"reward": marks.mean().item()}, None, credit)
    return [0.0 for _ in marks_per_step], [str(w.message) for w in caught]


def _stall_check(fn):
    _, warned = fn([torch.full((8,), 0.5) for _ in range(12)])
    return len(warned) == 1, len(warned)


# --------------------------------------------------------------------------------------------
# 11. a reward read one token past the answer
# --------------------------------------------------------------------------------------------

def score_one_past_the_end(hidden, lengths):
    """BUGGY: the score read at index ``length`` (the first padding position), not ``length − 1``."""
    return hidden[torch.arange(hidden.shape[0]), lengths.clamp(max=hidden.shape[1] - 1)]


def score_at_the_last_token(hidden, lengths):
    """rlcore (``RewardModel``): the score read at the last real token (``<eos>``)."""
    return hidden[torch.arange(hidden.shape[0]), lengths - 1]


def _last_token_check(fn):
    hidden = torch.tensor([[1.0, 2.0, 3.0, 0.0, 0.0], [4.0, 5.0, 0.0, 0.0, 0.0]])  # padding is 0
    lengths = torch.tensor([3, 2])
    out = fn(hidden, lengths)
    return bool(torch.equal(out, torch.tensor([3.0, 5.0]))), out.tolist()


# --------------------------------------------------------------------------------------------
# 12. a time-out treated as a termination: no bootstrap
# --------------------------------------------------------------------------------------------

def gae_timeout_as_termination(rewards, values, gamma, lam):
    """BUGGY: an episode cut at the time limit bootstrapped with V = 0, as if it had ended."""
    from .advantages import gae

    return gae(rewards, values, gamma=gamma, lam=lam)[0]


def gae_timeout_bootstrapped(rewards, values, gamma, lam, last_value):
    """rlcore: ``gae(..., last_value=V(s_T))`` continues the return past the cut."""
    from .advantages import gae

    return gae(rewards, values, gamma=gamma, lam=lam, last_value=last_value)[0]


def _timeout_check(fn):
    # a chain where every state is worth 10: cut at T = 3, the advantages must be 0 (nothing surprising)
    rewards = torch.full((1, 3), 1.0, dtype=torch.float64)
    values = torch.full((1, 3), 10.0, dtype=torch.float64)
    gamma = 0.9  # V = 1 / (1 - 0.9) = 10
    try:
        out = fn(rewards, values, gamma, 1.0, torch.tensor([10.0], dtype=torch.float64))
    except TypeError:
        out = fn(rewards, values, gamma, 1.0)
    dev = out.abs().max().item()
    return dev < 1e-9, dev


PITFALLS = (
    Pitfall("sequence-level ratio where the method is token-level",
            "rasbt/reasoning-from-scratch#243; walkinglabs/hands-on-modern-rl#75",
            "one importance ratio per answer: a single token outside the clip range silences the whole answer",
            ppo_loss_sequence_ratio, ppo_loss_token_ratio, _check_token_ratio),
    Pitfall("k3 KL with the ratio reversed", "TRL and verl threads on the k3 KL estimator",
            "E_π[k3] is no longer KL(π‖π_ref): the penalty measures something else",
            k3_reversed, k3_right, _exact_kl_check),
    Pitfall("k3 KL from probabilities, not log-probabilities", "TRL and verl threads on the k3 KL estimator",
            "exp of a sequence log-prob underflows to 0: 0/0 is NaN",
            k3_from_probabilities, k3_right, _finite_check),
    Pitfall("group std over the wrong axis", "TRL and NeMo-RL threads on group advantages",
            "the k-th answers of different prompts are normalised together, not each prompt's answers",
            group_advantages_wrong_axis, group_advantages_right, _group_loop_check),
    Pitfall("all-equal groups divided by ~0", "TRL and NeMo-RL threads on zero-std groups",
            "a group whose answers all got the same mark gets NaN advantages",
            group_advantages_no_eps, group_advantages_right, _equal_group_check),
    Pitfall("truncated answers dropped from the numerator only", "huggingface/trl#6369 (fixed in PR #6439)",
            "the dropped tokens still count in the denominator: the loss shrinks with the share truncated",
            token_mean_masking_numerator_only, token_mean_masking_both, _masked_mean_check),
    Pitfall("log-probs not divided by the sampling temperature", "huggingface/trl PR #3029; NVIDIA-NeMo/RL PR #316",
            "the ratio is not 1 on-policy: the clip fires before the policy has moved",
            logprobs_ignoring_temperature, logprobs_at_temperature, _first_ratio_check,
            inject=trainer_ignoring_temperature),
    Pitfall("REINFORCE weighting every step by G_0", "huggingface/deep-rl-class PR #70 and #95",
            "every step is also credited with the rewards that came before it: unbiased, but noisier",
            returns_from_the_start, returns_to_go, _reward_to_go_check),
    Pitfall("token means of micro-batches averaged", "huggingface/trl#3178 and related threads",
            "tokens of short micro-batches weigh more: the loss depends on how the batch was cut",
            accumulated_mean_of_means, accumulated_token_mean, _accumulation_check),
    Pitfall("a constant reward trains nothing, silently", "huggingface/trl#2703, #3452, #3857",
            "every credit is 0 and the loss is 0: the run looks healthy and learns nothing",
            silent_loop, guarded_loop, _stall_check),
    Pitfall("the score read one token past the answer", "TRL's reward-model and PPO conventions",
            "the reward is read at a padding position: it depends on the padding, not the answer",
            score_one_past_the_end, score_at_the_last_token, _last_token_check),
    Pitfall("a time-out treated as the end", "Spinning Up's time-out threads",
            "the return is cut at the time limit: states near the cut look worse than they are",
            gae_timeout_as_termination, gae_timeout_bootstrapped, _timeout_check),
)
"""Every pitfall of the appendix, in its order."""
