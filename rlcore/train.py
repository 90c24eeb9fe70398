r"""One training loop for every method: sample, grade, credit, update, evaluate.

Each step of :func:`train`:

1. **sample** answers from the current policy (``prompts_per_step`` problems, ``group_size``
   answers to each, groups contiguous), or, for DPO, draw a batch of preference pairs from a pool
   of the policy's own graded answers;
2. **grade** them with the verifier, which reads only the number in the blank;
3. **credit**: turn the marks into a number for every token, with the one function of
   :mod:`rlcore.credit` that ``config.credit`` names (a critic's GAE for ``"gae"``);
4. **update** the policy with :func:`update`: ``epochs`` passes over the batch in ``minibatches``
   (``shuffle``-d or in order), one Adam step per minibatch on
   :math:`-\sum_t c_t \log\pi(y_t)` (``clip_eps=None``) or PPO's clipped surrogate
   (a number), aggregated with ``loss_agg_mode``, plus ``beta`` × k3 KL to the reference in the loss
   when ``beta > 0`` (or in the reward, ``kl_in_reward``, for the critic's credit), gradients clipped
   to ``max_grad_norm``; a critic, when the credit needs one, is regressed on the same minibatches;
5. **evaluate** greedy held-out accuracy every ``eval_every`` steps.

A method is a :class:`TrainConfig`: its credit and the update options it uses (the presets of
:mod:`rlcore.presets`; the book's settings are :mod:`rlcore.settings`). Nothing else differs
between methods, so a comparison with equal update options compares credit alone (chapter 10).

Budgets are steps (so answers), never seconds. Every tensor the loop builds lives on the model's
device.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass
from typing import Callable, Optional

import torch
from tqdm import tqdm

from ._checks import check_choice, check_positive
from .credit import CREDITS, SCALE_REWARDS, critic_credit, explained_variance, mc_values, oracle_credit, outcome_credit
from .evaluation import accuracy, evaluate_and_stop
from .kl import KL_KINDS, kl_estimate
from .losses import DPO_LOSS_TYPES, dpo_loss, ppo_clip_loss, value_loss
from .masked import AGG_MODES, aggregate, masked_mean
from .pairs import PreferencePairs, pair_logprobs, sample_pairs, sequence_kl
from .policy import ValueModel, frozen_copy, model_device
from .reproducibility import step_seed
from .rollout import Rollout, generate, response_logits, response_logprobs
from .tasks import Task, is_right, verify_batch
from .tokens import token_logprobs

__all__ = ["TrainConfig", "train", "update", "sample_and_grade", "PairPool", "check_config", "TOKEN_MEAN_OVER",
           "LearningSignalWarning", "STALL_STEPS"]

#: Steps in a row after which the loop warns that a run cannot learn (:class:`LearningSignalWarning`).
STALL_STEPS = 10


class LearningSignalWarning(RuntimeWarning):
    """The loop's warning that a run is not learning, with the cause: every token's credit 0 (a
    constant reward, or groups whose answers all got the same mark), a zero gradient, most answers
    truncated at the generation budget, or no preference pair to train on. Such a run looks healthy
    from its loss, which is 0 or flat."""


class _Guards:
    """Counts, for each way a run can fail to learn, the steps in a row it has happened, and warns
    once per run when a count reaches ``steps``."""

    def __init__(self, steps: int = STALL_STEPS):
        self.steps, self.count, self.warned = steps, {}, set()

    def check(self, name: str, bad: bool, message: str) -> None:
        self.count[name] = self.count.get(name, 0) + 1 if bad else 0
        if self.count[name] >= self.steps and name not in self.warned:
            self.warned.add(name)
            warnings.warn(f"{message} ({self.steps} steps in a row)", LearningSignalWarning, stacklevel=4)

    def observe(self, entry: dict, config: "TrainConfig", credit: Optional[torch.Tensor] = None) -> None:
        if credit is not None:
            self.check("zero_credit", bool((credit == 0).all()),
                       f"no learning signal: every token's credit was 0 (mean mark {entry.get('reward', float('nan')):.3f}, "
                       f"share of groups whose marks all agree {entry.get('zero_signal', float('nan')):.2f}). A constant "
                       "reward, or groups that are all right or all wrong, train nothing while the loss looks healthy; "
                       "check the reward, or raise group_size or the temperature, or change the prompts' difficulty")
        norm = entry.get("grad_norm")
        if norm is not None and norm == norm:  # NaN during a critic warm-up
            self.check("zero_grad", norm == 0.0, "the policy's gradient norm was 0: the update changes nothing")
        if "truncated" in entry:
            self.check("truncated", entry["truncated"] > 0.5,
                       f"more than half of the answers were cut at max_new_tokens={config.max_new_tokens}: they are "
                       "graded without their end, as the no-answer penalty; raise max_new_tokens")
        if "pairs" in entry:
            self.check("no_pairs", entry.get("pairs", 0) == 0, "DPO found no preference pair (every answer right, or "
                       "every one wrong): nothing to train on")

#: What ``"token-mean"``'s divisor counts (``TrainConfig.token_mean_over``): each minibatch's own
#: tokens (TRL's ``bnpo``), or the whole rollout's tokens over the number of minibatches (TRL's ``dapo``).
TOKEN_MEAN_OVER = ("minibatch", "rollout")


@dataclass(frozen=True)
class TrainConfig:
    """One training run: the method's credit, the batch, the update, the critic, the pairs, the
    evaluation. The defaults are chapter 1's REINFORCE; :mod:`rlcore.presets` builds the others.

    The update options (``lr`` … ``max_grad_norm``) mean the same for every credit; the critic's
    options are read only when ``credit="gae"``, the pairs' only when ``credit="dpo"``.
    """

    # --- the method: how one mark becomes credit for each token (rlcore.credit)
    credit: str = "sign"  # one of rlcore.credit.CREDITS
    scale_rewards: str = "group"  # credit "group": TRL's scale_rewards ("group", "batch", "none")
    mc_samples: int = 16  # credit "mc": continuations sampled from every state (counted in the budget)
    mc_steps: bool = False  # credit "mc": values only where a step of the work starts (VinePPO), not every token
    # --- the batch
    steps: int = 200
    prompts_per_step: int = 64  # problems per step (DPO: per sampling round)
    group_size: int = 1  # answers per problem ("rloo", "group" and "dpo" need >= 2)
    temperature: float = 1.0
    max_new_tokens: int = 12
    no_answer_penalty: float = 0.1
    # --- the update (rlcore.train.update)
    lr: float = 1e-4
    epochs: int = 1  # passes over each batch (TRL's num_iterations, PPO's update epochs)
    minibatches: int = 1  # Adam steps per pass
    shuffle: bool = False  # shuffle the rows before each pass (else in order)
    clip_eps: Optional[float] = None  # None: plain -c log pi (one pass only); a number: PPO's clip
    clip_eps_high: Optional[float] = None  # DAPO's clip-higher; None: clip_eps
    loss_agg_mode: str = "seq-mean-token-sum"  # rlcore.aggregate's mode (verl's name)
    # "token-mean" divides each minibatch's token sum by its own token count ("minibatch": TRL's
    # bnpo) or by the rollout's token count over the number of minibatches ("rollout": TRL's dapo)
    token_mean_over: str = "minibatch"
    beta: float = 0.0  # KL strength: k3 in the loss (or -beta*KL in the reward); DPO's beta
    kl_in_reward: bool = False  # credit "gae": the KL penalty in the per-token reward, not the loss
    kl_kind: str = "k1"  # the estimator in the reward
    max_grad_norm: Optional[float] = None  # clip each network's gradient norm; None: no clipping
    # --- the critic (credit "gae")
    gamma: float = 1.0
    lam: float = 0.95
    critic_lr: float = 1e-3
    critic_epochs: Optional[int] = None  # passes of critic regression per step; None: epochs
    critic_warmup: int = 0  # first steps that train only the critic (the policy frozen)
    value_clip_eps: Optional[float] = None
    whiten_advantages: bool = True
    # --- the preference pairs (credit "dpo")
    pairs_per_step: int = 32  # pairs in one step's batch
    max_pairs_per_prompt: Optional[int] = None  # None: min(#right, #wrong), each answer used once
    dpo_loss_type: str = "sigmoid"  # TRL's DPOConfig.loss_type: "sigmoid", "ipo", "hinge"
    label_smoothing: float = 0.0
    online: bool = True  # re-sample pairs from the current policy; False: one fixed pool
    resample_every: int = 1  # online: steps between sampling rounds
    offline_pairs: Optional[int] = None  # offline: pool size (None: steps * pairs_per_step)
    # --- the evaluation
    eval_every: int = 10
    eval_size: int = 500
    kl_size: int = 0  # held-out prompts whose sampled answers estimate the sequence KL to the reference
    probe_prompts: int = 0  # DPO: held-out prompts whose reference pairs are tracked at each evaluation
    seed: int = 0

    @property
    def answers_per_step(self) -> int:
        """Answers sampled per step (for DPO, per sampling round; a step samples at least one round)."""
        return self.prompts_per_step * self.group_size

    def in_use(self) -> dict:
        """The fields this configuration's method reads, as a dict (the critic's only with the
        critic's credit, the pairs' only with DPO's, and so on): what to print to show a run's settings."""
        skip = set()
        if self.credit != "group":
            skip.add("scale_rewards")
        if self.credit != "mc":
            skip.update(("mc_samples", "mc_steps"))
        if self.credit != "gae":
            skip |= {"gamma", "lam", "critic_lr", "critic_epochs", "critic_warmup", "value_clip_eps",
                     "whiten_advantages", "kl_in_reward", "kl_kind"}
        elif not self.kl_in_reward:
            skip.add("kl_kind")
        if self.credit != "dpo":
            skip |= {"pairs_per_step", "max_pairs_per_prompt", "dpo_loss_type", "label_smoothing", "online",
                     "resample_every", "offline_pairs", "probe_prompts"}
        else:
            skip |= {"clip_eps", "clip_eps_high", "loss_agg_mode"}
        if self.credit == "dpo" or self.loss_agg_mode != "token-mean" or self.token_mean_over == "minibatch":
            skip.add("token_mean_over")  # shown only when it is TRL's dapo: "minibatch" is every older run's
        if self.clip_eps is None:
            skip.add("clip_eps_high")
        return {k: v for k, v in asdict(self).items() if k not in skip}

    @property
    def needs_reference(self) -> bool:
        """Whether the run keeps a frozen copy of the starting policy (the reference) for a KL term,
        for DPO, for the evaluation's sequence KL, and always with a critic (PPO logs its KL to the
        reference, ``kl_ref``, whatever β)."""
        return self.beta > 0 or self.credit in ("dpo", "gae") or self.kl_size > 0


def check_config(config: TrainConfig) -> TrainConfig:
    """Raise ``ValueError`` (naming the field) for a configuration :func:`train` cannot run."""
    check_choice(config.credit, "credit", CREDITS)
    check_choice(config.scale_rewards, "scale_rewards", SCALE_REWARDS)
    check_choice(config.loss_agg_mode, "loss_agg_mode", AGG_MODES)
    check_choice(config.token_mean_over, "token_mean_over", TOKEN_MEAN_OVER)
    check_choice(config.kl_kind, "kl_kind", KL_KINDS)
    check_choice(config.dpo_loss_type, "dpo_loss_type", DPO_LOSS_TYPES)
    for name in ("steps", "prompts_per_step", "group_size", "epochs", "minibatches", "eval_every",
                 "pairs_per_step", "resample_every", "mc_samples"):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    check_positive(config.lr, "lr")
    if config.beta < 0:
        raise ValueError(f"beta must be >= 0, got {config.beta}")
    if config.credit in ("rloo", "group", "dpo") and config.group_size < 2:
        raise ValueError(f"group_size must be >= 2 for the {config.credit!r} credit (it compares the answers "
                         f"to one problem), got {config.group_size}")
    if config.credit == "dpo" and config.beta <= 0:
        raise ValueError(f"beta must be > 0 for the 'dpo' credit, got {config.beta}")
    if config.clip_eps is None and config.epochs > 1 and config.credit != "dpo":
        raise ValueError("clip_eps must be set when epochs > 1: a second pass over the same answers needs "
                         "the importance ratio (and its clip) to correct for the policy having moved")
    if config.kl_in_reward and config.credit != "gae":
        raise ValueError(f"kl_in_reward needs the critic's credit ('gae'), got credit={config.credit!r}")
    if config.minibatches > config.answers_per_step and config.credit != "dpo":
        raise ValueError(f"minibatches={config.minibatches} exceeds the {config.answers_per_step} answers per step")
    return config


def sample_and_grade(model, tokenizer, problems, config: TrainConfig, *, seed: int,
                     grader: Optional[Callable] = None) -> tuple[Rollout, torch.Tensor, list]:
    """Steps 1 and 2: ``group_size`` answers to each problem (groups contiguous), sampled at
    ``seed``, their marks ``[N]`` on the model's device, and each row's problem. The marks are the
    verifier's, or ``grader(rollout, problems)``'s when one is given (a learned reward model)."""
    group = [p for p in problems for _ in range(config.group_size)]
    ro = generate(model, tokenizer, [p.prompt for p in group], temperature=config.temperature,
                  max_new_tokens=config.max_new_tokens, seed=seed, compute_logp=False)
    if grader is None:
        marks = torch.tensor(verify_batch(ro.texts, group, no_answer_penalty=config.no_answer_penalty),
                             device=model_device(model))
    else:
        marks = grader(ro, group)
        if not isinstance(marks, torch.Tensor) or marks.shape != (len(group),) or not marks.is_floating_point():
            raise ValueError(f"grader must return a float tensor of shape ({len(group)},), got "
                             f"{getattr(marks, 'shape', type(marks).__name__)}")
        if not bool(torch.isfinite(marks).all()):
            raise ValueError("grader returned non-finite marks")
        marks = marks.to(model_device(model))
    return ro, marks, group


class PairPool:
    """DPO's source of batches: a pool of verifier-judged preference pairs from the policy's own
    answers, re-sampled from the current policy every ``resample_every`` steps (``online``) or
    sampled once from the starting policy (offline), and served ``pairs_per_step`` at a time in
    shuffled passes."""

    def __init__(self, tokenizer, task: Task, reference, config: TrainConfig):
        self.tokenizer, self.reference, self.config = tokenizer, reference, config
        self.problems = task.stream(config.prompts_per_step, seed=config.seed)
        self.shuffle = torch.Generator().manual_seed(config.seed)
        self.rounds = 0
        self.pool: Optional[PreferencePairs] = None
        self.order, self.cursor = torch.zeros(0, dtype=torch.long), 0

    def _fill(self, policy, n_pairs: int) -> tuple[PreferencePairs, dict]:
        """Sampling rounds from ``policy`` until at least ``n_pairs`` pairs (at most 50 rounds)."""
        c = self.config
        parts, samples, marks = [], 0, []
        for _ in range(50):
            self.rounds += 1
            pairs, stats = sample_pairs(policy, self.tokenizer, next(self.problems), reference=self.reference,
                                        samples_per_prompt=c.group_size, temperature=c.temperature,
                                        max_new_tokens=c.max_new_tokens, no_answer_penalty=c.no_answer_penalty,
                                        max_pairs_per_prompt=c.max_pairs_per_prompt,
                                        seed=step_seed(c.seed, self.rounds))
            parts.append(pairs)
            samples += stats["samples"]
            marks.append(stats["reward"])
            if sum(len(p) for p in parts) >= n_pairs:
                break
        return PreferencePairs.cat(parts), {"samples": samples, "sample_reward": sum(marks) / len(marks)}

    def next(self, policy, step: int) -> tuple[PreferencePairs, Optional[dict]]:
        """The step's batch of pairs, and the sampling statistics when the step sampled."""
        c, stats = self.config, None
        if c.online and (step - 1) % c.resample_every == 0:  # fresh pairs from the current policy
            self.pool, stats = self._fill(policy, c.pairs_per_step * c.resample_every)
            self.order, self.cursor = torch.zeros(0, dtype=torch.long), 0
        elif self.pool is None:  # offline: one fixed pool, sampled once from the starting policy
            want = c.offline_pairs or c.steps * c.pairs_per_step
            self.pool, stats = self._fill(policy, want)
            self.pool = self.pool.select(torch.arange(min(want, len(self.pool))))
        if self.cursor + c.pairs_per_step > len(self.order):  # a new pass over the pool, freshly shuffled
            self.order, self.cursor = torch.randperm(len(self.pool), generator=self.shuffle), 0
        idx = self.order[self.cursor:self.cursor + c.pairs_per_step]
        self.cursor += c.pairs_per_step
        return self.pool.select(idx), stats


def _adam_step(optimizer, loss: torch.Tensor, parameters, max_grad_norm: Optional[float]) -> float:
    """One Adam step on ``loss``; returns the gradient's norm before any clipping."""
    parameters = [p for p in parameters if p.requires_grad]
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grads = [p.grad for p in parameters if p.grad is not None]
    if max_grad_norm is not None:
        norm = torch.nn.utils.clip_grad_norm_(parameters, max_grad_norm)
    else:
        norm = torch.nn.utils.get_total_norm(grads) if grads else torch.zeros(())
    optimizer.step()
    return float(norm)


def update(model, optimizer, batch, objective: Callable, config: TrainConfig, *,
           generator: Optional[torch.Generator] = None, critic=None, critic_optimizer=None,
           critic_objective: Optional[Callable] = None, train_policy: bool = True) -> dict:
    """Step 4, the one update every method uses: ``epochs`` passes over ``batch`` (anything with
    ``len`` and ``select(idx)``: a :class:`~rlcore.rollout.Rollout` or preference pairs), each in
    ``minibatches`` (rows shuffled with ``generator`` before each pass when ``config.shuffle``),
    one Adam step per minibatch on ``objective(idx) -> (loss, stats)``, the gradient norm clipped to
    ``config.max_grad_norm``. With a ``critic``, ``critic_objective(idx) -> loss`` is minimised on
    the same minibatch right after the policy (for ``critic_epochs`` passes). With ``train_policy``
    false only the critic trains (a warm-up).

    Returns:
      The mean over minibatches of every statistic the objectives reported (NaN for none), plus
      ``value_loss`` with a critic.
    """
    logs: dict[str, list[float]] = {}
    policy_epochs = config.epochs if train_policy else 0
    critic_epochs = 0 if critic is None else (config.epochs if config.critic_epochs is None else config.critic_epochs)
    model.train(train_policy)
    if critic is not None:
        critic.train()
    for epoch in range(max(policy_epochs, critic_epochs)):
        rows = torch.randperm(len(batch), generator=generator) if config.shuffle else torch.arange(len(batch))
        for idx in rows.chunk(config.minibatches):
            if epoch < policy_epochs:
                loss, stats = objective(idx)
                stats = {**stats, "grad_norm": _adam_step(optimizer, loss, model.parameters(), config.max_grad_norm)}
                for key, value in stats.items():
                    logs.setdefault(key, []).append(float(value))
            if epoch < critic_epochs:
                vloss = critic_objective(idx)
                _adam_step(critic_optimizer, vloss, critic.parameters(), config.max_grad_norm)
                logs.setdefault("value_loss", []).append(vloss.item())
    return {key: sum(values) / len(values) for key, values in logs.items()}


def _policy_gradient_objective(model, ro: Rollout, credit, old_logp, ref_logp, config: TrainConfig) -> Callable:
    """The loss every sampling method minimises on a minibatch ``idx`` of the rollout: the
    credit-weighted log-probs (clipped with PPO's ratio when ``clip_eps`` is set), plus β·k3 KL."""

    norm = dict(max_len=config.max_new_tokens, num_tokens=None)
    if config.loss_agg_mode == "token-mean" and config.token_mean_over == "rollout":
        chunks = len(torch.arange(len(ro)).chunk(config.minibatches))  # the minibatches update() cuts
        norm["num_tokens"] = max(ro.response_mask.sum().item(), 1) / chunks  # TRL's dapo

    def objective(idx):
        sub = ro.select(idx)
        mask = sub.response_mask
        logits = response_logits(model, sub)  # (n, R, V), the sampling distribution's
        logp = token_logprobs(logits, sub.response_ids) * mask  # (n, R) with gradient
        stats = {}
        if config.clip_eps is None:  # on-policy: the plain policy gradient, -sum_t c_t log pi(y_t)
            loss = aggregate(-credit[idx] * logp, mask, config.loss_agg_mode, **norm)
        else:
            out = ppo_clip_loss(logp, old_logp[idx], credit[idx], mask, clip_eps=config.clip_eps,
                                clip_eps_high=config.clip_eps_high, agg=config.loss_agg_mode, **norm)
            loss = out.loss
            stats.update(clip_frac=out.clip_frac.item(), approx_kl=out.approx_kl.item())
        stats["policy_loss"] = loss.item()
        if config.beta > 0 and not config.kl_in_reward:
            kl = kl_estimate(logp, ref_logp[idx], kind="k3")  # (n, R)
            loss = loss + config.beta * aggregate(kl, mask, config.loss_agg_mode, **norm)
        with torch.no_grad():
            probs = torch.softmax(logits.detach(), dim=-1)
            entropy = -(probs * torch.log(probs.clamp_min(1e-12))).sum(-1)  # (n, R)
        stats.update(loss=loss.item(), entropy=masked_mean(entropy, mask).item())
        return loss, stats

    return objective


def _dpo_objective(model, pairs: PreferencePairs, config: TrainConfig) -> Callable:
    """DPO's loss on a minibatch ``idx`` of pairs; its gradient puts :func:`rlcore.credit.dpo_credit`
    on every token of the two answers."""

    def objective(idx):
        batch = pairs.select(idx)
        chosen_logps, rejected_logps = pair_logprobs(model, batch)  # (K,), (K,) with gradient
        out = dpo_loss(chosen_logps, rejected_logps, batch.ref_chosen_logps, batch.ref_rejected_logps,
                       beta=config.beta, loss_type=config.dpo_loss_type, label_smoothing=config.label_smoothing,
                       chosen_lengths=batch.chosen.lengths, rejected_lengths=batch.rejected.lengths)
        loss = out.losses.mean()
        margin = out.chosen_rewards - out.rejected_rewards  # (K,)
        return loss, {
            "loss": loss.item(),
            "reward_accuracy": (margin > 0).float().mean().item(),
            "margin": margin.mean().item(),
            "chosen_reward": out.chosen_rewards.mean().item(),
            "rejected_reward": out.rejected_rewards.mean().item(),
            "chosen_logp": chosen_logps.detach().mean().item(),
            "rejected_logp": rejected_logps.detach().mean().item(),
        }

    return objective


def train(model, tokenizer, task: Task, config: TrainConfig = TrainConfig(), *,
          critic: Optional[ValueModel] = None, progress: bool = True, time_guard: Optional[float] = None,
          stop_at_accuracy: Optional[float] = None, max_samples: Optional[int] = None,
          grader: Optional[Callable] = None, extra_eval: Optional[Callable] = None) -> dict:
    """Train ``model`` in place with the method ``config`` describes; return what happened.

    Args:
      model, tokenizer: the policy (trained in place, on its own device) and its tokenizer.
      task: the problems (a training stream seeded by ``config.seed``, and the held-out set).
      config: the method and its settings.
      critic: a :class:`~rlcore.policy.ValueModel` to start from (credit ``"gae"``; default: the
        policy's trunk with a zero head).
      progress: show a tqdm bar.
      time_guard: raise if training takes longer than this many seconds (never stops early).
      stop_at_accuracy: end the run at the first evaluation at or above this accuracy.
      max_samples: a budget of sampled answers (Monte Carlo continuations included): the run ends,
        with an evaluation, after the last step that the budget holds, when another step like the
        one just taken would pass it (for methods whose steps cost a varying number of samples).
      grader: grade the sampled answers with ``grader(rollout, problems) -> [N]`` instead of the
        verifier (a learned reward model, :func:`rlcore.reward_model.reward_grader`); the held-out
        accuracy is still the verifier's. Not with DPO, whose pairs the verifier labels.
      extra_eval: ``extra_eval(model) -> dict``, merged into every evaluation (for example the
        reward model's score, the true accuracy and the KL of sampled answers).

    Returns:
      ``history`` (one dict per step: ``step``, ``samples`` (answers generated so far),
      ``seconds`` (training wall time), the step's statistics, and at evaluations ``accuracy``),
      ``config`` (as a dict), ``samples``, ``wall_seconds``, ``critic`` and ``reference`` (or
      ``None``). Sampling steps log ``reward`` (mean mark), ``response_length``, ``truncated``
      (share cut at ``max_new_tokens``), with groups ``zero_signal`` (share of groups whose marks
      all agree: zero credit) and ``all_right``, with a reference ``kl_ref`` (mean k3 to it), and the
      update's ``loss``, ``policy_loss``, ``entropy``, with a clip ``clip_frac`` and
      ``approx_kl``, with a critic ``value_loss`` and ``explained_variance`` (on the fresh batch,
      before the critic trains on it; NaN statistics for the policy during a critic warm-up). DPO
      steps log the pairs' ``loss``, ``reward_accuracy``, ``margin``, ``chosen_reward``,
      ``rejected_reward``, ``chosen_logp``, ``rejected_logp``, ``pairs`` (pool size) and, when they
      sampled, ``sample_reward``; DPO evaluations add ``kl`` (sequence-level KL to the reference
      over ``kl_size`` held-out prompts) and the ``probe_*`` statistics of held-out reference pairs.
    """
    check_config(config)
    device = model_device(model)
    heldout = task.heldout[: config.eval_size]
    reference = frozen_copy(model) if config.needs_reference else None
    if config.credit == "gae":
        critic = critic if critic is not None else ValueModel.from_policy(model)
        critic = critic.to(device)
        critic_optimizer = torch.optim.Adam(critic.parameters(), lr=config.critic_lr)
    else:
        critic, critic_optimizer = None, None
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    problems = task.stream(config.prompts_per_step, seed=config.seed)
    pairs = PairPool(tokenizer, task, reference, config) if config.credit == "dpo" else None
    step_ends = None
    if config.credit == "mc" and config.mc_steps:
        if not task.step_ends:
            raise ValueError("mc_steps needs a task with steps (task.step_ends is empty)")
        step_ends = tokenizer.convert_tokens_to_ids(list(task.step_ends))
    torch.manual_seed(config.seed)

    probe = None
    if config.probe_prompts > 0 and reference is not None:
        probe, _ = sample_pairs(reference, tokenizer, task.heldout[: config.probe_prompts], reference=reference,
                                samples_per_prompt=config.group_size, temperature=config.temperature,
                                max_new_tokens=config.max_new_tokens, no_answer_penalty=config.no_answer_penalty,
                                seed=step_seed(config.seed, 999_999))

    if grader is not None and config.credit in ("dpo", "oracle", "mc"):
        raise ValueError(f"grader: credit {config.credit!r} reads the verifier itself; use an outcome credit")

    def evaluate() -> dict:
        out = {"accuracy": accuracy(model, tokenizer, heldout, max_new_tokens=config.max_new_tokens)}
        if extra_eval is not None:
            out.update(extra_eval(model))
        if config.kl_size > 0 and reference is not None:
            out["kl"] = sequence_kl(model, reference, tokenizer, task.heldout[: config.kl_size],
                                    max_new_tokens=config.max_new_tokens, seed=config.seed + 77)
        if probe is not None and len(probe):
            with torch.no_grad():
                pc, pr = pair_logprobs(model, probe)
            chosen, rejected = pc - probe.ref_chosen_logps, pr - probe.ref_rejected_logps  # (K,) log pi/pi_ref
            out.update(probe_chosen=chosen.mean().item(), probe_rejected=rejected.mean().item(),
                       probe_reward_accuracy=(chosen > rejected).float().mean().item())
        return out

    if max_samples is not None and (isinstance(max_samples, bool) or not isinstance(max_samples, int)
                                    or max_samples < 1):
        raise ValueError(f"max_samples must be a positive int or None, got {max_samples!r}")
    history = [{"step": 0, "samples": 0, "seconds": 0.0, **evaluate()}]
    guards = _Guards()
    samples, train_seconds = 0, 0.0
    bar = tqdm(range(1, config.steps + 1), desc=f"train[{config.credit}]", disable=not progress)
    for step in bar:
        t0 = time.perf_counter()
        entry: dict = {"step": step}
        if pairs is not None:
            # 1-2. DPO: a batch of pairs, right answers preferred to wrong ones to the same problem
            batch, sampled = pairs.next(model, step)
            if sampled is not None:
                samples += sampled["samples"]
                entry["sample_reward"] = sampled["sample_reward"]
            # 3-4. credit and update: DPO's loss puts +-beta*sigmoid(-beta*h) on every token of a pair
            if len(batch):  # no pair at all (every answer right, or every one wrong): nothing to learn
                entry.update(update(model, optimizer, batch, _dpo_objective(model, batch, config), config,
                                    generator=torch.Generator().manual_seed(step_seed(config.seed, step))))
            entry["pairs"] = len(pairs.pool)
            guards.observe(entry, config)
        else:
            # 1-2. sample and grade
            ro, marks, graded = sample_and_grade(model, tokenizer, next(problems), config,
                                                 seed=step_seed(config.seed, step), grader=grader)
            mask = ro.response_mask
            with torch.no_grad():
                # the sampling policy's log-probs: for the clip's ratio, the critic's KL reward, the KL log
                needs_old = config.clip_eps is not None or critic is not None or reference is not None
                old_logp = response_logprobs(model, ro) if needs_old else None
                ref_logp = response_logprobs(reference, ro) if reference is not None else None
                # 3. credit: one number for every token
                if critic is not None:
                    old_values = critic(ro)  # (B, R) V(s_t)
                    kl_args = dict(logp=old_logp, ref_logp=ref_logp) if config.kl_in_reward else {}
                    credit, returns = critic_credit(marks, old_values, mask, gamma=config.gamma, lam=config.lam,
                                                    beta=config.beta, kl_kind=config.kl_kind,
                                                    whiten_advantages=config.whiten_advantages, **kl_args)
                elif config.credit == "mc":  # VinePPO: every state's value from sampled continuations
                    mc = mc_values(model, tokenizer, ro, graded, k=config.mc_samples, step_ends=step_ends,
                                   max_new_tokens=config.max_new_tokens, no_answer_penalty=config.no_answer_penalty,
                                   seed=step_seed(config.seed, step))
                    credit = mc.advantages
                    samples += mc.continuations  # the continuations are answers too
                elif config.credit == "oracle":  # the step verifier, where the task has one
                    credit = oracle_credit(ro, graded, tokenizer)
                else:
                    credit = outcome_credit(config.credit, marks, mask, group_size=config.group_size,
                                            scale_rewards=config.scale_rewards)
            # 4. update
            objective = _policy_gradient_objective(model, ro, credit, old_logp, ref_logp, config)

            def critic_objective(idx):  # the critic regresses on the returns (used only with a critic)
                sub = ro.select(idx)
                return value_loss(critic(sub), old_values[idx], returns[idx], sub.response_mask,
                                  clip_eps=config.value_clip_eps)

            stats = update(model, optimizer, ro, objective, config,
                           generator=torch.Generator().manual_seed(step_seed(config.seed, step)),
                           critic=critic, critic_optimizer=critic_optimizer, critic_objective=critic_objective,
                           train_policy=step > config.critic_warmup)
            if step <= config.critic_warmup:  # the policy did not train: its statistics are undefined
                stats = {**dict.fromkeys(("loss", "policy_loss", "entropy", "clip_frac", "approx_kl"), float("nan")),
                         **stats}
            samples += len(ro)
            entry.update(reward=marks.mean().item(), response_length=ro.lengths.float().mean().item(),
                         truncated=ro.truncated.float().mean().item())
            if config.group_size > 1:
                grouped = marks.view(-1, config.group_size)
                entry["zero_signal"] = (grouped.max(1).values == grouped.min(1).values).float().mean().item()
                entry["all_right"] = is_right(grouped).all(1).float().mean().item()
            if ref_logp is not None:  # KL to the reference of the policy that sampled, before the update
                entry["kl_ref"] = masked_mean(kl_estimate(old_logp, ref_logp, kind="k3"), mask).item()
            if critic is not None:
                entry["explained_variance"] = explained_variance(old_values, returns, mask)
            entry.update(stats)
            guards.observe(entry, config, credit)
        train_seconds += time.perf_counter() - t0
        last_cost = samples - history[-1]["samples"]
        entry["samples"], entry["seconds"] = samples, train_seconds
        spent = max_samples is not None and samples + last_cost > max_samples  # another step would pass it
        stop = evaluate_and_stop(entry, step=step, steps=step if spent else config.steps, eval_every=config.eval_every,
                                 seconds=train_seconds, evaluate=evaluate, time_guard=time_guard,
                                 stop_at_accuracy=stop_at_accuracy, bar=bar,
                                 show=(("acc", "accuracy"), ("margin" if pairs else "reward",
                                                             "margin" if pairs else "reward")))
        history.append(entry)
        if stop or spent:
            break
    model.eval()
    if critic is not None:
        critic.eval()
    return {"history": history, "config": asdict(config), "samples": samples, "wall_seconds": train_seconds,
            "critic": critic, "reference": reference}
