"""The book's settings, in one place: the task, each chapter's run, and chapter 10's contestants.

The chapters and the command line (:mod:`rlcore.experiments`, :mod:`rlcore.compare`) both read
them from here, so a change reaches both.
"""

from __future__ import annotations

from dataclasses import replace

from . import presets
from .policy import PolicyConfig
from .tasks import AdditionTask, RunningSumTask, Task

__all__ = ["DEFAULT_TASK", "RUNNING_SUM_TASK", "SFT_SETTINGS", "POLICY_SETTINGS", "TASKS", "make_task", "CHAPTER1_REINFORCE", "CHAPTER7_PPO", "CHAPTER8_GRPO", "CHAPTER9_DPO",
           "HEAD_TO_HEAD_UPDATE", "HEAD_TO_HEAD", "CREDIT_RACE_UPDATE", "CREDIT_RACE", "OVEROPTIMISATION",
           "OVEROPTIMISATION_BETAS"]

#: The book's task, 3-digit addition with 500 fixed held-out problems.
DEFAULT_TASK = dict(digits=3, heldout_size=500, heldout_seed=1234)
#: The task where credit is hard, running sums of six 2-digit numbers with 27 tokens of checkable work.
RUNNING_SUM_TASK = dict(terms=6, digits=2, heldout_size=500, heldout_seed=4321)
#: The supervised start of each task's fifth grader, which stops when held-out accuracy enters the band.
SFT_SETTINGS = {"addition": dict(stop_low=0.30, stop_high=0.45),
                "running_sum": dict(stop_low=0.15, stop_high=0.30, steps=6000, eval_every=100, close_to=0.05)}
#: Each task's policy size. The running sums need more positions (prompt and answer are 48 tokens)
#: and more width: at the addition grader's size (64 wide) the supervised start stalled near 7%
#: held-out after 8,000 steps; at 128 wide it passes 15% within about a thousand.
POLICY_SETTINGS = {"addition": PolicyConfig(),
                   "running_sum": PolicyConfig(hidden_size=128, intermediate_size=384, max_position_embeddings=64)}
TASKS = ("addition", "running_sum")


def make_task(name: str = "addition") -> Task:
    """The book's task: ``"addition"`` (:data:`DEFAULT_TASK`, the story's) or ``"running_sum"``
    (:data:`RUNNING_SUM_TASK`, where credit is hard)."""
    if name == "addition":
        return AdditionTask(**DEFAULT_TASK)
    if name == "running_sum":
        return RunningSumTask(**RUNNING_SUM_TASK)
    raise ValueError(f"name must be one of {list(TASKS)}, got {name!r}")


#: Chapter 1's run, the story's update (+1 for right and -1 for wrong, one answer per problem,
#: one plain step per batch of 64): 200 steps.
CHAPTER1_REINFORCE = presets.reinforce("sign")

#: Chapter 7's run, PPO with a critic, GAE over tokens (λ = 0.95) and a per-token k1 KL penalty in
#: the reward (β = 0.05): 100 steps of 64 answers, two epochs of two minibatches, gradients clipped to norm 1.
CHAPTER7_PPO = presets.ppo()

#: Chapter 8's headline run, GRPO with 16 problems x 8 answers per step, two passes over each
#: batch in two minibatches (so the clip is live), no KL term: 250 steps, 32,000 answers.
CHAPTER8_GRPO = presets.grpo()

#: Chapter 9's run, DPO on verifier-judged pairs (a right answer preferred to a wrong one to the
#: same problem), re-sampled from the current policy every step ("online"; the chapter measures
#: it against offline DPO on one fixed set of pairs from the fifth grader).
CHAPTER9_DPO = presets.dpo()

#: Chapter 10's one update, the same for every contestant, so that the comparison compares credit.
#: Adam at 1e-4, two passes over each batch in two shuffled minibatches, PPO's clip (0.2) on the
#: ratio to the sampling policy, every token weighing the same, gradient norm clipped to 1.
HEAD_TO_HEAD_UPDATE = dict(lr=1e-4, epochs=2, minibatches=2, shuffle=True, clip_eps=0.2, max_grad_norm=1.0,
                           loss_agg_mode="token-mean")

_U = HEAD_TO_HEAD_UPDATE
#: Chapter 10's contestants, every method with :data:`HEAD_TO_HEAD_UPDATE` and 64 answers per step
#: (DPO: a step trains on 32 pairs, 64 answers, found among 32 × 8 sampled ones), differing in their
#: credit and in what the credit needs by design (groups of answers to one problem, a critic, pairs);
#: GRPO keeps its own aggregation, which is part of its credit (each answer's tokens averaged), and
#: Dr. GRPO its constant normaliser. ``reinforce_one_pass`` is the control: chapter 1's REINFORCE,
#: one plain step per batch, to show what the shared update's reuse of each batch buys.
#: ``steps`` and ``eval_every`` are set from the budget by :func:`rlcore.compare.method_configs`.
HEAD_TO_HEAD = {
    "reinforce": presets.reinforce("sign", **_U),
    "reinforce_baseline": presets.reinforce("batch", **_U),
    "rloo": presets.reinforce("rloo", prompts_per_step=16, group_size=4, **_U),
    "ppo": replace(CHAPTER7_PPO, **_U),
    "grpo": presets.grpo(prompts_per_step=8, group_size=8, **{**_U, "loss_agg_mode": presets.LOSS_TYPES["grpo"]}),
    "dr_grpo": presets.grpo(prompts_per_step=8, group_size=8, scale_rewards="none",
                            **{**_U, "loss_agg_mode": presets.LOSS_TYPES["dr_grpo"]}),
    "dpo_online": presets.dpo(**{k: v for k, v in _U.items() if k != "clip_eps"}),
    "dpo_offline": presets.dpo(online=False, **{k: v for k, v in _U.items() if k != "clip_eps"}),
    "reinforce_one_pass": CHAPTER1_REINFORCE,
}
del _U


#: The update of chapter 11's credit race on the running sums is chapter 10's at a tenth of its step size.
#: At 1e-4 every method collapsed the running-sum grader (20.8% held-out to under 1% within 3,200
#: answers); at 1e-5 the batch baseline climbed past 50% in 9,600.
CREDIT_RACE_UPDATE = {**HEAD_TO_HEAD_UPDATE, "lr": 1e-5}

_U = CREDIT_RACE_UPDATE
#: The contestants of chapter 11's race on the running sums share one update and take credit from one number per answer
#: (a batch baseline, a leave-one-out one, GRPO's group), from a critic (PPO), from sampled
#: continuations (VinePPO's Monte Carlo values at the start of every running total, 4 each, 16
#: problems per step, the continuations counted as answers), from preference pairs (online DPO),
#: and from the step checker (the oracle, an upper bound no outcome-only method has).
CREDIT_RACE = {
    "reinforce": presets.reinforce("batch", **_U),
    "rloo": presets.reinforce("rloo", prompts_per_step=16, group_size=4, **_U),
    "grpo": presets.grpo(prompts_per_step=8, group_size=8, **{**_U, "loss_agg_mode": presets.LOSS_TYPES["grpo"]}),
    "ppo": replace(CHAPTER7_PPO, **_U),
    "mc": presets.vineppo(prompts_per_step=16, mc_samples=4, mc_steps=True, **_U),
    "dpo_online": presets.dpo(**{k: v for k, v in _U.items() if k != "clip_eps"}),
    "oracle": presets.oracle(**_U),
}
del _U

#: Chapter 13's runs against the learned reward model (:mod:`rlcore.reward_model`): REINFORCE with
#: the batch baseline and chapter 10's shared update, 64 answers per step, 300 steps (19,200 answers),
#: evaluated every 10 steps; ``beta`` (k3 in the loss) is set per run from :data:`OVEROPTIMISATION_BETAS`.
OVEROPTIMISATION = presets.reinforce("batch", **HEAD_TO_HEAD_UPDATE, prompts_per_step=64, steps=300, eval_every=10)

#: Chapter 13's KL strengths (no leash, a loose one, a tight one).
OVEROPTIMISATION_BETAS = (0.0, 0.1, 0.3)
