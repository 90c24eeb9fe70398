"""Policy and value losses: PPO's clipped surrogate, the critic's regression, and DPO."""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F

from ._checks import (
    check_choice,
    check_positive,
    check_same_shape,
    check_trailing_mask,
    compute_dtype,
    flag_tensor,
    float_tensor,
)
from .masked import AGG_MODES, aggregate

__all__ = ["PPOLoss", "DPOLoss", "ppo_clip_loss", "value_loss", "dpo_loss", "DPO_LOSS_TYPES"]

DPO_LOSS_TYPES = ("sigmoid", "ipo", "hinge")
"""The ``loss_type`` names :func:`rlcore.dpo_loss` accepts (TRL's)."""


class PPOLoss(NamedTuple):
    """What :func:`ppo_clip_loss` returns."""

    loss: torch.Tensor
    """The loss to minimise (a differentiable scalar)."""
    clip_frac: torch.Tensor
    """The fraction of real tokens whose gradient the clip switched off (a detached scalar)."""
    approx_kl: torch.Tensor
    """The mean over real tokens of k3 = (ρ − 1) − log ρ, an estimate of KL(π_old ‖ π) (a detached scalar)."""


class DPOLoss(NamedTuple):
    """What :func:`dpo_loss` returns; each field is ``[B]``."""

    losses: torch.Tensor
    """Per-pair losses (differentiable); take ``.mean()`` to train."""
    chosen_rewards: torch.Tensor
    """Detached implicit rewards β (log π(y_w) − log π_ref(y_w))."""
    rejected_rewards: torch.Tensor
    """Detached implicit rewards β (log π(y_l) − log π_ref(y_l))."""


def _per_token_inputs(logp, mask, others: dict):
    logp = float_tensor(logp, "logp", ndim=2)
    for name, x in others.items():
        float_tensor(x, name, ndim=2)
        check_same_shape(x, name, logp, "logp")
    m = flag_tensor(mask, "mask", logp.shape)
    check_trailing_mask(m, "mask")
    return logp, m


def ppo_clip_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask,
    *,
    clip_eps: float = 0.2,
    clip_eps_high: Optional[float] = None,
    agg: str = "token-mean",
    max_len: Optional[int] = None,
    num_tokens: Optional[float] = None,
) -> PPOLoss:
    r"""PPO's clipped surrogate policy loss.

    .. math::

        \rho_t = e^{\log\pi(a_t) - \log\pi_\text{old}(a_t)},\qquad
        \ell_t = -\min\big(\rho_t A_t,\ \operatorname{clip}(\rho_t, 1-\epsilon, 1+\epsilon_\text{high}) A_t\big),

    aggregated over real tokens with ``agg``. At ``ρ = 1`` the loss equals
    :math:`-A` on average, yet its gradient is the policy gradient
    :math:`-\sum_t A_t \nabla\log\pi(a_t)`: the value of the loss says little, its gradient
    says everything.

    Args:
      logp: ``[B, T]`` log π(a_t) under the policy being trained (carries the gradient).
      old_logp: ``[B, T]`` log π_old(a_t) under the policy that sampled the data (pass detached).
      advantages: ``[B, T]`` per-token advantages, or ``[B]`` one per sequence (broadcast
        over its tokens, as GRPO does).
      mask: ``[B, T]`` bool, True on real tokens (trailing padding).
      clip_eps: ε > 0, the lower clip range (and the upper one unless ``clip_eps_high``).
      clip_eps_high: ε_high > 0, DAPO's "clip-higher" upper range; ``None`` means ε.
      agg: aggregation mode, see :func:`rlcore.aggregate`.
      max_len: the generation budget, ``"seq-mean-token-sum-norm"``'s constant (see :func:`rlcore.aggregate`).
      num_tokens: ``"token-mean"``'s divisor (see :func:`rlcore.aggregate`; TRL's ``dapo``).

    Returns:
      :class:`PPOLoss` ``(loss, clip_frac, approx_kl)``.

    Reference:
      Schulman, Wolski, Dhariwal, Radford, Klimov, "Proximal Policy Optimization Algorithms",
      2017, https://arxiv.org/abs/1707.06347, eq. 7; clip-higher from Yu et al., "DAPO", 2025.
    """
    clip_eps = check_positive(clip_eps, "clip_eps")
    clip_eps_high = clip_eps if clip_eps_high is None else check_positive(clip_eps_high, "clip_eps_high")
    check_choice(agg, "agg", AGG_MODES)
    logp, m = _per_token_inputs(logp, mask, {"old_logp": old_logp})
    advantages = float_tensor(advantages, "advantages", ndim=(1, 2))
    if advantages.dim() == 1:
        if advantages.shape[0] != logp.shape[0]:
            raise ValueError(
                f"advantages of shape [B] must have B={logp.shape[0]} to match logp "
                f"{tuple(logp.shape)}, got {tuple(advantages.shape)}"
            )
        advantages = advantages[:, None]  # (B, 1) -> broadcast over tokens
    else:
        check_same_shape(advantages, "advantages", logp, "logp")
    dtype = compute_dtype(logp, old_logp, advantages)
    log_ratio = logp.to(dtype) - old_logp.to(dtype)  # (B, T)
    ratio = torch.exp(log_ratio)
    adv = advantages.to(dtype)
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps_high) * adv
    per_token = -torch.minimum(unclipped, clipped)  # (B, T)
    loss = aggregate(per_token, m, agg, max_len=max_len, num_tokens=num_tokens)
    with torch.no_grad():
        was_clipped = (clipped < unclipped).to(dtype)  # the min picked the flat, clipped branch
        clip_frac = aggregate(was_clipped, m, "token-mean")
        approx_kl = aggregate(torch.expm1(log_ratio) - log_ratio, m, "token-mean")
    return PPOLoss(loss, clip_frac, approx_kl)


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask,
    *,
    clip_eps: Optional[float] = None,
    agg: str = "token-mean",
) -> torch.Tensor:
    r"""The critic's squared error, optionally clipped around the old values.

    .. math::

        \ell_t &= \tfrac12 (V_t - R_t)^2 \quad\text{or, clipped,} \\
        \ell_t &= \tfrac12 \max\big((V_t - R_t)^2,\ (V^\text{clip}_t - R_t)^2\big),
        \quad\text{where} \\
        V^\text{clip}_t &= V^\text{old}_t
        + \operatorname{clip}(V_t - V^\text{old}_t, -\epsilon, \epsilon).

    Args:
      values: ``[B, T]`` the critic's current predictions (carry the gradient).
      old_values: ``[B, T]`` the predictions at rollout time (used only when clipping).
      returns: ``[B, T]`` regression targets (e.g. GAE's returns).
      mask: ``[B, T]`` bool, True on real steps.
      clip_eps: ε > 0 to clip, ``None`` (default) for the plain squared error.
      agg: aggregation mode, see :func:`rlcore.aggregate`.

    Returns:
      A scalar loss.

    Reference:
      Schulman et al., "Proximal Policy Optimization Algorithms", 2017 (eq. 9); value
      clipping as in OpenAI baselines' PPO2, discussed by Engstrom et al., "Implementation
      Matters in Deep RL", ICLR 2020.
    """
    if clip_eps is not None:
        clip_eps = check_positive(clip_eps, "clip_eps")
    check_choice(agg, "agg", AGG_MODES)
    values = float_tensor(values, "values", ndim=2)
    _, m = _per_token_inputs(values, mask, {"old_values": old_values, "returns": returns})
    dtype = compute_dtype(values, old_values, returns)
    v, v_old, ret = values.to(dtype), old_values.to(dtype), returns.to(dtype)
    per_token = (v - ret) ** 2
    if clip_eps is not None:
        v_clipped = v_old + torch.clamp(v - v_old, -clip_eps, clip_eps)
        per_token = torch.maximum(per_token, (v_clipped - ret) ** 2)
    return aggregate(0.5 * per_token, m, agg)


def dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    *,
    beta: float = 0.1,
    loss_type: str = "sigmoid",
    label_smoothing: float = 0.0,
    chosen_lengths: Optional[torch.Tensor] = None,
    rejected_lengths: Optional[torch.Tensor] = None,
) -> DPOLoss:
    r"""Direct Preference Optimization and two of its variants.

    With the log-ratio margin
    :math:`h = (\log\pi(y_w) - \log\pi(y_l)) - (\log\pi_\text{ref}(y_w) - \log\pi_\text{ref}(y_l))`:

    * ``"sigmoid"`` (DPO): :math:`-(1-s)\log\sigma(\beta h) - s\log\sigma(-\beta h)`, ``s`` the
      label smoothing (conservative DPO);
    * ``"ipo"``: :math:`(\bar h - \tfrac{1}{2\beta})^2` with the length-averaged margin
      :math:`\bar h = \frac{\log\pi(y_w) - \log\pi_\text{ref}(y_w)}{|y_w|}
      - \frac{\log\pi(y_l) - \log\pi_\text{ref}(y_l)}{|y_l|}`, as TRL computes it (its
      authors confirmed the IPO paper's results used the per-token average); it needs
      ``chosen_lengths`` and ``rejected_lengths``. Lengths of ones give the paper's equation 17 on
      summed log-probs, :math:`(h - \tfrac{1}{2\beta})^2`;
    * ``"hinge"`` (SLiC): :math:`\max(0, 1 - \beta h)`.

    ``label_smoothing`` is conservative DPO's (TRL ≤ 0.28): TRL 1.x ignores ``label_smoothing`` for
    ``"sigmoid"`` (it reads it only in its robust and EXO losses), so with ``s = 0`` the two agree
    and with ``s > 0`` rlcore computes cDPO (``tests/test_trl_parity.py`` pins both).

    The implicit reward of an answer is :math:`\beta(\log\pi(y) - \log\pi_\text{ref}(y))`.

    Args:
      policy_chosen_logps: ``[B]`` sequence log-prob of the preferred answer under π.
      policy_rejected_logps: ``[B]`` the same for the dispreferred answer.
      ref_chosen_logps: ``[B]`` the preferred answer under the frozen reference.
      ref_rejected_logps: ``[B]`` the dispreferred answer under the reference.
      beta: β > 0, the strength of the KL anchor to the reference.
      loss_type: ``"sigmoid"``, ``"ipo"`` or ``"hinge"`` (TRL's names).
      label_smoothing: s in [0, 0.5), the assumed probability that a label is flipped.
      chosen_lengths: ``[B]`` the number of tokens of each preferred answer (> 0); needed by
        ``"ipo"``, ignored by the others.
      rejected_lengths: ``[B]`` the same for the dispreferred answers.

    Returns:
      :class:`DPOLoss` ``(losses, chosen_rewards, rejected_rewards)``.

    Reference:
      Rafailov et al., "Direct Preference Optimization: Your Language Model is Secretly a
      Reward Model", NeurIPS 2023, https://arxiv.org/abs/2305.18290, eq. 7;
      Azar et al., "A General Theoretical Paradigm to Understand Learning from Human
      Preferences", 2023, https://arxiv.org/abs/2310.12036 (IPO, eq. 17); TRL's ``DPOTrainer``
      (``loss_type="ipo"``, length-averaged);
      Zhao et al., "SLiC-HF", 2023 (hinge).
    """
    beta = check_positive(beta, "beta")
    check_choice(loss_type, "loss_type", DPO_LOSS_TYPES)
    if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, (int, float)) or not (
        0.0 <= float(label_smoothing) < 0.5
    ):
        raise ValueError(f"label_smoothing must lie in [0, 0.5), got {label_smoothing!r}")
    names = ("policy_chosen_logps", "policy_rejected_logps", "ref_chosen_logps", "ref_rejected_logps")
    tensors = (policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps)
    for name, x in zip(names, tensors):
        float_tensor(x, name, ndim=1)
        check_same_shape(x, name, policy_chosen_logps, "policy_chosen_logps")
    dtype = compute_dtype(*tensors)
    pc, pr, rc, rr = (x.to(dtype) for x in tensors)
    h = (pc - pr) - (rc - rr)  # (B,)
    if loss_type == "sigmoid":
        s = float(label_smoothing)
        losses = -(1.0 - s) * F.logsigmoid(beta * h) - s * F.logsigmoid(-beta * h)
    elif loss_type == "ipo":
        if chosen_lengths is None or rejected_lengths is None:
            raise ValueError("loss_type='ipo' needs chosen_lengths and rejected_lengths: TRL's IPO averages each "
                             "answer's log-ratio over its tokens (pass ones for the paper's summed form)")
        lengths = []
        for name, n in (("chosen_lengths", chosen_lengths), ("rejected_lengths", rejected_lengths)):
            if not isinstance(n, torch.Tensor) or n.dtype == torch.bool or n.is_complex():
                raise ValueError(f"{name} must be a real torch.Tensor of token counts, got {n!r}")
            n = float_tensor(n.to(dtype), name, ndim=1)
            check_same_shape(n, name, policy_chosen_logps, "policy_chosen_logps")
            if not bool((n > 0).all()):
                raise ValueError(f"{name} must be > 0, got {n.tolist()}")
            lengths.append(n)
        h_avg = (pc - rc) / lengths[0] - (pr - rr) / lengths[1]  # (B,)
        losses = (h_avg - 1.0 / (2.0 * beta)) ** 2
    else:
        losses = torch.relu(1.0 - beta * h)
    chosen_rewards = (beta * (pc - rc)).detach()
    rejected_rewards = (beta * (pr - rr)).detach()
    return DPOLoss(losses, chosen_rewards, rejected_rewards)
