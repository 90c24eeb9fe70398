"""PPO for the fifth grader: a critic, GAE over tokens, KL to a reference, clipped updates.

One step:

1. sample one answer per problem (``batch_size`` problems) from the current policy;
2. per-token rewards: the verifier's mark on the answer's last token, and — when
   ``kl_in_reward`` — minus ``beta`` × a per-token estimate of KL(π ‖ π_ref) on every token
   (InstructGPT's shaped reward; ``kl_kind`` names the estimator, k1 by default);
3. values ``V(s_t)`` of every prefix from the critic, and :func:`rlcore.gae` over tokens
   (γ = ``gamma``, λ = ``lam``); advantages are whitened over the batch;
4. ``epochs`` passes of minibatch updates: :func:`rlcore.ppo_clip_loss` for the policy,
   :func:`rlcore.value_loss` (optionally clipped) for the critic (``critic_epochs`` passes);
   with ``kl_in_reward=False`` and ``beta > 0`` the k3 KL goes into the loss instead (as GRPO
   does). Both networks' gradients are clipped to norm ``max_grad_norm``. During the first
   ``critic_warmup`` steps only the critic is trained: the policy stays frozen, so the critic
   chases a fixed target before the policy starts to move.

**The critic** is a separate small network: the fifth grader's transformer trunk, copied, with a
fresh scalar head (:class:`ValueModel`). A separate copy keeps the policy's and the critic's
gradients from fighting over shared weights, costs one more forward pass, and is what
InstructGPT did (its value model starts from the reward model). ``V(s_t)`` is read at the
position that has seen the prompt and the tokens before ``t``. On the addition task this critic
learns the average mark and little else (its explained variance stays near 0): judging whether a
written digit is right is as hard as writing it. Chapter 7 measures this against Monte Carlo values.

Every answer ends with the verifier's grade: an answer cut at ``max_new_tokens`` is scored
(with the no-answer penalty) like any other, so no row is bootstrapped (``last_value`` unused).

Reference: Schulman et al. 2017 (PPO); Schulman et al. 2015 (GAE); Ouyang et al. 2022
(InstructGPT's per-token KL penalty).
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass
from typing import Optional

import torch
from torch import nn
from tqdm import tqdm

from ._checks import check_choice
from .advantages import gae
from .evaluation import accuracy, evaluate_and_stop
from .kl import KL_KINDS, kl_estimate
from .losses import ppo_clip_loss, value_loss
from .masked import aggregate, masked_mean, whiten
from .grpo import frozen_copy
from .rollout import Rollout, _position_ids, generate, response_forward, response_logprobs
from .tokens import token_logprobs
from .tasks import AdditionTask, verify_batch

__all__ = ["PPOConfig", "ValueModel", "train_ppo", "token_rewards", "explained_variance"]


@dataclass
class PPOConfig:
    """Hyper-parameters of :func:`train_ppo` (the names TRL and CleanRL use where they exist).

    The critic has its own learning rate ``critic_lr``, number of regression passes per step
    ``critic_epochs`` (``None``: the same as ``epochs``) and ``critic_warmup``, a number of first
    steps that train only the critic. ``max_grad_norm`` clips each network's gradient norm
    (``None``: no clipping); without it, Adam at ``lr=3e-4`` now and then takes a step that
    undoes a good part of the training (seen on the addition task).
    """

    steps: int = 200
    batch_size: int = 64
    lr: float = 3e-4
    critic_lr: float = 1e-3
    gamma: float = 1.0
    lam: float = 0.95
    beta: float = 0.02  # KL strength; 0 turns the KL term off
    kl_in_reward: bool = True  # True: -beta*KL in the per-token reward; False: beta*k3 in the loss
    kl_kind: str = "k1"  # estimator used in the reward
    clip_eps: float = 0.2
    value_clip_eps: Optional[float] = None
    epochs: int = 2
    minibatches: int = 2
    critic_epochs: Optional[int] = None  # passes of critic regression per step; None: ``epochs``
    critic_warmup: int = 0  # first steps that train only the critic (policy frozen)
    max_grad_norm: Optional[float] = 1.0  # clip each network's gradient norm; None: no clipping
    whiten_advantages: bool = True
    temperature: float = 1.0
    max_new_tokens: int = 12
    no_answer_penalty: float = 0.1
    eval_every: int = 10
    eval_size: int = 500
    seed: int = 0


class ValueModel(nn.Module):
    """A critic: a causal transformer trunk and a linear head giving one value per position."""

    def __init__(self, trunk: nn.Module, hidden_size: int):
        super().__init__()
        self.trunk = trunk
        self.head = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    @classmethod
    def from_policy(cls, policy) -> "ValueModel":
        """Copy the policy's trunk (``policy.model``) and add a zero-initialised head."""
        return cls(copy.deepcopy(policy.model), policy.config.hidden_size)

    def forward(self, rollout: Rollout) -> torch.Tensor:
        """``V(s_t)`` for every response token, ``[B, R]`` (0 on padding)."""
        ids = torch.cat([rollout.prompt_ids, rollout.response_ids], dim=1)  # (B, P + R)
        attn = torch.cat([rollout.prompt_mask, rollout.response_mask], dim=1).long()
        hidden = self.trunk(input_ids=ids, attention_mask=attn, position_ids=_position_ids(attn)).last_hidden_state
        P, R = rollout.prompt_ids.shape[1], rollout.response_ids.shape[1]
        values = self.head(hidden[:, P - 1 : P - 1 + R]).squeeze(-1)  # (B, R): state before token t
        return values * rollout.response_mask


def token_rewards(marks: torch.Tensor, mask: torch.Tensor, kl: Optional[torch.Tensor] = None,
                  beta: float = 0.0) -> torch.Tensor:
    """Per-token rewards ``[B, R]``: the mark on each row's last real token, minus ``beta·kl`` on
    every real token (when ``kl`` is given). On ``mask``'s device."""
    B, R = mask.shape
    rewards = torch.zeros(B, R, dtype=torch.float32, device=mask.device)
    last = mask.sum(1) - 1  # (B,) index of the last real token
    rewards[torch.arange(B, device=mask.device), last.clamp(min=0)] = marks.to(mask.device).float()
    if kl is not None and beta > 0:
        rewards = rewards - beta * kl.float()
    return rewards * mask


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> float:
    """``1 − Var[returns − values] / Var[returns]`` over real tokens: 1 is a perfect critic, 0 no better
    than a constant."""
    v, r = values[mask].double(), returns[mask].double()
    var = r.var()
    return float("nan") if var == 0 else float(1 - (r - v).var() / var)


def train_ppo(model, tokenizer, task: AdditionTask, config: PPOConfig = PPOConfig(), *,
              critic: Optional[ValueModel] = None, progress: bool = True,
              time_guard: Optional[float] = None, stop_at_accuracy: Optional[float] = None) -> dict:
    """Train ``model`` in place with PPO; return the history and the trained critic.

    Runs on the device of ``model``'s parameters (the critic and the reference follow it).
    Each history entry has ``step``, ``samples``, ``seconds`` and the step's ``reward`` (mean
    mark), ``clip_frac``, ``approx_kl`` (between the sampling and the updated policy),
    ``kl_ref`` (mean per-token k3 to the reference), ``explained_variance`` of the critic
    (measured on the step's fresh rollouts, before the critic trains on them), ``entropy`` (of
    the sampled tokens' distributions, per token), ``response_length``, ``value_loss`` and
    ``policy_loss``; every ``eval_every`` steps also ``accuracy`` (greedy, held-out). During the
    critic warm-up the policy's statistics are NaN. The result also holds the trained
    ``critic`` and the frozen ``reference``.
    """
    check_choice(config.kl_kind, "kl_kind", KL_KINDS)
    heldout = task.heldout[: config.eval_size]
    device = next(model.parameters()).device
    reference = frozen_copy(model)
    critic = (critic or ValueModel.from_policy(model)).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    critic_opt = torch.optim.Adam(critic.parameters(), lr=config.critic_lr)
    batches = task.stream(config.batch_size, seed=config.seed)
    torch.manual_seed(config.seed)

    def evaluate() -> dict:
        return {"accuracy": accuracy(model, tokenizer, heldout)}

    history = [{"step": 0, "samples": 0, "seconds": 0.0, **evaluate()}]
    samples, train_seconds = 0, 0.0
    bar = tqdm(range(1, config.steps + 1), desc="ppo", disable=not progress)
    for step in bar:
        t0 = time.perf_counter()
        problems = next(batches)
        ro = generate(model, tokenizer, [p.prompt for p in problems], temperature=config.temperature,
                      max_new_tokens=config.max_new_tokens, seed=config.seed * 1_000_003 + step,
                      compute_logp=False)
        marks = torch.tensor(verify_batch(ro.texts, problems, no_answer_penalty=config.no_answer_penalty),
                             device=device)
        mask = ro.response_mask
        with torch.no_grad():
            old_logp = response_logprobs(model, ro)  # (B, R)
            ref_logp = response_logprobs(reference, ro)
            old_values = critic(ro)  # (B, R)
            kl_reward = kl_estimate(old_logp, ref_logp, kind=config.kl_kind) * mask
            rewards = token_rewards(marks, mask, kl_reward if config.kl_in_reward else None, config.beta)
            advantages, returns = gae(rewards, old_values, gamma=config.gamma, lam=config.lam, mask=mask)
            if config.whiten_advantages:
                advantages = whiten(advantages, mask)
        gen = torch.Generator().manual_seed(config.seed * 1_000_003 + step)
        stats = _update(model, critic, opt, critic_opt, ro, old_logp, ref_logp, old_values,
                        advantages, returns, config, train_policy=step > config.critic_warmup,
                        generator=gen)
        samples += len(problems)
        train_seconds += time.perf_counter() - t0
        entry = {
            "step": step, "samples": samples, "seconds": train_seconds,
            "reward": marks.mean().item(),
            "kl_ref": masked_mean(kl_estimate(old_logp, ref_logp, kind="k3"), mask).item(),
            "explained_variance": explained_variance(old_values, returns, mask),
            "response_length": ro.lengths.float().mean().item(),
            **stats,
        }
        stop = evaluate_and_stop(entry, step=step, steps=config.steps, eval_every=config.eval_every,
                                 seconds=train_seconds, evaluate=evaluate, time_guard=time_guard,
                                 stop_at_accuracy=stop_at_accuracy, bar=bar)
        history.append(entry)
        if stop:
            break
    model.eval()
    critic.eval()
    return {"history": history, "config": asdict(config), "samples": samples,
            "wall_seconds": train_seconds, "critic": critic, "reference": reference}


def _update(model, critic, opt, critic_opt, ro, old_logp, ref_logp, old_values, advantages, returns,
            config: PPOConfig, *, train_policy: bool, generator: torch.Generator) -> dict:
    """``epochs`` passes of clipped policy updates and ``critic_epochs`` passes of value regression,
    each pass over the rollout in ``minibatches`` shuffled minibatches."""
    nan = float("nan")
    logs = {"policy_loss": [], "value_loss": [], "clip_frac": [], "approx_kl": [], "entropy": []}
    critic_epochs = config.epochs if config.critic_epochs is None else config.critic_epochs
    model.train(train_policy)
    critic.train()
    for epoch in range(max(config.epochs if train_policy else 0, critic_epochs)):
        for idx in torch.randperm(len(ro), generator=generator).chunk(config.minibatches):
            sub = ro.select(idx)
            mask = sub.response_mask
            if train_policy and epoch < config.epochs:
                logits = _response_logits(model, sub)  # (n, R, V), already divided by the temperature
                logp = token_logprobs(logits, sub.response_ids) * mask
                out = ppo_clip_loss(logp, old_logp[idx], advantages[idx], mask, clip_eps=config.clip_eps)
                loss = out.loss
                if not config.kl_in_reward and config.beta > 0:
                    loss = loss + config.beta * aggregate(kl_estimate(logp, ref_logp[idx], kind="k3"), mask)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if config.max_grad_norm is not None:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
                opt.step()
                with torch.no_grad():
                    probs = torch.softmax(logits.detach(), dim=-1)
                    entropy = -(probs * torch.log(probs.clamp_min(1e-12))).sum(-1)  # (n, R)
                logs["policy_loss"].append(out.loss.item())
                logs["clip_frac"].append(out.clip_frac.item())
                logs["approx_kl"].append(out.approx_kl.item())
                logs["entropy"].append(masked_mean(entropy, mask).item())
            if epoch < critic_epochs:
                values = critic(sub)
                vloss = value_loss(values, old_values[idx], returns[idx], mask, clip_eps=config.value_clip_eps)
                critic_opt.zero_grad(set_to_none=True)
                vloss.backward()
                if config.max_grad_norm is not None:
                    torch.nn.utils.clip_grad_norm_(critic.parameters(), config.max_grad_norm)
                critic_opt.step()
                logs["value_loss"].append(vloss.item())
    return {k: (sum(v) / len(v) if v else nan) for k, v in logs.items()}


def _response_logits(model, ro: Rollout) -> torch.Tensor:
    logits = response_forward(model, ro.prompt_ids, ro.prompt_mask, ro.response_ids, ro.response_mask)
    return logits / ro.temperature if ro.temperature != 1.0 else logits
