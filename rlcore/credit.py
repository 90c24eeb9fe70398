r"""Credit: how each method turns one outcome score into a number for every token.

Every method in the book takes gradient steps on a loss of one shape,

.. math::

    L(\theta) = -\sum_{b,t} c_{b,t}\,\log\pi_\theta(y_{b,t} \mid x_b, y_{b,<t})

(aggregated over tokens by :func:`rlcore.aggregate`, and with PPO's importance ratio and clip
where the update reuses a batch). The methods differ in one thing, the **credit** ``c[b, t]``
that token ``t`` of answer ``b`` receives. This module computes it, one function per method,
each returning a ``[B, T]`` tensor that is 0 on padding:

* :func:`sign_credit` (REINFORCE, chapter 1): :math:`+1` if the answer is right, :math:`-1` otherwise;
* :func:`raw_credit` (REINFORCE without a baseline): the mark :math:`r_b`;
* :func:`batch_credit` (REINFORCE with a baseline): :math:`r_b - \bar r`, against the batch's mean mark;
* :func:`rloo_credit` (RLOO): :math:`r_b` minus the mean of the other answers to its problem;
* :func:`group_credit` (GRPO, Dr. GRPO): :math:`(r_b - \text{mean}_g) / (\text{std}_g + \epsilon)`;
* :func:`critic_credit` (PPO): :math:`\hat A_{b,t}`, GAE over tokens from a learned critic;
* :func:`dpo_credit` (DPO): :math:`\pm\beta\,\sigma(-\beta h)` on the two answers of a pair;
* :func:`mc_values` (VinePPO): :math:`V(s_{t+1}) - V(s_t)` from sampled continuations, the ground truth;
* :func:`oracle_credit`: the step verifier's marks, where a task can check every step.

:func:`credit_correlation`, :func:`blame_localisation` and :func:`split_half_reliability` score a
credit against the Monte Carlo truth and the step verifier.

Only the critic's credit changes along an answer; every other method hands all tokens of an
answer the same number (outcome-only credit). :func:`dpo_token_rewards` gives DPO's implicit
per-token reward :math:`\beta(\log\pi - \log\pi_\text{ref})`, whose sum over an answer is the
implicit reward DPO's loss compares; :func:`dpo_credit` is the weight the loss's gradient puts on
each token.

Marks (``rewards``) are flat ``[N]`` tensors, group-contiguous where a method compares the
answers to one problem (``N = prompts × group_size``), as in :func:`rlcore.group_advantages`.
The result is on ``mask``'s device.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional, Sequence

import torch

from ._checks import check_choice, check_positive, check_same_shape, check_trailing_mask, flag_tensor, float_tensor
from .advantages import gae, group_advantages, rloo_advantages
from .kl import KL_KINDS, kl_estimate
from .losses import DPO_LOSS_TYPES, dpo_loss
from .masked import whiten
from .tasks import is_right

__all__ = [
    "CREDITS",
    "OUTCOME_CREDITS",
    "SCALE_REWARDS",
    "per_token",
    "sign_credit",
    "raw_credit",
    "batch_credit",
    "rloo_credit",
    "group_credit",
    "outcome_credit",
    "token_rewards",
    "critic_credit",
    "explained_variance",
    "dpo_token_rewards",
    "dpo_credit",
    "MCValues",
    "mc_values",
    "oracle_credit",
    "credit_correlation",
    "blame_localisation",
    "split_half_reliability",
]

#: TRL's ``scale_rewards`` names and the :func:`rlcore.group_advantages` scale each one means.
SCALE_REWARDS = {"group": "std", "batch": "batch", "none": "none"}


def _marks_and_mask(rewards, mask):
    rewards = float_tensor(rewards, "rewards", ndim=1)
    if not isinstance(mask, torch.Tensor) or mask.dim() != 2:
        raise ValueError(f"mask must be a [B, T] tensor, got {getattr(mask, 'shape', type(mask).__name__)}")
    m = flag_tensor(mask, "mask", (rewards.shape[0], mask.shape[1]))
    check_trailing_mask(m, "mask")
    return rewards.to(m.device), m


def per_token(values: torch.Tensor, mask) -> torch.Tensor:
    """Broadcast one number per answer (``[B]``) to every real token of it: ``[B, T]``, 0 on padding.

    Args:
      values: ``[B]`` one credit per answer.
      mask: ``[B, T]`` bool, True on real tokens (trailing padding).
    """
    values, m = _marks_and_mask(values, mask)
    return values[:, None] * m.to(values.dtype)  # (B, T)


def sign_credit(rewards: torch.Tensor, mask) -> torch.Tensor:
    r"""The story's credit (chapter 1): :math:`c_{b,t} = +1` if answer ``b`` is right, :math:`-1`
    otherwise (a wrong number and an empty blank alike), on every token.

    It is the mark minus a constant baseline, :math:`2(r - \tfrac12)` for marks in {0, 1}.

    Args:
      rewards: ``[B]`` the verifier's marks (1 right; 0 or the no-answer penalty otherwise).
      mask: ``[B, T]`` bool, True on real tokens.

    Returns:
      ``[B, T]`` float32 credit, 0 on padding.

    Reference: Williams, "Simple statistical gradient-following algorithms for connectionist
    reinforcement learning", Machine Learning 8, 1992 (REINFORCE).
    """
    rewards, m = _marks_and_mask(rewards, mask)
    return per_token(torch.where(is_right(rewards), 1.0, -1.0).to(rewards.dtype), m)


def raw_credit(rewards: torch.Tensor, mask) -> torch.Tensor:
    r""":math:`c_{b,t} = r_b`: the mark itself on every token (REINFORCE without a baseline).

    Args and returns as :func:`sign_credit`. Reference: Williams 1992.
    """
    rewards, m = _marks_and_mask(rewards, mask)
    return per_token(rewards, m)


def batch_credit(rewards: torch.Tensor, mask) -> torch.Tensor:
    r""":math:`c_{b,t} = r_b - \frac1B\sum_{b'} r_{b'}`: the mark against the batch's mean mark
    (a constant baseline, chapter 4).

    Args and returns as :func:`sign_credit`. Reference: Williams 1992, section 4 (baselines).
    """
    rewards, m = _marks_and_mask(rewards, mask)
    return per_token(rewards - rewards.mean(), m)


def rloo_credit(rewards: torch.Tensor, mask, group_size: int) -> torch.Tensor:
    r""":math:`c_{b,t} = r_b - \frac{1}{G-1}\sum_{j \ne b} r_j` over the other answers to the
    same problem (REINFORCE leave-one-out, :func:`rlcore.rloo_advantages`).

    Args:
      rewards: ``[N]`` marks, ``group_size`` answers per problem, each group contiguous.
      mask: ``[N, T]`` bool.
      group_size: answers per problem, ``G ≥ 2``, dividing ``N``.

    Returns:
      ``[N, T]`` credit, 0 on padding.

    Reference: Ahmadian et al., "Back to Basics: Revisiting REINFORCE Style Optimization for
    Learning from Human Feedback in LLMs", 2024, https://arxiv.org/abs/2402.14740.
    """
    rewards, m = _marks_and_mask(rewards, mask)
    return per_token(rloo_advantages(rewards, group_size), m)


def group_credit(rewards: torch.Tensor, mask, group_size: int, *, scale_rewards: str = "group") -> torch.Tensor:
    r"""GRPO's credit: :math:`c_{b,t} = (r_b - \text{mean}_g) / (\text{std} + \epsilon)` on every
    token, the mark against its group of siblings (:func:`rlcore.group_advantages`).

    ``scale_rewards`` is TRL's: ``"group"`` divides by the group's std (GRPO), ``"batch"`` by the
    std over the whole batch, ``"none"`` not at all (Dr. GRPO). GRPO's further division by each
    answer's length is the update's aggregation (``seq-mean-token-mean``), not part of this number.

    Args:
      rewards: ``[N]`` marks, ``group_size`` answers per problem, each group contiguous.
      mask: ``[N, T]`` bool.
      group_size: answers per problem, ``G ≥ 2``, dividing ``N``.
      scale_rewards: ``"group"``, ``"batch"`` or ``"none"``.

    Returns:
      ``[N, T]`` credit, 0 on padding.

    Reference: Shao et al., "DeepSeekMath", 2024, https://arxiv.org/abs/2402.03300 (GRPO);
    Liu et al., "Understanding R1-Zero-Like Training", 2025, https://arxiv.org/abs/2503.20783.
    """
    check_choice(scale_rewards, "scale_rewards", SCALE_REWARDS)
    rewards, m = _marks_and_mask(rewards, mask)
    return per_token(group_advantages(rewards, group_size, scale=SCALE_REWARDS[scale_rewards]), m)


#: The credits that need only the marks, by the name a training config uses.
OUTCOME_CREDITS = ("sign", "raw", "batch", "rloo", "group")
#: Every credit a training config can name, the outcome ones, the critic's, DPO's, the Monte Carlo
#: advantage (``"mc"``, :func:`mc_values`) and the step verifier's (``"oracle"``, :func:`oracle_credit`).
CREDITS = OUTCOME_CREDITS + ("gae", "dpo", "mc", "oracle")


def outcome_credit(name: str, rewards: torch.Tensor, mask, *, group_size: int = 1,
                   scale_rewards: str = "group") -> torch.Tensor:
    """The outcome credit called ``name`` (one of :data:`OUTCOME_CREDITS`): the switch a training
    loop uses. ``group_size`` is used by ``"rloo"`` and ``"group"``, ``scale_rewards`` by ``"group"``."""
    check_choice(name, "credit", OUTCOME_CREDITS)
    if name == "sign":
        return sign_credit(rewards, mask)
    if name == "raw":
        return raw_credit(rewards, mask)
    if name == "batch":
        return batch_credit(rewards, mask)
    if name == "rloo":
        return rloo_credit(rewards, mask, group_size)
    return group_credit(rewards, mask, group_size, scale_rewards=scale_rewards)


def token_rewards(marks: torch.Tensor, mask, kl: Optional[torch.Tensor] = None,
                  beta: float = 0.0) -> torch.Tensor:
    r"""Per-token rewards of the token-level MDP (chapter 6): the mark on each answer's last real
    token, minus :math:`\beta\,\mathrm{kl}_t` on every real token when ``kl`` is given
    (InstructGPT's shaped reward).

    .. math::

        r_{b,t} = r_b\,[t = L_b - 1] - \beta\,\mathrm{kl}_{b,t}

    Args:
      marks: ``[B]`` the verifier's marks.
      mask: ``[B, T]`` bool, True on real tokens.
      kl: ``[B, T]`` a per-token KL estimate (e.g. :func:`rlcore.kl_estimate`), or ``None``.
      beta: the KL penalty's weight, ≥ 0.

    Returns:
      ``[B, T]`` float32 on ``mask``'s device, 0 on padding.
    """
    marks, m = _marks_and_mask(marks, mask)
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    B, T = m.shape
    rewards = torch.zeros(B, T, dtype=torch.float32, device=m.device)
    last = m.sum(1) - 1  # (B,) index of the last real token
    rewards[torch.arange(B, device=m.device), last.clamp(min=0)] = marks.float()
    if kl is not None and beta > 0:
        kl = float_tensor(kl, "kl", ndim=2)
        check_same_shape(kl, "kl", m, "mask")
        rewards = rewards - beta * kl.float()
    return rewards * m


def critic_credit(marks: torch.Tensor, values: torch.Tensor, mask, *, gamma: float = 1.0, lam: float = 0.95,
                  logp: Optional[torch.Tensor] = None, ref_logp: Optional[torch.Tensor] = None,
                  beta: float = 0.0, kl_kind: str = "k1",
                  whiten_advantages: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    r"""PPO's credit: GAE over the tokens of each answer, from a critic's values of every prefix.

    .. math::

        \delta_t = r_t + \gamma V(s_{t+1}) - V(s_t),\qquad
        \hat A_t = \delta_t + \gamma\lambda\,\hat A_{t+1},

    with the per-token rewards of :func:`token_rewards` (the mark on the last token, and, when
    ``logp`` and ``ref_logp`` are given and ``beta > 0``, :math:`-\beta` times the ``kl_kind``
    estimate of KL(π ‖ π_ref) on every token). Every answer ends with its grade, so nothing is
    bootstrapped. The advantages are then whitened over the batch's real tokens (``whiten_advantages``).
    This is the only credit in the book that changes along an answer.

    Args:
      marks: ``[B]`` the verifier's marks.
      values: ``[B, T]`` the critic's ``V(s_t)`` before each response token.
      mask: ``[B, T]`` bool, True on real tokens.
      gamma, lam: GAE's discount and λ, in [0, 1].
      logp, ref_logp: ``[B, T]`` log-probs of the sampled tokens under the sampling policy and the
        reference (both, or neither).
      beta: the KL penalty's weight in the reward (≥ 0).
      kl_kind: ``"k1"``, ``"k2"`` or ``"k3"`` (:func:`rlcore.kl_estimate`).
      whiten_advantages: normalise the advantages to mean 0, variance 1 over real tokens.

    Returns:
      ``(advantages, returns)``, both ``[B, T]`` and 0 on padding: the credit, and the critic's
      regression target ``returns = A + V`` (before whitening).

    Reference: Schulman et al., "High-Dimensional Continuous Control Using Generalized Advantage
    Estimation", 2015, https://arxiv.org/abs/1506.02438; Ouyang et al., "Training language models
    to follow instructions with human feedback", 2022, https://arxiv.org/abs/2203.02155 (per-token KL).
    """
    marks, m = _marks_and_mask(marks, mask)
    values = float_tensor(values, "values", ndim=2)
    check_same_shape(values, "values", m, "mask")
    check_choice(kl_kind, "kl_kind", KL_KINDS)
    if (logp is None) != (ref_logp is None):
        raise ValueError("logp and ref_logp must be given together (the KL penalty needs both)")
    kl = None
    if logp is not None:
        kl = kl_estimate(logp, ref_logp, kind=kl_kind) * m
    rewards = token_rewards(marks, m, kl, beta)
    advantages, returns = gae(rewards, values, gamma=gamma, lam=lam, mask=m)
    if whiten_advantages:
        advantages = whiten(advantages, m)
    return advantages, returns


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask) -> float:
    r"""How much of the returns' variance the critic explains, over real tokens:
    :math:`1 - \mathrm{Var}[R - V] / \mathrm{Var}[R]` (1: a perfect critic; 0: no better than a
    constant; NaN when the returns do not vary). ``values``, ``returns`` and ``mask`` share one
    shape, ``[B, T]`` or ``[N]``."""
    values = float_tensor(values, "values", ndim=(1, 2))
    returns = float_tensor(returns, "returns", ndim=(1, 2))
    check_same_shape(returns, "returns", values, "values")
    m = flag_tensor(mask, "mask", values.shape)
    v, r = values[m].double(), returns[m].double()
    var = r.var()
    return float("nan") if var == 0 else float(1 - (r - v).var() / var)


def dpo_token_rewards(logp: torch.Tensor, ref_logp: torch.Tensor, mask, *, beta: float = 0.1) -> torch.Tensor:
    r"""DPO's implicit per-token reward, :math:`\beta\,(\log\pi(y_t) - \log\pi_\text{ref}(y_t))`.

    Summed over an answer it is the implicit reward
    :math:`\beta \log \frac{\pi(y \mid x)}{\pi_\text{ref}(y \mid x)}` that DPO's loss compares
    between the two answers of a pair (:func:`rlcore.dpo_loss`'s ``chosen_rewards``).

    Args:
      logp, ref_logp: ``[B, T]`` per-token log-probs under the policy and the reference.
      mask: ``[B, T]`` bool, True on real tokens.
      beta: DPO's β > 0.

    Returns:
      ``[B, T]``, 0 on padding.

    Reference: Rafailov et al., "Direct Preference Optimization: Your Language Model is Secretly
    a Reward Model", 2023, https://arxiv.org/abs/2305.18290, section 5; Rafailov et al., "From r
    to Q*: Your Language Model is Secretly a Q-Function", 2024, https://arxiv.org/abs/2404.12358.
    """
    beta = check_positive(beta, "beta")
    logp = float_tensor(logp, "logp", ndim=2)
    ref_logp = float_tensor(ref_logp, "ref_logp", ndim=2)
    check_same_shape(ref_logp, "ref_logp", logp, "logp")
    m = flag_tensor(mask, "mask", logp.shape)
    return beta * torch.where(m, logp - ref_logp, torch.zeros((), dtype=logp.dtype, device=logp.device))


def _pair_mask(mask, name: str, rows: int) -> torch.Tensor:
    if not isinstance(mask, torch.Tensor) or mask.dim() != 2:
        raise ValueError(f"{name} must be a [K, T] tensor, got {getattr(mask, 'shape', type(mask).__name__)}")
    m = flag_tensor(mask, name, (rows, mask.shape[1]))
    check_trailing_mask(m, name)
    return m


def dpo_credit(chosen_logps: torch.Tensor, rejected_logps: torch.Tensor, ref_chosen_logps: torch.Tensor,
               ref_rejected_logps: torch.Tensor, chosen_mask, rejected_mask, *, beta: float = 0.1,
               loss_type: str = "sigmoid", label_smoothing: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    r"""DPO's credit: the weight its loss's gradient puts on every token of the two answers of a pair.

    DPO's loss depends on an answer only through its sequence log-prob
    :math:`\log\pi(y) = \sum_t \log\pi(y_t)`, so every token of an answer gets the same weight,
    :math:`c = -\partial \ell / \partial \log\pi(y)`. For ``"sigmoid"`` with
    :math:`h = (\log\pi(y_w) - \log\pi_\text{ref}(y_w)) - (\log\pi(y_l) - \log\pi_\text{ref}(y_l))`,

    .. math::

        c_w = +\beta\,\sigma(-\beta h), \qquad c_l = -\beta\,\sigma(-\beta h):

    the right answer up and the wrong one down, as hard as the policy still orders the pair
    wrongly. A step on :math:`-\sum_t c_t \log\pi(y_t)` (summed over tokens, averaged over pairs)
    has exactly the gradient of ``rlcore.dpo_loss(...).losses.mean()``.

    Args:
      chosen_logps, rejected_logps: ``[K]`` sequence log-probs under the policy.
      ref_chosen_logps, ref_rejected_logps: ``[K]`` the same under the reference.
      chosen_mask, rejected_mask: ``[K, T]`` bool, the real tokens of each answer.
      beta, loss_type, label_smoothing: as in :func:`rlcore.dpo_loss` (``"ipo"`` averages over
        each answer's real tokens, counted from the masks).

    Returns:
      ``(chosen_credit, rejected_credit)``, each ``[K, T]``, 0 on padding.

    Reference: Rafailov et al. 2023, section 4 ("What does the DPO update do?").
    """
    check_choice(loss_type, "loss_type", DPO_LOSS_TYPES)
    chosen = float_tensor(chosen_logps, "chosen_logps", ndim=1).detach().clone().requires_grad_(True)
    rejected = float_tensor(rejected_logps, "rejected_logps", ndim=1).detach().clone().requires_grad_(True)
    with torch.enable_grad():
        cm = _pair_mask(chosen_mask, "chosen_mask", chosen.shape[0])
        rm = _pair_mask(rejected_mask, "rejected_mask", rejected.shape[0])
        losses = dpo_loss(chosen, rejected, ref_chosen_logps, ref_rejected_logps, beta=beta,
                          loss_type=loss_type, label_smoothing=label_smoothing,
                          chosen_lengths=cm.sum(1), rejected_lengths=rm.sum(1)).losses
        grad_chosen, grad_rejected = torch.autograd.grad(losses.sum(), (chosen, rejected))
    return per_token(-grad_chosen, chosen_mask), per_token(-grad_rejected, rejected_mask)


class MCValues(NamedTuple):
    """What :func:`mc_values` returns; ``L_b`` is answer ``b``'s number of real tokens."""

    values: torch.Tensor
    """The estimates of ``V(s_t)`` for ``t = 0 … L_b``, ``[B, T + 1]`` (``s_t`` is the prompt and the
    first ``t`` tokens); the answer's own mark at ``t = L_b``, and 0 beyond."""
    values_stderr: torch.Tensor
    """The standard error of each estimate, ``[B, T + 1]`` (0 at ``t = L_b``, where the mark is known)."""
    advantages: torch.Tensor
    """The advantages ``A_t = V(s_{t+1}) − V(s_t)`` of every real token, ``[B, T]``, 0 on padding."""
    advantages_stderr: torch.Tensor
    """The standard error of each advantage, ``[B, T]`` (the two values' errors, independent)."""
    continuations: int
    """How many continuations were sampled (``k`` per state whose value was estimated)."""


@torch.no_grad()
def mc_values(model, tokenizer, rollout, problems, *, k: int = 16, max_new_tokens: int = 12,
              no_answer_penalty: float = 0.1, seed: int = 0, batch_size: int = 4096,
              step_ends: Optional[Sequence[int]] = None) -> MCValues:
    r"""Monte Carlo values of every prefix of every answer, and the per-token advantages they give:
    the ground truth of credit.

    From every state :math:`s_t` (the prompt and the first ``t`` tokens of answer ``b``, for
    ``t < L_b``), ``k`` continuations are sampled from ``model`` (at the rollout's temperature, within
    what is left of the budget ``max_new_tokens``) and graded by the task's verifier; their mean mark
    estimates :math:`V(s_t)`. The state after the last token is terminal, so :math:`V(s_{L_b})` is the
    answer's own mark. Token transitions are deterministic and the only reward is the final mark, so

    .. math::

        A_t = Q(s_t, y_t) - V(s_t) = V(s_{t+1}) - V(s_t).

    With ``step_ends`` (VinePPO's step-level credit, far cheaper), values are estimated only where
    a step starts: at ``t = 0`` and after every token in ``step_ends``. A step's tokens
    ``t = s … e−1`` all get the step's advantage :math:`V(s_e) - V(s_s)`, and ``values`` is
    constant within a step (the value where it starts).

    Args:
      model, tokenizer: the policy whose values are estimated (usually the one that sampled).
      rollout: a :class:`~rlcore.rollout.Rollout` of ``B`` answers.
      problems: ``B`` problems, row by row (``problems[b].answer`` grades row ``b``).
      k: continuations per state (≥ 2, for a standard error).
      max_new_tokens: the generation budget the answers were sampled with.
      no_answer_penalty: the verifier's mark for an empty blank, as in training.
      seed: seeds the sampler.
      batch_size: continuations generated per call of ``model.generate``.
      step_ends: token ids that end a step (e.g. the running sums' space and ``#``); ``None``: every
        token is a step.

    Returns:
      :class:`MCValues` ``(values [B, T+1], values_stderr, advantages [B, T], advantages_stderr)``,
      on the rollout's device.

    Reference: Kazemnejad et al., "VinePPO: Unlocking RL Potential for LLM Reasoning Through Refined
    Credit Assignment", 2024, https://arxiv.org/abs/2410.01679.
    """
    from .tasks import verify_batch

    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise ValueError(f"k must be an int >= 2, got {k!r}")
    if len(problems) != len(rollout):
        raise ValueError(f"problems ({len(problems)}) and rollout ({len(rollout)}) differ in length")
    B, T = rollout.response_ids.shape
    lengths = rollout.lengths.tolist()
    if max(lengths, default=0) > max_new_tokens:
        raise ValueError(f"max_new_tokens={max_new_tokens} is shorter than the rollout's answers ({max(lengths)})")
    device = rollout.response_ids.device
    texts = tokenizer.batch_decode(torch.where(rollout.response_mask, rollout.response_ids,
                                               torch.full_like(rollout.response_ids, tokenizer.pad_token_id)),
                                   skip_special_tokens=True)
    marks = torch.tensor(verify_batch(texts, problems, no_answer_penalty=no_answer_penalty), device=device)
    values = torch.zeros(B, T + 1, dtype=torch.float32, device=device)
    stderr = torch.zeros(B, T + 1, dtype=torch.float32, device=device)
    values[torch.arange(B, device=device), rollout.lengths] = marks  # the terminal state: its own mark
    if step_ends is None:
        starts = [list(range(n)) for n in lengths]
    else:
        ends = torch.isin(rollout.response_ids, torch.as_tensor(list(step_ends), device=device))
        starts = [[0] + [t + 1 for t in range(n - 1) if bool(ends[b, t])] for b, n in enumerate(lengths)]
    # states in order of their prefix's length; one call of generate holds prefixes of one length, so
    # that prompt, prefix and continuation stay within max_new_tokens of the prompt
    states = sorted(((b, t) for b in range(B) for t in starts[b] if lengths[b] > 0), key=lambda s: (s[1], s[0]))
    torch.manual_seed(seed)
    per_call = max(1, batch_size // k)
    chunks = []  # calls of at most per_call states, each of one prefix length
    for state in states:
        if chunks and len(chunks[-1]) < per_call and chunks[-1][0][1] == state[1]:
            chunks[-1].append(state)
        else:
            chunks.append([state])
    for chunk in chunks:
        prefixes = [torch.cat([rollout.prompt_ids[b][rollout.prompt_mask[b]], rollout.response_ids[b, :t]])
                    for b, t in chunk]
        width = max(len(p) for p in prefixes)
        ids = torch.full((len(chunk), width), tokenizer.pad_token_id, dtype=torch.long, device=device)
        attention = torch.zeros(len(chunk), width, dtype=torch.long, device=device)
        for i, p in enumerate(prefixes):  # left padding, as generate expects
            ids[i, width - len(p):] = p
            attention[i, width - len(p):] = 1
        budget = max_new_tokens - min(t for _, t in chunk)
        out = model.generate(input_ids=ids, attention_mask=attention, max_new_tokens=budget, do_sample=True,
                             temperature=rollout.temperature, top_k=0, top_p=1.0, num_return_sequences=k,
                             pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
        continuations = out[:, width:]  # (len(chunk) * k, budget), row i * k + j: continuation j of state i
        full, graded = [], []
        for i, (b, t) in enumerate(chunk):
            left = max_new_tokens - t  # what is left of this answer's budget
            for j in range(k):
                cont = continuations[i * k + j, :left]
                eos = (cont == tokenizer.eos_token_id).nonzero()
                cont = cont[: int(eos[0])] if len(eos) else cont
                full.append(torch.cat([rollout.response_ids[b, :t], cont]))
                graded.append(problems[b])
        texts = tokenizer.batch_decode([f.tolist() for f in full], skip_special_tokens=True)
        got = torch.tensor(verify_batch(texts, graded, no_answer_penalty=no_answer_penalty),
                           device=device).view(len(chunk), k)  # (states, k)
        rows = torch.tensor([b for b, _ in chunk], device=device)
        cols = torch.tensor([t for _, t in chunk], device=device)
        values[rows, cols] = got.mean(1)
        stderr[rows, cols] = got.std(1) / k**0.5
    mask = rollout.response_mask
    if step_ends is None:
        advantages = (values[:, 1:] - values[:, :-1]) * mask
        advantages_stderr = (stderr[:, 1:] ** 2 + stderr[:, :-1] ** 2).sqrt() * mask
        return MCValues(values, stderr, advantages, advantages_stderr, k * len(states))
    advantages = torch.zeros(B, T, dtype=torch.float32, device=device)
    advantages_stderr = torch.zeros(B, T, dtype=torch.float32, device=device)
    for b, n in enumerate(lengths):
        bounds = starts[b] + [n] if n > 0 else []
        for s, e in zip(bounds[:-1], bounds[1:]):  # the step of tokens s .. e-1
            advantages[b, s:e] = values[b, e] - values[b, s]
            advantages_stderr[b, s:e] = (stderr[b, e] ** 2 + stderr[b, s] ** 2).sqrt()
            values[b, s + 1:e], stderr[b, s + 1:e] = values[b, s], stderr[b, s]
    return MCValues(values, stderr, advantages, advantages_stderr, k * len(states))


def oracle_credit(rollout, problems, tokenizer) -> torch.Tensor:
    r"""The step verifier's credit, which no outcome-only method has: ``+1`` on every token before an
    answer's first wrong step, ``-1`` on the first wrong token, ``0`` after it (once the work has gone
    wrong, later tokens cannot be judged on their own). A right answer with right work gets ``+1``
    on every token.

    It needs a task whose work is fully determined and checkable token by token
    (:meth:`rlcore.tasks.RunningSumProblem.first_error`): an upper bound on what credit assignment can
    know, a dense process reward in place of the outcome's one number.

    Args:
      rollout: a :class:`~rlcore.rollout.Rollout` of ``B`` answers.
      problems: ``B`` problems with ``first_error(text)``, row by row.
      tokenizer: the rollout's tokenizer (to map the first wrong character to its token).

    Returns:
      ``[B, T]`` float32 on the rollout's device, 0 on padding.

    Reference: Lightman et al., "Let's Verify Step by Step", 2023, https://arxiv.org/abs/2305.20050
    (process supervision).
    """
    if len(problems) != len(rollout):
        raise ValueError(f"problems ({len(problems)}) and rollout ({len(rollout)}) differ in length")
    if not all(hasattr(p, "first_error") for p in problems):
        raise ValueError("problems must have a first_error(text) step checker (e.g. RunningSumProblem)")
    mask = rollout.response_mask
    out = torch.zeros(mask.shape, dtype=torch.float32, device=mask.device)
    for b, problem in enumerate(problems):
        tokens = rollout.response_ids[b][mask[b]].tolist()
        pieces = [tokenizer.decode([tok], skip_special_tokens=True) for tok in tokens]  # the text of each token
        text = "".join(pieces)
        error = problem.first_error(text)
        ends = torch.tensor([len(p) for p in pieces]).cumsum(0)  # the text's length after each token
        if error is None:
            out[b, : len(tokens)] = 1.0
            continue
        wrong = int((ends > error).nonzero()[0]) if bool((ends > error).any()) else len(tokens) - 1
        out[b, :wrong] = 1.0
        out[b, wrong] = -1.0
    return out


# ---------------------------------------------------------------- scoring credit against the truth

def credit_correlation(credit: torch.Tensor, truth: torch.Tensor, mask) -> float:
    r"""Pearson's correlation between a method's per-token credit and the ground truth (e.g. the
    Monte Carlo advantages of :func:`mc_values`), pooled over the real tokens of every answer.
    NaN when either side does not vary (outcome credit on answers that all got the same mark).

    Args:
      credit, truth: ``[B, T]``.
      mask: ``[B, T]`` bool, True on real tokens.
    """
    credit = float_tensor(credit, "credit", ndim=2)
    truth = float_tensor(truth, "truth", ndim=2)
    check_same_shape(truth, "truth", credit, "credit")
    m = flag_tensor(mask, "mask", credit.shape)
    x, y = credit[m].double(), truth[m].double()
    x, y = x - x.mean(), y - y.mean()
    denominator = (x.square().sum() * y.square().sum()).sqrt()
    return float("nan") if denominator == 0 else float((x * y).sum() / denominator)


def blame_localisation(credit: torch.Tensor, first_wrong: torch.Tensor, mask) -> tuple[float, float]:
    r"""Among answers with a wrong step, how often a method's most negative token is the first wrong
    one, and how often a token drawn at random would be.

    Ties count fractionally: an answer whose lowest credit is shared by ``n`` tokens, the first wrong
    one among them, scores ``1/n`` (the chance that breaking the tie at random finds it). So outcome-only
    credit, the same on every token, scores exactly the chance rate.

    Args:
      credit: ``[B, T]`` per-token credit.
      first_wrong: ``[B]`` long, the index of each answer's first wrong token (from the step verifier),
        ``-1`` for answers without one (they are left out).
      mask: ``[B, T]`` bool, True on real tokens.

    Returns:
      ``(hit_rate, chance_rate)``, each the mean over the answers with a wrong step (NaN if there are none).
    """
    credit = float_tensor(credit, "credit", ndim=2)
    m = flag_tensor(mask, "mask", credit.shape)
    if not isinstance(first_wrong, torch.Tensor) or first_wrong.shape != (credit.shape[0],):
        raise ValueError(f"first_wrong must be a [B] tensor with B={credit.shape[0]}, "
                         f"got {getattr(first_wrong, 'shape', type(first_wrong).__name__)}")
    lengths = m.sum(1)
    rows = (first_wrong >= 0).nonzero().flatten().tolist()
    if any(int(first_wrong[b]) >= int(lengths[b]) for b in rows):
        raise ValueError("first_wrong must point at a real token of its answer")
    hits, chance = [], []
    for b in rows:
        row = credit[b, : int(lengths[b])]
        lowest = row == row.min()
        hits.append(float(lowest[int(first_wrong[b])]) / float(lowest.sum()))
        chance.append(1.0 / float(lengths[b]))
    if not rows:
        return float("nan"), float("nan")
    return sum(hits) / len(hits), sum(chance) / len(chance)


def split_half_reliability(first: MCValues, second: MCValues, mask) -> float:
    r"""How reliable Monte Carlo advantages from ``k`` continuations are: the correlation ``r`` of the
    advantages estimated from two independent halves (``k/2`` continuations each), stepped up to the
    full ``k`` by the Spearman-Brown formula :math:`2r / (1 + r)`. The ceiling on any method's
    correlation with the Monte Carlo truth."""
    r = credit_correlation(first.advantages, second.advantages, mask)
    return float("nan") if math.isnan(r) else 2 * r / (1 + r)
