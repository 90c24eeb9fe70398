"""GRPO: group-relative policy optimisation, with the variants readers know from TRL.

One step:

1. take ``prompts_per_step`` problems and sample ``group_size`` answers to each;
2. grade the blanks with the verifier;
3. turn each answer's reward into one advantage by comparing it with its own group
   (:func:`rlcore.group_advantages`, or :func:`rlcore.rloo_advantages`) — no critic;
4. broadcast that advantage to every token of the answer and take ``epochs`` passes of
   :func:`rlcore.ppo_clip_loss` over the batch (``minibatches`` per pass), optionally adding
   ``beta`` × the k3 estimate of KL(π ‖ π_ref) to the loss.

``loss_type`` picks the aggregation, as in TRL: ``"grpo"`` averages each answer's tokens, then
the answers (``seq-mean-token-mean``; long answers' tokens weigh less); ``"bnpo"``/``"dapo"``
average all tokens of the batch (``token-mean``); ``"dr_grpo"`` sums and divides by a constant
(``seq-mean-token-sum-norm``; no length bias). ``scale_rewards`` picks the std used to scale the
advantages: ``"group"`` (GRPO), ``"batch"``, or ``"none"`` (Dr. GRPO).

References: Shao et al. 2024 (GRPO); Liu et al. 2025 (Dr. GRPO); Yu et al. 2025 (DAPO);
Ahmadian et al. 2024 (RLOO).
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass
from typing import Optional

import torch
from tqdm import tqdm

from ._checks import check_choice
from .advantages import group_advantages, rloo_advantages
from .evaluation import accuracy, evaluate_and_stop
from .kl import kl_estimate
from .losses import ppo_clip_loss
from .masked import aggregate, masked_mean
from .rollout import Rollout, generate, response_logprobs
from .tasks import AdditionTask, verify_batch

__all__ = ["GRPOConfig", "train_grpo", "LOSS_TYPES", "SCALE_REWARDS", "grpo_advantages", "frozen_copy"]

#: TRL's ``loss_type`` names and the aggregation mode each one means.
LOSS_TYPES = {
    "grpo": "seq-mean-token-mean",
    "bnpo": "token-mean",
    "dapo": "token-mean",
    "dr_grpo": "seq-mean-token-sum-norm",
}
#: TRL's ``scale_rewards`` names and the ``group_advantages`` scale each one means.
SCALE_REWARDS = {"group": "std", "batch": "batch", "none": "none"}


@dataclass
class GRPOConfig:
    """One GRPO run. The defaults are the book's (tuned on the fifth grader): 16 problems × 8
    answers per step, and two passes over each batch in two minibatches, so three of every
    four updates are off-policy and the clip is live."""

    steps: int = 200
    prompts_per_step: int = 16
    group_size: int = 8
    lr: float = 1e-4
    loss_type: str = "grpo"
    scale_rewards: str = "group"
    baseline: str = "group"  # "group" (group mean) or "rloo" (leave-one-out mean)
    beta: float = 0.0  # weight of the k3 KL to the reference in the loss; 0 turns it off
    clip_eps: float = 0.2
    clip_eps_high: Optional[float] = None
    epochs: int = 2  # passes over each batch (TRL's num_iterations)
    minibatches: int = 2  # updates per pass
    temperature: float = 1.0
    max_new_tokens: int = 12
    no_answer_penalty: float = 0.1
    eval_every: int = 10
    eval_size: int = 500
    seed: int = 0


def grpo_advantages(rewards: torch.Tensor, config: GRPOConfig) -> torch.Tensor:
    """One advantage per answer, ``[N]``, from the flat group-contiguous rewards."""
    if config.baseline == "rloo":
        return rloo_advantages(rewards, config.group_size)
    return group_advantages(rewards, config.group_size, scale=SCALE_REWARDS[config.scale_rewards])


def train_grpo(model, tokenizer, task: AdditionTask, config: GRPOConfig = GRPOConfig(), *,
               progress: bool = True, time_guard: Optional[float] = None,
               stop_at_accuracy: Optional[float] = None) -> dict:
    """Train ``model`` in place with GRPO; return the history of logged statistics.

    Each history entry has ``step``, ``samples``, ``seconds`` (training wall time, evaluations
    excluded) and the step's ``reward``, ``zero_signal`` (fraction of groups whose answers all
    scored the same: their advantages are 0, so they teach nothing), ``all_right`` (the part of
    those groups whose answers were all right; the rest were all wrong or all empty),
    ``response_length``, ``clip_frac``, ``kl`` (mean per-token k3 to the reference; computed only
    when ``beta > 0``, else 0) and ``loss``; every ``eval_every`` steps also ``accuracy``
    (greedy, held-out).
    """
    check_choice(config.loss_type, "loss_type", LOSS_TYPES)
    check_choice(config.scale_rewards, "scale_rewards", SCALE_REWARDS)
    check_choice(config.baseline, "baseline", ("group", "rloo"))
    agg = LOSS_TYPES[config.loss_type]
    heldout = task.heldout[: config.eval_size]
    reference = frozen_copy(model)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    batches = task.stream(config.prompts_per_step, seed=config.seed)
    torch.manual_seed(config.seed)

    def evaluate() -> dict:
        return {"accuracy": accuracy(model, tokenizer, heldout)}

    history = [{"step": 0, "samples": 0, "seconds": 0.0, **evaluate()}]
    samples, train_seconds = 0, 0.0
    bar = tqdm(range(1, config.steps + 1), desc=f"grpo[{config.loss_type}]", disable=not progress)
    for step in bar:
        t0 = time.perf_counter()
        problems = [p for p in next(batches) for _ in range(config.group_size)]  # groups contiguous
        ro = generate(model, tokenizer, [p.prompt for p in problems], temperature=config.temperature,
                      max_new_tokens=config.max_new_tokens, seed=config.seed * 1_000_003 + step,
                      compute_logp=False)
        rewards = torch.tensor(verify_batch(ro.texts, problems, no_answer_penalty=config.no_answer_penalty))
        advantages = grpo_advantages(rewards, config)  # (N,) one per answer
        with torch.no_grad():
            old_logp = response_logprobs(model, ro)  # (N, R) the sampling policy
            ref_logp = response_logprobs(reference, ro) if config.beta > 0 else None
        stats = _update(model, opt, ro, advantages, old_logp, ref_logp, config, agg)
        samples += len(problems)
        train_seconds += time.perf_counter() - t0
        grouped = rewards.view(-1, config.group_size)
        entry = {
            "step": step, "samples": samples, "seconds": train_seconds,
            "reward": rewards.mean().item(),
            "zero_signal": (grouped.max(1).values == grouped.min(1).values).float().mean().item(),
            "all_right": (grouped == 1.0).all(1).float().mean().item(),
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
    return {"history": history, "config": asdict(config), "samples": samples, "wall_seconds": train_seconds}


def _update(model, opt, ro: Rollout, advantages, old_logp, ref_logp, config: GRPOConfig, agg: str) -> dict:
    """``epochs`` passes of clipped policy-gradient steps over the rollout, in ``minibatches``."""
    N = len(ro)
    order = torch.arange(N)
    logs = {"loss": [], "clip_frac": [], "kl": []}
    model.train()
    for _ in range(config.epochs):
        for idx in order.chunk(config.minibatches):
            sub = ro.select(idx)
            logp = response_logprobs(model, sub)  # (n, R) with gradient
            out = ppo_clip_loss(logp, old_logp[idx], advantages[idx], sub.response_mask,
                                clip_eps=config.clip_eps, clip_eps_high=config.clip_eps_high, agg=agg)
            loss = out.loss
            if ref_logp is not None:
                kl = kl_estimate(logp, ref_logp[idx], kind="k3")  # (n, R)
                loss = loss + config.beta * aggregate(kl, sub.response_mask, agg)
                logs["kl"].append(masked_mean(kl.detach(), sub.response_mask).item())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            logs["loss"].append(loss.item())
            logs["clip_frac"].append(out.clip_frac.item())
    return {k: (sum(v) / len(v) if v else 0.0) for k, v in logs.items()}


def frozen_copy(model):
    """A copy of ``model`` in eval mode with gradients off: the reference policy π_ref."""
    return copy.deepcopy(model).eval().requires_grad_(False)
