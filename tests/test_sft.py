"""rlcore.sft: the supervised start of each task's fifth grader, and the shipped graders themselves."""

from __future__ import annotations

import pytest
import torch

from rlcore.evaluation import accuracy
from rlcore.policy import FIFTH_GRADER_DIR, RUNNING_SUM_GRADER_DIR, PolicyConfig, build_tokenizer, load_policy
from rlcore.settings import POLICY_SETTINGS, SFT_SETTINGS, make_task
from rlcore.sft import SFTConfig, sft_batch, train_sft

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("name", ["addition", "running_sum"])
def test_sft_batch_learns_the_response_only(name):
    tokenizer = build_tokenizer()
    problems = make_task(name).heldout[:3]
    ids, attn, labels = sft_batch(tokenizer, problems)
    for b, p in enumerate(problems):
        learned = labels[b][labels[b] != -100].tolist()
        assert tokenizer.decode(learned[:-1]) .replace(" ", "") == p.target.replace(" ", "")
        assert learned[-1] == tokenizer.eos_token_id
        assert (attn[b] == 1).sum() == len(p.prompt) + 1 + len(p.target) + 1  # <bos>, prompt, response, <eos>


def test_a_few_sft_steps_lower_the_loss_on_running_sums():
    task = make_task("running_sum")
    config = SFTConfig(steps=30, eval_every=10_000, seed=0)
    result = train_sft(task, config, policy=PolicyConfig(max_position_embeddings=64), progress=False)
    model, tokenizer = result["model"], result["tokenizer"]
    assert model.config.max_position_embeddings == 64 and result["steps"] == 30
    ids, attn, labels = sft_batch(tokenizer, task.heldout[:32])
    pos = (attn.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        trained = model(input_ids=ids, attention_mask=attn, position_ids=pos, labels=labels).loss.item()
    assert trained < 0.8 * torch.log(torch.tensor(float(len(tokenizer)))).item()  # far below a uniform guess


@pytest.mark.parametrize("name, path", [("addition", FIFTH_GRADER_DIR), ("running_sum", RUNNING_SUM_GRADER_DIR)])
def test_each_shipped_grader_starts_in_its_band(name, path):
    """Each task's fifth grader knows the format and gets some answers right, far from all: the
    held-out accuracy it was saved at lies in the band its supervised start stopped in."""
    model, tokenizer = load_policy(path)
    task = make_task(name)
    band = SFT_SETTINGS[name]
    assert model.config.max_position_embeddings == POLICY_SETTINGS[name].max_position_embeddings
    acc = accuracy(model, tokenizer, task.heldout, max_new_tokens=task.max_new_tokens)
    assert band["stop_low"] - 0.05 <= acc <= band["stop_high"] + 0.05, acc
