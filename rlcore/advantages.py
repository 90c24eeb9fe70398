"""Advantages: how much better an action was than expected.

Two families live here. :func:`gae` estimates per-step advantages with a critic (PPO).
:func:`group_advantages` and :func:`rloo_advantages` replace the critic by the other answers
sampled for the same prompt (GRPO, Dr. GRPO, RLOO): one number per answer, inherited by
every token of it.
"""

from __future__ import annotations

import torch

from ._checks import (
    check_choice,
    check_group_size,
    check_positive,
    check_unit_interval,
    compute_dtype,
    float_tensor,
)
from .returns import _check_finite_later, _inputs
from .scan import _break_positions, _discounted_scan, _find_breaks, _scan_with_breaks

__all__ = ["gae", "group_advantages", "rloo_advantages"]


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    *,
    gamma: float,
    lam: float,
    dones=None,
    mask=None,
    last_value=None,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Generalized Advantage Estimation.

    .. math::

        \delta_t = r_t + \gamma V(s_{t+1}) - V(s_t), \qquad
        \hat A_t = \delta_t + \gamma\lambda\, \hat A_{t+1}
                 = \sum_{l \ge 0} (\gamma\lambda)^l \delta_{t+l},

    with the sum stopped at the end of each episode. λ = 0 gives the TD residual
    :math:`\delta_t`; λ = 1 gives :math:`G_t - V(s_t)` (reward-to-go minus the baseline).
    Computed by a log-depth blocked scan (``rlcore.scan``), not a loop over time.

    Args:
      rewards: ``[B, T]`` rewards ``r_t``.
      values: ``[B, T]`` critic values ``V(s_t)``.
      gamma: discount factor γ in [0, 1].
      lam: GAE's λ in [0, 1] (the paper's λ; TRL and CleanRL call it ``lam`` or ``gae_lambda``).
      dones: optional ``[B, T]`` bool, True where the episode ends after step t.
      mask: optional ``[B, T]`` bool, True on real steps (trailing padding).
      last_value: optional ``[B]`` V(s_T) for rows cut by a time limit (truncation).

    Returns:
      ``(advantages, returns)``, both ``[B, T]`` and 0 on padding, with
      ``returns = advantages + values`` (the λ-return, the critic's regression target).

    Reference:
      Schulman, Moritz, Levine, Jordan, Abbeel, "High-Dimensional Continuous Control Using
      Generalized Advantage Estimation", ICLR 2016, https://arxiv.org/abs/1506.02438, eq. 16.
    """
    gamma = check_unit_interval(gamma, "gamma")
    lam = check_unit_interval(lam, "lam")
    x = _inputs(rewards, values, dones=dones, mask=mask, last_value=last_value, finite_later=True)
    r, v, real = x.rewards, x.values, x.real
    T = r.shape[1]
    # δ_t = (r_t − V_t) + γ V_{t+1}, every term 0 on padding (a real t+1 implies a real t);
    # at T−1 the bootstrap is γ last_value on real rows.
    deltas = r - v  # (B, T)
    if real is not None:
        deltas.mul_(real)
    if T > 1:
        if real is None:
            deltas[:, :-1].add_(v[:, 1:], alpha=gamma)
        else:
            deltas[:, :-1].addcmul_(real[:, 1:], v[:, 1:], value=gamma)
    if T and x.last_value is not None:
        if real is None:
            deltas[:, -1].add_(x.last_value, alpha=gamma)
        else:
            deltas[:, -1].addcmul_(real[:, -1], x.last_value, value=gamma)
    breaks = None if x.dones is None or not T else _find_breaks(x.dones)
    _check_finite_later(deltas, rewards, values)  # a nan or inf in r or V reaches δ
    # A_t = δ_t + γλ (1 − done_t) A_{t+1}. Padded steps have δ = 0, so they add exactly 0 to
    # the last real step and come out 0 themselves: only dones need to cut the scan.
    # A done step does not bootstrap: δ_t = r_t − V_t there.
    K = 0 if breaks is None else breaks.flags.shape[1]  # the scan's chunk length
    if breaks is not None and T % K == 0 and not deltas.requires_grad:
        # every done lies in a chunk the scan solves step by step: patch only those chunks
        chunks = breaks.chunks  # (M,)
        rows = deltas.view(-1, K).index_select(0, chunks)  # (M, K)
        no_bootstrap = r.view(-1, K).index_select(0, chunks) - v.view(-1, K).index_select(0, chunks)
        if real is not None:
            no_bootstrap.mul_(real.view(-1, K).index_select(0, chunks))
        rows = torch.where(breaks.flags, no_bootstrap, rows)
        advantages = _discounted_scan(deltas, gamma * lam, breaks, rows)
    else:
        if breaks is not None:
            at = _break_positions(breaks, T)  # (m,) flat positions b·T + t of the dones
            no_bootstrap = r.take(at) - v.take(at)
            deltas.put_(at, no_bootstrap if real is None else no_bootstrap * real.take(at))
        advantages = _scan_with_breaks(deltas, gamma * lam, breaks)
    if real is None:
        return advantages, advantages + v
    if torch.is_grad_enabled() and (advantages.requires_grad or v.requires_grad):
        return advantages, torch.addcmul(advantages, v, real)
    return advantages, torch.addcmul(advantages, v, real, out=deltas)  # reuse δ's memory


def _group_view(rewards, group_size, name="rewards") -> tuple[torch.Tensor, int]:
    rewards = float_tensor(rewards, name, ndim=1)
    check_group_size(group_size, rewards.shape[0])
    dtype = compute_dtype(rewards)
    return rewards.to(dtype).view(-1, group_size), group_size  # (P, G)


def group_advantages(
    rewards: torch.Tensor, group_size: int, *, scale: str = "std", eps: float = 1e-6
) -> torch.Tensor:
    r"""Group-relative advantages (GRPO): each answer against the others for its prompt.

    .. math::

        A_i &= \frac{r_i - \operatorname{mean}_g(r)}{\operatorname{std}_g(r) + \epsilon}
        \quad (\texttt{"std"}), \\
        A_i &= r_i - \operatorname{mean}_g(r) \quad (\texttt{"none"}), \\
        A_i &= \frac{r_i - \operatorname{mean}_g(r)}{\operatorname{std}(r) + \epsilon}
        \quad (\texttt{"batch"}),

    where ``g`` is the group of ``group_size`` answers to the same prompt and the standard
    deviations use Bessel's correction. A group whose answers all score the same gets 0
    (never NaN): there is nothing to prefer.

    Args:
      rewards: ``[N]`` one scalar reward per answer, ``N = prompts × group_size``, each
        group contiguous.
      group_size: answers per prompt ``G`` (≥ 2, divides N).
      scale: ``"std"`` (GRPO), ``"none"`` (Dr. GRPO) or ``"batch"`` (scale by the whole
        batch's std, as TRL's ``scale_rewards="batch"``).
      eps: added to the standard deviation, > 0.

    Returns:
      ``[N]`` advantages.

    Reference:
      Shao et al., "DeepSeekMath: Pushing the Limits of Mathematical Reasoning in Open
      Language Models", 2024, https://arxiv.org/abs/2402.03300 (GRPO, eq. 3 and §4.1.2);
      Liu et al., "Understanding R1-Zero-Like Training: A Critical Perspective", 2025,
      https://arxiv.org/abs/2503.20783 (Dr. GRPO drops the std).
    """
    check_choice(scale, "scale", ("std", "none", "batch"))
    eps = check_positive(eps, "eps")
    grouped, _ = _group_view(rewards, group_size)  # (P, G)
    centred = grouped - grouped.mean(dim=1, keepdim=True)  # (P, G)
    # A group whose answers all scored the same carries no signal: exactly 0 (the mean's
    # rounding would otherwise leave ~1e-17, which the std scaling could blow up).
    constant = (grouped == grouped[:, :1]).all(dim=1, keepdim=True)  # (P, 1)
    centred = centred.masked_fill(constant, 0.0)
    if scale == "std":
        centred = centred / (grouped.std(dim=1, keepdim=True) + eps)
    elif scale == "batch":
        batch_std = grouped.flatten().std() if grouped.numel() > 1 else grouped.new_zeros(())
        centred = centred / (batch_std + eps)
    return centred.flatten()


def rloo_advantages(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    r"""REINFORCE leave-one-out advantages: each answer against the mean of the others.

    .. math::

        A_i = r_i - \frac{1}{G-1}\sum_{j \ne i} r_j = \frac{G}{G-1}\,(r_i - \bar r_g).

    The baseline excludes the answer itself, so it is independent of it and the estimate
    stays unbiased.

    Args:
      rewards: ``[N]`` one reward per answer, groups of ``group_size`` contiguous.
      group_size: answers per prompt ``G`` (≥ 2, divides N).

    Returns:
      ``[N]`` advantages.

    Reference:
      Ahmadian et al., "Back to Basics: Revisiting REINFORCE Style Optimization for Learning
      from Human Feedback in LLMs", ACL 2024, https://arxiv.org/abs/2402.14740;
      Kool, van Hoof, Welling, "Buy 4 REINFORCE Samples, Get a Baseline for Free!", 2019.
    """
    grouped, G = _group_view(rewards, group_size)  # (P, G)
    others_mean = (grouped.sum(dim=1, keepdim=True) - grouped) / (G - 1)  # (P, G)
    return (grouped - others_mean).flatten()
