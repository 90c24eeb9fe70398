r"""DPO on the fifth grader: preference pairs judged by the verifier, offline or online.

Direct Preference Optimization needs no reward model and no sampling *during the loss*: it
trains on pairs ``(x, y_w, y_l)`` where answer ``y_w`` is preferred to ``y_l`` for prompt ``x``.
Here the pairs come from the fifth grader's own answers, judged by the verifier: for a problem,
sample ``samples_per_prompt`` answers; a right one (mark 1) is preferred to a wrong one (mark
0, or the no-answer penalty) to the *same* problem. A problem whose answers all got the same
mark gives no pair.

With the sequence log-probabilities :math:`\log\pi(y \mid x) = \sum_t \log\pi(y_t \mid x, y_{<t})`
(real tokens only, ``<eos>`` included) under the policy and under the frozen reference, one step
minimises :func:`rlcore.dpo_loss` averaged over ``pairs_per_step`` pairs, e.g. (``"sigmoid"``)

.. math::

    L(\theta) = -\log\sigma\Big(\beta\big[\log\tfrac{\pi_\theta(y_w\mid x)}{\pi_\text{ref}(y_w\mid x)}
                                        - \log\tfrac{\pi_\theta(y_l\mid x)}{\pi_\text{ref}(y_l\mid x)}\big]\Big).

Two ways to get the pairs (``DPOConfig.online``):

* **offline** (``online=False``): sample one fixed set of pairs from the starting model before
  training (``offline_pairs`` of them, by default ``steps × pairs_per_step``: every pair is used
  once) and cycle through it — the usual DPO on a static preference dataset;
* **online** (``online=True``, iterated DPO): every ``resample_every`` steps, throw the pairs
  away and sample fresh ones from the *current* policy, so the pairs follow the policy's own
  mistakes. The reference stays the starting model.

References: Rafailov et al., "Direct Preference Optimization: Your Language Model is Secretly a
Reward Model", NeurIPS 2023, https://arxiv.org/abs/2305.18290; Azar et al., "A General
Theoretical Paradigm to Understand Learning from Human Preferences" (IPO), 2023; Xu et al.,
"Some things are more CRINGE than others: iterative preference optimization with the pairwise
cringe loss", 2023, and Guo et al., "Direct Language Model Alignment from Online AI Feedback",
2024 (iterated / online DPO).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Optional, Sequence

import torch
from tqdm import tqdm

from ._checks import check_choice, check_group_size, check_positive, flag_tensor, float_tensor
from .evaluation import accuracy, evaluate_and_stop
from .grpo import frozen_copy
from .losses import DPO_LOSS_TYPES, dpo_loss
from .rollout import Rollout, generate, response_logprobs
from .tasks import AdditionTask, Problem, verify_batch

__all__ = [
    "DPOConfig",
    "PreferencePairs",
    "preference_pairs",
    "sequence_logprobs",
    "pair_logprobs",
    "sample_pairs",
    "train_dpo",
]


@dataclass
class DPOConfig:
    """Hyper-parameters of :func:`train_dpo`.

    One step is one gradient step on ``pairs_per_step`` pairs. Pairs are made by sampling
    ``samples_per_prompt`` answers to each of ``prompts_per_round`` problems and matching right
    with wrong answers (:func:`preference_pairs`); rounds repeat until there are enough pairs.
    ``beta``, ``loss_type`` and ``label_smoothing`` go to :func:`rlcore.dpo_loss`. ``online``
    chooses between re-sampling from the current policy every ``resample_every`` steps and one
    fixed set of ``offline_pairs`` pairs from the starting model.
    """

    steps: int = 100
    pairs_per_step: int = 32  # pairs in one gradient step
    samples_per_prompt: int = 8  # answers sampled per problem to build pairs
    prompts_per_round: int = 32  # problems per sampling round (rounds repeat until there are enough pairs)
    max_pairs_per_prompt: Optional[int] = None  # None: min(#right, #wrong), each answer used once
    lr: float = 1e-4
    beta: float = 0.1
    loss_type: str = "sigmoid"  # "sigmoid" (DPO), "ipo", "hinge" (TRL's names)
    label_smoothing: float = 0.0
    online: bool = True  # True: re-sample pairs from the current policy; False: one fixed set
    resample_every: int = 1  # online: steps between re-sampling rounds
    offline_pairs: Optional[int] = None  # offline: size of the fixed set (None: steps * pairs_per_step)
    temperature: float = 1.0
    max_new_tokens: int = 12
    no_answer_penalty: float = 0.1
    eval_every: int = 10
    eval_size: int = 500
    kl_size: int = 128  # held-out prompts whose sampled answers estimate KL(π ‖ π_ref) at each eval
    probe_prompts: int = 64  # held-out prompts whose reference pairs are tracked at each eval (0: off)
    seed: int = 0


@dataclass
class PreferencePairs:
    """``K`` preference pairs: row ``k`` of ``chosen`` and of ``rejected`` answer the same problem.

    ``chosen`` and ``rejected`` are :class:`~rlcore.rollout.Rollout` objects with identical
    ``prompt_ids`` row by row; ``ref_chosen_logps``/``ref_rejected_logps`` (``[K]``) are the
    sequence log-probs under the reference, computed once when the pairs are made.
    """

    chosen: Rollout
    rejected: Rollout
    ref_chosen_logps: torch.Tensor  # (K,)
    ref_rejected_logps: torch.Tensor  # (K,)
    problems: list[Problem]

    def __len__(self) -> int:
        return len(self.chosen)

    def select(self, idx: torch.Tensor) -> "PreferencePairs":
        """The pairs ``idx`` (a 1-D index tensor), e.g. a minibatch."""
        return PreferencePairs(self.chosen.select(idx), self.rejected.select(idx),
                               self.ref_chosen_logps[idx], self.ref_rejected_logps[idx],
                               [self.problems[i] for i in idx.tolist()])

    @staticmethod
    def cat(parts: Sequence["PreferencePairs"]) -> "PreferencePairs":
        """Concatenate sets of pairs (responses right-padded to a common width)."""
        parts = list(parts)
        return PreferencePairs(_cat_rollouts([p.chosen for p in parts]), _cat_rollouts([p.rejected for p in parts]),
                               torch.cat([p.ref_chosen_logps for p in parts]),
                               torch.cat([p.ref_rejected_logps for p in parts]),
                               [q for p in parts for q in p.problems])


def preference_pairs(rewards: torch.Tensor, group_size: int, *, max_pairs_per_prompt: Optional[int] = None,
                     generator: Optional[torch.Generator] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Pair right answers with wrong ones to the same problem.

    The rewards are flat and group-contiguous (``N = prompts × group_size``, as in GRPO). In each
    group, an answer is *right* when its mark is 1 (reward > 0.5) and *wrong* when its mark is
    ≤ 0 (a wrong number, or the no-answer penalty). The right and the wrong answers are shuffled
    (with ``generator``; kept in order when it is ``None``) and matched one to one, so a group
    with ``n_w`` right and ``n_l`` wrong answers gives ``min(n_w, n_l)`` pairs (at most
    ``max_pairs_per_prompt``) and no answer appears in two pairs. A group whose answers are all
    right or all wrong gives none: there is nothing to prefer.

    Args:
      rewards: ``[N]`` the verifier's marks, ``group_size`` answers per problem, each group contiguous.
      group_size: answers per problem (≥ 2).
      max_pairs_per_prompt: cap on the pairs one problem may give (``None``: no cap).
      generator: a ``torch.Generator`` for the shuffle.

    Returns:
      ``(chosen, rejected)``: two ``[K]`` long tensors of indices into ``rewards``; pair ``k`` is
      ``rewards[chosen[k]] = 1`` and ``rewards[rejected[k]] ≤ 0`` from the same group, groups in
      order.
    """
    rewards = float_tensor(rewards, "rewards", ndim=1)
    check_group_size(group_size, rewards.shape[0])
    if max_pairs_per_prompt is not None and (isinstance(max_pairs_per_prompt, bool)
                                             or not isinstance(max_pairs_per_prompt, int)
                                             or max_pairs_per_prompt < 1):
        raise ValueError(f"max_pairs_per_prompt must be a positive int or None, got {max_pairs_per_prompt!r}")
    chosen, rejected = [], []
    for g, marks in enumerate(rewards.view(-1, group_size)):  # (G,) one problem's marks
        right = torch.nonzero(marks > 0.5).flatten()
        wrong = torch.nonzero(marks <= 0.0).flatten()
        if generator is not None:
            right = right[torch.randperm(len(right), generator=generator)]
            wrong = wrong[torch.randperm(len(wrong), generator=generator)]
        k = min(len(right), len(wrong))
        if max_pairs_per_prompt is not None:
            k = min(k, max_pairs_per_prompt)
        chosen.append(g * group_size + right[:k])
        rejected.append(g * group_size + wrong[:k])
    return torch.cat(chosen).long(), torch.cat(rejected).long()


def sequence_logprobs(logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    r"""The log-probability of whole answers: :math:`\log\pi(y \mid x) = \sum_t m_t \log\pi(y_t \mid x, y_{<t})`.

    Args:
      logp: ``[B, T]`` per-token log-probs (e.g. from :func:`rlcore.rollout.response_logprobs`).
      mask: ``[B, T]`` bool, True on real tokens (``<eos>`` included).

    Returns:
      ``[B]`` the sum over each row's real tokens (differentiable when ``logp`` is).
    """
    logp = float_tensor(logp, "logp", ndim=2)
    m = flag_tensor(mask, "mask", logp.shape)
    return torch.where(m, logp, torch.zeros((), dtype=logp.dtype, device=logp.device)).sum(dim=1)


def pair_logprobs(model, pairs: PreferencePairs) -> tuple[torch.Tensor, torch.Tensor]:
    """Sequence log-probs ``(chosen [K], rejected [K])`` of the pairs under ``model``, in one
    forward pass over the ``2K`` answers (TRL's "concatenated forward"), at temperature 1.
    Carries the gradient when ``model`` does."""
    both = _cat_rollouts([pairs.chosen, pairs.rejected])  # (2K, R)
    logp = response_logprobs(model, both, temperature=1.0)  # (2K, R)
    seq = sequence_logprobs(logp, both.response_mask)  # (2K,)
    K = len(pairs)
    return seq[:K], seq[K:]


@torch.no_grad()
def sample_pairs(model, tokenizer, problems: Sequence[Problem], *, reference, samples_per_prompt: int = 8,
                 temperature: float = 1.0, max_new_tokens: int = 12, no_answer_penalty: float = 0.1,
                 max_pairs_per_prompt: Optional[int] = None, seed: int = 0) -> tuple[PreferencePairs, dict]:
    """Sample ``samples_per_prompt`` answers to each problem from ``model``, grade them, and pair
    right with wrong answers (:func:`preference_pairs`); score the pairs under ``reference``.

    Returns:
      ``(pairs, stats)``; ``stats`` has ``samples`` (answers generated), ``reward`` (their mean
      mark), ``right`` (fraction right) and ``prompts_with_pair`` (fraction of problems that
      gave at least one pair).
    """
    group = [p for p in problems for _ in range(samples_per_prompt)]  # each problem's answers contiguous
    ro = generate(model, tokenizer, [p.prompt for p in group], temperature=temperature,
                  max_new_tokens=max_new_tokens, seed=seed, compute_logp=False)
    rewards = torch.tensor(verify_batch(ro.texts, group, no_answer_penalty=no_answer_penalty))  # (N,)
    gen = torch.Generator().manual_seed(seed)
    chosen, rejected = preference_pairs(rewards, samples_per_prompt, max_pairs_per_prompt=max_pairs_per_prompt,
                                        generator=gen)
    pairs = PreferencePairs(ro.select(chosen), ro.select(rejected), torch.zeros(len(chosen)),
                            torch.zeros(len(chosen)), [group[i] for i in chosen.tolist()])
    if len(pairs):
        pairs.ref_chosen_logps, pairs.ref_rejected_logps = pair_logprobs(reference, pairs)
    marks = rewards.view(-1, samples_per_prompt)
    stats = {
        "samples": len(group),
        "reward": rewards.mean().item(),
        "right": (rewards > 0.5).float().mean().item(),
        "prompts_with_pair": ((marks > 0.5).any(1) & (marks <= 0).any(1)).float().mean().item(),
    }
    return pairs, stats


def train_dpo(model, tokenizer, task: AdditionTask, config: DPOConfig = DPOConfig(), *,
              progress: bool = True, time_guard: Optional[float] = None,
              stop_at_accuracy: Optional[float] = None) -> dict:
    """Train ``model`` in place with DPO on verifier-judged pairs; return the history.

    The reference is a frozen copy of ``model`` as it is when called. Each history entry has
    ``step``, ``samples`` (answers generated so far, the offline set included), ``seconds``
    (training wall time, evaluations excluded) and, for the step's batch of pairs *before* the
    update: ``loss``; ``reward_accuracy`` (fraction of pairs whose implicit reward
    β log π/π_ref is higher for the chosen answer); ``margin`` (mean chosen minus rejected
    implicit reward); ``chosen_reward``, ``rejected_reward``; ``chosen_logp``, ``rejected_logp``
    (mean sequence log-prob under the policy); ``pairs`` (pairs available); and, when the step
    sampled, ``sample_reward`` (mean mark of the fresh answers). Every ``eval_every`` steps also
    ``accuracy`` (greedy, held-out), ``kl`` (a Monte Carlo estimate of the sequence-level
    KL(π ‖ π_ref): the mean of log π(y) − log π_ref(y) over answers the policy samples for
    ``kl_size`` held-out prompts), and, with ``probe_prompts`` > 0, ``probe_chosen`` and
    ``probe_rejected``: the mean of log π(y) − log π_ref(y) over the chosen and the rejected
    answers of a fixed set of held-out pairs sampled from the reference — whether the policy
    raised or lowered the probability of right and of wrong answers it did not train on — and
    ``probe_reward_accuracy``, the fraction of those pairs the implicit reward orders right.
    """
    check_choice(config.loss_type, "loss_type", DPO_LOSS_TYPES)
    check_positive(config.beta, "beta")
    if config.samples_per_prompt < 2:
        raise ValueError(f"samples_per_prompt must be >= 2 to compare answers, got {config.samples_per_prompt}")
    if config.resample_every < 1:
        raise ValueError(f"resample_every must be >= 1, got {config.resample_every}")
    heldout = task.heldout[: config.eval_size]
    reference = frozen_copy(model)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    batches = task.stream(config.prompts_per_round, seed=config.seed)
    shuffle = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    rounds = iter(range(1, 10**9))

    def fill(policy, n_pairs: int) -> tuple[PreferencePairs, dict]:
        """Sampling rounds from ``policy`` until at least ``n_pairs`` pairs (at most 50 rounds)."""
        parts, samples, marks = [], 0, []
        for _ in range(50):
            pairs, stats = sample_pairs(policy, tokenizer, next(batches), reference=reference,
                                        samples_per_prompt=config.samples_per_prompt,
                                        temperature=config.temperature, max_new_tokens=config.max_new_tokens,
                                        no_answer_penalty=config.no_answer_penalty,
                                        max_pairs_per_prompt=config.max_pairs_per_prompt,
                                        seed=config.seed * 1_000_003 + next(rounds))
            parts.append(pairs)
            samples += stats["samples"]
            marks.append(stats["reward"])
            if sum(len(p) for p in parts) >= n_pairs:
                break
        return PreferencePairs.cat(parts), {"samples": samples, "sample_reward": sum(marks) / len(marks)}

    probe = None
    if config.probe_prompts > 0:
        probe, _ = sample_pairs(reference, tokenizer, task.heldout[: config.probe_prompts], reference=reference,
                                samples_per_prompt=config.samples_per_prompt, temperature=config.temperature,
                                max_new_tokens=config.max_new_tokens, no_answer_penalty=config.no_answer_penalty,
                                seed=config.seed * 1_000_003 + 999_999)

    def evaluate() -> dict:
        out = {"accuracy": accuracy(model, tokenizer, heldout)}
        out["kl"] = _sequence_kl(model, reference, tokenizer, task.heldout[: config.kl_size], config)
        if probe is not None and len(probe):
            with torch.no_grad():
                pc, pr = pair_logprobs(model, probe)
            chosen, rejected = pc - probe.ref_chosen_logps, pr - probe.ref_rejected_logps  # (K,) log π/π_ref
            out["probe_chosen"] = chosen.mean().item()
            out["probe_rejected"] = rejected.mean().item()
            out["probe_reward_accuracy"] = (chosen > rejected).float().mean().item()
        return out

    history = [{"step": 0, "samples": 0, "seconds": 0.0, **evaluate()}]
    samples, train_seconds = 0, 0.0
    pool, order, cursor = None, torch.zeros(0, dtype=torch.long), 0
    name = f"dpo[{'online' if config.online else 'offline'},{config.loss_type}]"
    bar = tqdm(range(1, config.steps + 1), desc=name, disable=not progress)
    for step in bar:
        t0 = time.perf_counter()
        entry = {"step": step}
        if config.online and (step - 1) % config.resample_every == 0:  # fresh pairs from the current policy
            pool, stats = fill(model, config.pairs_per_step * config.resample_every)
            order, cursor = torch.zeros(0, dtype=torch.long), 0
        elif pool is None:  # offline: one fixed set, sampled once from the starting model
            want = config.offline_pairs or config.steps * config.pairs_per_step
            pool, stats = fill(model, want)
            pool = pool.select(torch.arange(min(want, len(pool))))
        else:
            stats = None
        if stats is not None:
            samples += stats["samples"]
            entry["sample_reward"] = stats["sample_reward"]
        if cursor + config.pairs_per_step > len(order):  # a new pass over the pool, freshly shuffled
            order, cursor = torch.randperm(len(pool), generator=shuffle), 0
        idx = order[cursor:cursor + config.pairs_per_step]
        cursor += config.pairs_per_step
        if len(idx):  # no pair at all (every answer right, or every one wrong): nothing to learn from
            entry.update(_update(model, opt, pool.select(idx), config))
        entry["pairs"] = len(pool)
        train_seconds += time.perf_counter() - t0
        entry["samples"], entry["seconds"] = samples, train_seconds
        stop = evaluate_and_stop(entry, step=step, steps=config.steps, eval_every=config.eval_every,
                                 seconds=train_seconds, evaluate=evaluate, time_guard=time_guard,
                                 stop_at_accuracy=stop_at_accuracy, bar=bar,
                                 show=(("acc", "accuracy"), ("margin", "margin")))
        history.append(entry)
        if stop:
            break
    model.eval()
    return {"history": history, "config": asdict(config), "samples": samples, "wall_seconds": train_seconds,
            "reference": reference}


def _update(model, opt, batch: PreferencePairs, config: DPOConfig) -> dict:
    """One gradient step of the DPO loss on a batch of pairs; statistics from before the step."""
    model.train()
    chosen_logps, rejected_logps = pair_logprobs(model, batch)  # (K,), (K,) with gradient
    out = dpo_loss(chosen_logps, rejected_logps, batch.ref_chosen_logps, batch.ref_rejected_logps,
                   beta=config.beta, loss_type=config.loss_type, label_smoothing=config.label_smoothing)
    loss = out.losses.mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    margin = out.chosen_rewards - out.rejected_rewards  # (K,)
    return {
        "loss": loss.item(),
        "reward_accuracy": (margin > 0).float().mean().item(),
        "margin": margin.mean().item(),
        "chosen_reward": out.chosen_rewards.mean().item(),
        "rejected_reward": out.rejected_rewards.mean().item(),
        "chosen_logp": chosen_logps.detach().mean().item(),
        "rejected_logp": rejected_logps.detach().mean().item(),
    }


@torch.no_grad()
def _sequence_kl(model, reference, tokenizer, problems: Sequence[Problem], config: DPOConfig) -> float:
    """Mean of log π(y) − log π_ref(y) over one answer per problem sampled from π (temperature 1):
    an unbiased estimate of the sequence-level KL(π ‖ π_ref)."""
    if not problems:
        return 0.0
    ro = generate(model, tokenizer, [p.prompt for p in problems], max_new_tokens=config.max_new_tokens,
                  seed=config.seed + 77, compute_logp=False)
    logp = sequence_logprobs(response_logprobs(model, ro, temperature=1.0), ro.response_mask)
    ref_logp = sequence_logprobs(response_logprobs(reference, ro, temperature=1.0), ro.response_mask)
    return (logp - ref_logp).mean().item()


def _cat_rollouts(parts: Sequence[Rollout]) -> Rollout:
    """Stack rollouts row-wise; prompts are left-padded and responses right-padded to common widths."""
    P = max(r.prompt_ids.shape[1] for r in parts)
    R = max(r.response_ids.shape[1] for r in parts)

    def left(x, width, value):  # (B, w) -> (B, width), padding on the left
        return torch.nn.functional.pad(x, (width - x.shape[1], 0), value=value)

    def right(x, width, value):  # (B, w) -> (B, width), padding on the right
        return torch.nn.functional.pad(x, (0, width - x.shape[1]), value=value)

    pad_id = _pad_id(parts)
    return Rollout(
        torch.cat([left(r.prompt_ids, P, pad_id) for r in parts]),
        torch.cat([left(r.prompt_mask.long(), P, 0) for r in parts]).bool(),
        torch.cat([right(r.response_ids, R, pad_id) for r in parts]),
        torch.cat([right(r.response_mask.long(), R, 0) for r in parts]).bool(),
        torch.cat([r.terminated for r in parts]),
        torch.cat([right(r.logp, R, 0.0) for r in parts]),
        [t for r in parts for t in r.texts],
        parts[0].temperature,
    )


def _pad_id(parts: Sequence[Rollout]) -> int:
    """The id used on padded response positions (any masked-out id works; reuse the rollouts' own)."""
    for r in parts:
        padded = r.response_ids[~r.response_mask]
        if padded.numel():
            return int(padded[0])
    return 0
