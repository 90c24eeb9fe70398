"""Supervised fine-tuning: teach the tiny policy the answer format and *some* of the skill.

The fifth grader is deliberately a partial learner. We train on problems with worked targets
(scratch work, marker, answer) and stop as soon as held-out accuracy enters the band
``[stop_low, stop_high]`` — she knows the format and gets some sums right, but far from all.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional

import torch
from tqdm import tqdm

from .evaluation import accuracy
from .policy import PolicyConfig, build_model, build_tokenizer
from .tasks import Problem, Task

__all__ = ["SFTConfig", "sft_batch", "train_sft"]


@dataclass
class SFTConfig:
    steps: int = 3000
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    eval_every: int = 25
    eval_every_close: int = 5  # once accuracy passes close_to, evaluate this often
    close_to: float = 0.10
    eval_size: int = 500
    stop_low: float = 0.30
    stop_high: float = 0.45
    seed: int = 0


def sft_batch(tokenizer, problems: list[Problem]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Teacher-forcing tensors: ``input_ids``, ``attention_mask`` and ``labels`` (``-100`` on the
    prompt and padding, so only the response — scratch, marker, answer, ``<eos>`` — is learned)."""
    texts = [p.prompt + p.target for p in problems]
    enc = tokenizer(texts, return_tensors="pt", padding=True)
    ids, attn = enc["input_ids"], enc["attention_mask"]  # (B, L)
    eos = torch.full((ids.shape[0], 1), tokenizer.eos_token_id)
    ids = torch.cat([ids, eos], dim=1)  # (B, L+1)
    attn = torch.cat([attn, torch.ones_like(eos)], dim=1)
    labels = ids.clone()
    prompt_len = torch.tensor([len(p.prompt) + 1 for p in problems])  # +1 for <bos>
    # With left padding, row b's prompt ends at (pad count + prompt_len).
    pad = (attn == 0).sum(1)
    pos = torch.arange(ids.shape[1])[None, :]
    labels[pos < (pad + prompt_len)[:, None]] = -100
    return ids, attn, labels


def train_sft(task: Task, config: SFTConfig = SFTConfig(), *, model=None, tokenizer=None,
              policy: Optional[PolicyConfig] = None, device: str = "cpu", progress: bool = True) -> dict:
    """Train from scratch (or continue ``model``) until held-out accuracy enters the band.

    Returns a dict with the trained ``model``, ``tokenizer`` and the ``history`` of
    ``(step, accuracy)`` evaluations.
    """
    tokenizer = tokenizer or build_tokenizer()
    model = (model or build_model(tokenizer, policy, seed=config.seed)).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    batches = task.stream(config.batch_size, seed=config.seed)
    heldout = task.heldout[: config.eval_size]
    history = []
    start = time.perf_counter()
    bar = tqdm(range(1, config.steps + 1), desc="sft", disable=not progress)
    torch.manual_seed(config.seed)
    next_eval = config.eval_every
    for step in bar:
        ids, attn, labels = sft_batch(tokenizer, next(batches))
        model.train()
        pos = (attn.cumsum(-1) - 1).clamp(min=0)
        out = model(input_ids=ids.to(device), attention_mask=attn.to(device), position_ids=pos.to(device),
                    labels=labels.to(device))
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()
        if step == next_eval:
            acc = accuracy(model, tokenizer, heldout, max_new_tokens=task.max_new_tokens)
            history.append((step, acc))
            next_eval += config.eval_every_close if acc >= config.close_to else config.eval_every
            bar.set_postfix(loss=f"{out.loss.item():.3f}", acc=f"{acc:.2f}")
            if config.stop_low <= acc <= config.stop_high:
                break
    model.eval()
    return {"model": model, "tokenizer": tokenizer, "history": history,
            "wall_seconds": time.perf_counter() - start, "steps": step}
