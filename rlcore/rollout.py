"""Rollouts: sample answers with ``model.generate`` and turn them into RL tensors.

A rollout holds, for ``B`` prompts (one row per sampled answer):

* ``prompt_ids [B, P]`` left-padded prompts and their ``prompt_mask``;
* ``response_ids [B, R]`` the sampled tokens, right-padded after ``<eos>``;
* ``response_mask [B, R]`` True on real response tokens, the ``<eos>`` included (trailing
  padding, the convention of every ``rlcore`` function);
* ``terminated [B]`` True where the answer ended with ``<eos>`` — an episode that *ended*;
  False where it hit ``max_new_tokens`` — *truncated*, cut by a time limit;
* ``logp [B, R]`` the log-probability of each sampled token under the sampling distribution
  (the model's logits divided by the temperature), from :func:`rlcore.token_logprobs`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch

from .tokens import token_logprobs

__all__ = ["Rollout", "generate", "response_logprobs", "response_logits", "response_forward"]


@dataclass
class Rollout:
    prompt_ids: torch.Tensor  # (B, P) long, left-padded
    prompt_mask: torch.Tensor  # (B, P) bool
    response_ids: torch.Tensor  # (B, R) long, right-padded
    response_mask: torch.Tensor  # (B, R) bool, eos included
    terminated: torch.Tensor  # (B,) bool
    logp: torch.Tensor  # (B, R) float32, 0 on padding
    texts: list[str] = field(default_factory=list)  # decoded responses, special tokens removed
    temperature: float = 1.0

    @property
    def truncated(self) -> torch.Tensor:
        """(B,) True where the answer was cut at ``max_new_tokens`` without ``<eos>``."""
        return ~self.terminated

    @property
    def lengths(self) -> torch.Tensor:
        """(B,) number of real response tokens (``<eos>`` included)."""
        return self.response_mask.sum(1)

    def __len__(self) -> int:
        return self.response_ids.shape[0]

    def select(self, idx: torch.Tensor) -> "Rollout":
        """The rows ``idx`` (a 1-D index tensor) as a new rollout, e.g. a minibatch."""
        return Rollout(self.prompt_ids[idx], self.prompt_mask[idx], self.response_ids[idx],
                       self.response_mask[idx], self.terminated[idx], self.logp[idx],
                       [self.texts[i] for i in idx.tolist()], self.temperature)

    @staticmethod
    def cat(parts: Sequence["Rollout"]) -> "Rollout":
        """Stack rollouts row-wise: prompts left-padded and responses right-padded to common widths."""
        parts = list(parts)
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


def _position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that skip left padding, as ``generate`` computes them: (B, L)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def response_forward(model, prompt_ids, prompt_mask, response_ids, response_mask):
    """One forward pass over prompt + response; returns the logits that score each response
    token, ``[B, R, V]`` (a view: the logit at position ``P - 1 + t`` predicts response token t)."""
    input_ids = torch.cat([prompt_ids, response_ids], dim=1)  # (B, P + R)
    attention = torch.cat([prompt_mask, response_mask], dim=1).long()  # (B, P + R)
    out = model(input_ids=input_ids, attention_mask=attention, position_ids=_position_ids(attention))
    P, R = prompt_ids.shape[1], response_ids.shape[1]
    return out.logits[:, P - 1 : P - 1 + R]  # (B, R, V)


def response_logits(model, rollout: Rollout, *, temperature: Optional[float] = None) -> torch.Tensor:
    """The logits that score every response token, divided by ``temperature`` (default: the
    rollout's, so they give the sampling distribution): ``[B, R, V]``, with gradient."""
    temperature = rollout.temperature if temperature is None else temperature
    logits = response_forward(model, rollout.prompt_ids, rollout.prompt_mask,
                              rollout.response_ids, rollout.response_mask)  # (B, R, V)
    return logits / temperature if temperature != 1.0 else logits


def response_logprobs(model, rollout: Rollout, *, temperature: Optional[float] = None) -> torch.Tensor:
    """``log π(y_t | x, y_<t)`` of every response token under ``model`` (with gradient), ``[B, R]``,
    0 on padding. Logits are divided by ``temperature`` (default: the rollout's)."""
    logits = response_logits(model, rollout, temperature=temperature)  # (B, R, V)
    logp = token_logprobs(logits, rollout.response_ids)  # (B, R)
    return logp * rollout.response_mask


@torch.no_grad()
def generate(
    model,
    tokenizer,
    prompts: Sequence[str],
    *,
    max_new_tokens: int = 12,
    temperature: float = 1.0,
    greedy: bool = False,
    top_k: Optional[int] = None,
    top_p: Optional[float] = None,
    seed: Optional[int] = None,
    compute_logp: bool = True,
) -> Rollout:
    """Sample one answer per prompt with ``model.generate`` and package it as a :class:`Rollout`.

    Args:
      model, tokenizer: a causal LM and its tokenizer (left padding).
      prompts: ``B`` prompt strings (repeat a prompt to sample a group of answers).
      max_new_tokens: the time limit; answers that reach it are truncated.
      temperature: sampling temperature (> 0); ignored when ``greedy``.
      greedy: take the most likely token at each step (for evaluation).
      top_k, top_p: off by default (pure sampling from the model's distribution).
      seed: seeds torch's generator before sampling, for reproducible rollouts.
      compute_logp: also compute ``logp`` with one extra forward pass.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    device = next(model.parameters()).device
    enc = tokenizer(list(prompts), return_tensors="pt", padding=True, add_special_tokens=True)
    prompt_ids = enc["input_ids"].to(device)  # (B, P)
    prompt_mask = enc["attention_mask"].to(device).bool()  # (B, P)
    if seed is not None:
        torch.manual_seed(seed)
    was_training = model.training
    model.eval()
    sampling = {} if greedy else dict(temperature=temperature, top_k=top_k or 0, top_p=top_p or 1.0)
    out = model.generate(
        input_ids=prompt_ids,
        attention_mask=prompt_mask.long(),
        max_new_tokens=max_new_tokens,
        do_sample=not greedy,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **sampling,
    )
    response_ids = out[:, prompt_ids.shape[1]:]  # (B, R)
    is_eos = response_ids == tokenizer.eos_token_id  # (B, R)
    terminated = is_eos.any(dim=1)  # (B,)
    # Real tokens: everything up to and including the first <eos>.
    after_eos = (is_eos.long().cumsum(dim=1) - is_eos.long()) > 0  # (B, R)
    response_mask = ~after_eos
    response_ids = torch.where(response_mask, response_ids, torch.full_like(response_ids, tokenizer.pad_token_id))
    texts = tokenizer.batch_decode(torch.where(response_mask & ~is_eos, response_ids,
                                               torch.full_like(response_ids, tokenizer.pad_token_id)),
                                   skip_special_tokens=True)
    rollout = Rollout(prompt_ids, prompt_mask, response_ids, response_mask, terminated,
                      torch.zeros(response_ids.shape, dtype=torch.float32, device=device),
                      texts, 1.0 if greedy else float(temperature))
    if compute_logp:
        rollout.logp = response_logprobs(model, rollout).float()
    model.train(was_training)
    return rollout
