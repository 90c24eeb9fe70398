r"""Preference pairs judged by the verifier: what DPO trains on.

For a problem, sample several answers; a right one (:func:`rlcore.tasks.is_right`) is preferred to
a wrong one (a wrong number or an empty blank) to the *same* problem. A problem whose answers all
got the same mark gives no pair. :func:`sample_pairs` samples, grades and pairs in one call, and
scores the pairs under a reference model; :func:`pair_logprobs` gives the sequence log-probs of
both answers of every pair in one forward pass (TRL's "concatenated forward").

Reference: Rafailov et al., "Direct Preference Optimization: Your Language Model is Secretly a
Reward Model", NeurIPS 2023, https://arxiv.org/abs/2305.18290.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from ._checks import check_group_size, flag_tensor, float_tensor
from .rollout import Rollout, generate, response_logprobs
from .tasks import Problem, is_right, verify_batch

__all__ = ["PreferencePairs", "preference_pairs", "sequence_logprobs", "pair_logprobs", "sample_pairs",
           "sequence_kl"]


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
        return PreferencePairs(Rollout.cat([p.chosen for p in parts]), Rollout.cat([p.rejected for p in parts]),
                               torch.cat([p.ref_chosen_logps for p in parts]),
                               torch.cat([p.ref_rejected_logps for p in parts]),
                               [q for p in parts for q in p.problems])


def preference_pairs(rewards: torch.Tensor, group_size: int, *, max_pairs_per_prompt: Optional[int] = None,
                     generator: Optional[torch.Generator] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Pair right answers with wrong ones to the same problem.

    The rewards are flat and group-contiguous (``N = prompts × group_size``, as in GRPO). In each
    group, an answer is *right* when its mark is 1 (:func:`~rlcore.tasks.is_right`) and *wrong* when its mark is
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
        right = torch.nonzero(is_right(marks)).flatten()
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
    both = Rollout.cat([pairs.chosen, pairs.rejected])  # (2K, R)
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
    rewards = torch.tensor(verify_batch(ro.texts, group, no_answer_penalty=no_answer_penalty),
                           device=ro.response_ids.device)  # (N,)
    gen = torch.Generator().manual_seed(seed)  # on the CPU: the shuffle is the same on every device
    chosen, rejected = preference_pairs(rewards, samples_per_prompt, max_pairs_per_prompt=max_pairs_per_prompt,
                                        generator=gen)
    zeros = torch.zeros(len(chosen), device=rewards.device)
    pairs = PreferencePairs(ro.select(chosen), ro.select(rejected), zeros, zeros.clone(), [group[i] for i in chosen.tolist()])
    if len(pairs):
        pairs.ref_chosen_logps, pairs.ref_rejected_logps = pair_logprobs(reference, pairs)
    marks = rewards.view(-1, samples_per_prompt)
    stats = {
        "samples": len(group),
        "reward": rewards.mean().item(),
        "right": is_right(rewards).float().mean().item(),
        "prompts_with_pair": (is_right(marks).any(1) & (marks <= 0).any(1)).float().mean().item(),
    }
    return pairs, stats


@torch.no_grad()
def sequence_kl(model, reference, tokenizer, problems: Sequence[Problem], *, max_new_tokens: int = 12,
                seed: int = 0) -> float:
    """Mean of log π(y) − log π_ref(y) over one answer per problem sampled from π (temperature 1):
    an unbiased estimate of the sequence-level KL(π ‖ π_ref)."""
    if not problems:
        return 0.0
    ro = generate(model, tokenizer, [p.prompt for p in problems], max_new_tokens=max_new_tokens,
                  seed=seed, compute_logp=False)
    logp = sequence_logprobs(response_logprobs(model, ro, temperature=1.0), ro.response_mask)
    ref_logp = sequence_logprobs(response_logprobs(reference, ro, temperature=1.0), ro.response_mask)
    return (logp - ref_logp).mean().item()


