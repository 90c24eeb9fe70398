"""The methods of the book as presets of the one training loop (:func:`rlcore.train.train`).

Each preset is a :class:`~rlcore.train.TrainConfig`: the method's credit (:mod:`rlcore.credit`)
and the update options its chapter uses. Keyword arguments override any field, so
``grpo(loss_type="dr_grpo", scale_rewards="none")`` is Dr. GRPO. The defaults are the book's
settings (:mod:`rlcore.settings` names them per chapter).

=============  =================  =========================================================
preset         credit             update
=============  =================  =========================================================
``reinforce``  ``sign`` (±1)      one plain step per batch of 64 answers, ``lr=1e-4``
``grpo``       ``group``          2 epochs × 2 minibatches, in order, clip 0.2, 16 × 8 answers
``ppo``        ``gae`` (critic)   2 epochs × 2 shuffled minibatches, clip 0.2, ``lr=3e-4``,
                                  gradient norm clipped to 1, KL (k1) in the reward
``dpo``        ``dpo``            one step on 32 verifier-judged pairs from 32 × 8 answers
=============  =================  =========================================================
"""

from __future__ import annotations

from ._checks import check_choice
from .train import TrainConfig

__all__ = ["LOSS_TYPES", "LOSS_TYPE_OPTIONS", "reinforce", "vineppo", "oracle", "grpo", "ppo", "dpo"]

#: TRL's GRPO ``loss_type`` names and the aggregation mode (:func:`rlcore.aggregate`) each one means.
#: ``"bnpo"`` and ``"dapo"`` share ``"token-mean"`` and differ in its divisor: ``"dapo"`` also sets
#: ``token_mean_over="rollout"`` (:data:`LOSS_TYPE_OPTIONS`).
LOSS_TYPES = {
    "grpo": "seq-mean-token-mean",
    "bnpo": "token-mean",
    "dapo": "token-mean",
    "dr_grpo": "seq-mean-token-sum-norm",
}

#: Every ``TrainConfig`` option a TRL ``loss_type`` sets.
LOSS_TYPE_OPTIONS = {
    name: {"loss_agg_mode": mode, "token_mean_over": "rollout" if name == "dapo" else "minibatch"}
    for name, mode in LOSS_TYPES.items()
}


def reinforce(baseline: str = "sign", **options) -> TrainConfig:
    """REINFORCE (chapter 1): one answer per problem, every token credited with its answer's mark,
    ``+1``/``-1`` (``"sign"``), raw (``"raw"``), minus the batch's mean (``"batch"``) or, with
    ``group_size >= 2``, minus the mean of the other answers to its problem (``"rloo"``); one plain
    policy-gradient step per batch (``-sum_t c_t log pi``, summed over each answer's tokens and
    averaged over answers)."""
    check_choice(baseline, "baseline", ("sign", "raw", "batch", "rloo"))
    return TrainConfig(credit=baseline, **options)


def vineppo(**options) -> TrainConfig:
    """Monte Carlo credit (VinePPO, Kazemnejad et al. 2024, chapter 11): every token credited with
    ``V(s_{t+1}) − V(s_t)``, the values estimated by ``mc_samples`` continuations sampled from the
    current policy (with ``mc_steps=True`` only where a step of the work starts, as VinePPO does),
    the continuations counted in the run's samples; otherwise REINFORCE's batch and update."""
    return TrainConfig(**{"credit": "mc", **options})


def oracle(**options) -> TrainConfig:
    """The step checker's credit (chapter 11): ``+1`` on every token before an answer's first wrong
    step, ``-1`` on it, 0 after (:func:`rlcore.credit.oracle_credit`); a process reward no
    outcome-only method has, for tasks whose work can be checked token by token."""
    return TrainConfig(**{"credit": "oracle", **options})


def grpo(loss_type: str = "grpo", **options) -> TrainConfig:
    """GRPO (chapter 8): 8 answers to each of 16 problems, each credited with its mark against its
    group's (:func:`rlcore.credit.group_credit`; ``scale_rewards`` is TRL's); two passes over each
    batch in two minibatches with PPO's clip (three of every four updates are off-policy, so the
    clip is live); no KL term unless ``beta > 0``. ``loss_type`` is TRL's aggregation name
    (:data:`LOSS_TYPES`): ``"grpo"`` averages each answer's tokens, ``"bnpo"`` every token of a
    minibatch, ``"dapo"`` every token of the batch, ``"dr_grpo"`` divides by a constant."""
    check_choice(loss_type, "loss_type", LOSS_TYPES)
    settings = dict(credit="group", steps=250, prompts_per_step=16, group_size=8, epochs=2, minibatches=2,
                    clip_eps=0.2, **LOSS_TYPE_OPTIONS[loss_type])
    return TrainConfig(**{**settings, **options})


def ppo(**options) -> TrainConfig:
    """PPO (chapter 7): one answer per problem, credited token by token by GAE (λ = 0.95) over a
    learned critic's values, with a per-token k1 KL penalty in the reward (β = 0.05); two passes
    over each batch in two shuffled minibatches, clip 0.2, ``lr=3e-4``, both networks' gradient
    norms clipped to 1 (without it, Adam at this step size now and then undoes much of the training)."""
    settings = dict(credit="gae", steps=100, lr=3e-4, beta=0.05, kl_in_reward=True, kl_kind="k1", gamma=1.0,
                    lam=0.95, epochs=2, minibatches=2, shuffle=True, clip_eps=0.2, loss_agg_mode="token-mean",
                    max_grad_norm=1.0)
    return TrainConfig(**{**settings, **options})


def dpo(**options) -> TrainConfig:
    """DPO (chapter 9): pairs judged by the verifier (a right answer preferred to a wrong one to the
    same problem) from 8 answers to each of 32 problems, re-sampled from the current policy every
    step (``online``; ``online=False`` samples one fixed pool from the starting policy); one step on
    32 pairs with the ``"sigmoid"`` loss, β = 0.1. Evaluations also estimate the sequence KL to the
    reference (128 prompts) and track 64 held-out reference pairs."""
    settings = dict(credit="dpo", steps=60, prompts_per_step=32, group_size=8, pairs_per_step=32, beta=0.1,
                    dpo_loss_type="sigmoid", online=True, kl_size=128, probe_prompts=64)
    return TrainConfig(**{**settings, **options})
