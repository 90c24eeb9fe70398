"""The tokenizer, the tiny policy, rollouts and the shipped fifth grader."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

import rlcore
from rlcore.policy import FIFTH_GRADER_DIR, build_model, build_tokenizer, load_policy, load_tokenizer
from rlcore.rollout import generate, response_logprobs
from rlcore.tasks import AdditionTask

# The documented band for the shipped fifth grader's held-out accuracy (greedy decoding).
FIFTH_GRADER_BAND = (0.20, 0.50)


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


def test_tokenizer_is_a_real_fast_tokenizer(tokenizer):
    from transformers import PreTrainedTokenizerFast

    assert isinstance(tokenizer, PreTrainedTokenizerFast)
    enc = tokenizer("047+085=")
    assert enc["input_ids"][0] == tokenizer.bos_token_id
    assert len(enc["input_ids"]) == 1 + len("047+085=")  # one token per character
    assert tokenizer.decode(enc["input_ids"], skip_special_tokens=True) == "047+085="
    assert {tokenizer.pad_token, tokenizer.eos_token, tokenizer.bos_token} == {"<pad>", "<eos>", "<bos>"}


def test_tokenizer_round_trips_through_save_pretrained(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path)
    again = load_tokenizer(tmp_path)
    text = "2310#132"
    assert again(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert again.pad_token_id == tokenizer.pad_token_id and again.padding_side == "left"


def test_shipped_tokenizer_matches_the_builder(tokenizer):
    shipped = load_tokenizer()
    assert shipped.get_vocab() == tokenizer.get_vocab()


def test_unknown_characters_map_to_unk(tokenizer):
    ids = tokenizer("1x2", add_special_tokens=False)["input_ids"]
    assert ids[1] == tokenizer.unk_token_id


@pytest.fixture(scope="module")
def policy():
    return load_policy()


def test_shipped_weights_are_safetensors_only():
    files = {p.name for p in FIFTH_GRADER_DIR.iterdir()}
    assert "model.safetensors" in files
    assert not {f for f in files if f.endswith((".bin", ".pt", ".pkl"))}


def test_rollout_masks_and_logprobs(policy):
    model, tok = policy
    task = AdditionTask()
    prompts = [p.prompt for p in task.heldout[:16]]
    ro = generate(model, tok, prompts, max_new_tokens=12, seed=0)
    B, R = ro.response_ids.shape
    assert B == 16 and R <= 12
    mask = ro.response_mask
    assert not (mask[:, 1:] & ~mask[:, :-1]).any(), "response mask must be trailing padding"
    is_eos = ro.response_ids == tok.eos_token_id
    assert torch.equal(ro.terminated, is_eos.any(1))
    # A terminated row's last real token is <eos>; padding after it is <pad>.
    last = mask.sum(1) - 1
    assert torch.all(is_eos[torch.arange(B), last] == ro.terminated)
    assert torch.all(ro.response_ids[~mask] == tok.pad_token_id)
    # log-probs: <= 0 on real tokens, 0 on padding, equal to a fresh forward pass.
    assert torch.all(ro.logp[mask] <= 0) and torch.all(ro.logp[~mask] == 0)
    again = response_logprobs(model, ro)
    torch.testing.assert_close(again.detach(), ro.logp, atol=1e-5, rtol=0)


def test_truncation_is_reported(policy):
    model, tok = policy
    ro = generate(model, tok, ["123+456="] * 4, max_new_tokens=2, seed=0)
    assert ro.response_ids.shape[1] == 2
    assert ro.truncated.all() and ro.response_mask.all()


def test_sampling_is_reproducible(policy):
    model, tok = policy
    prompts = ["123+456=", "999+001="] * 4
    a = generate(model, tok, prompts, seed=3)
    b = generate(model, tok, prompts, seed=3)
    assert torch.equal(a.response_ids, b.response_ids)


def test_logprobs_match_a_slow_per_token_loop(policy):
    """Each response token's log-prob equals log-softmax of a forward pass on its own prefix."""
    model, tok = policy
    ro = generate(model, tok, ["047+085=", "500+500="], seed=1)
    for b in range(2):
        for t in range(int(ro.lengths[b])):
            ids = torch.cat([ro.prompt_ids[b][ro.prompt_mask[b]], ro.response_ids[b, :t]])[None]
            with torch.no_grad():
                logits = model(input_ids=ids).logits[0, -1]
            expected = torch.log_softmax(logits.double(), -1)[ro.response_ids[b, t]]
            assert abs(ro.logp[b, t].item() - expected.item()) < 1e-4


def test_shipped_fifth_grader_scores_inside_the_band(policy):
    from rlcore.evaluation import accuracy

    model, tok = policy
    acc = accuracy(model, tok, AdditionTask().heldout)
    low, high = FIFTH_GRADER_BAND
    assert low <= acc <= high, f"shipped fifth grader's held-out accuracy {acc:.3f} is outside {FIFTH_GRADER_BAND}"


def test_default_path_never_touches_the_network(tmp_path):
    """Load and sample with the hub switched off and no network route: it must still work."""
    code = (
        "import rlcore\n"
        "from rlcore.policy import load_policy\n"
        "from rlcore.rollout import generate\n"
        "m, t = load_policy()\n"
        "print(generate(m, t, ['001+002='], greedy=True).texts[0])\n"
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_HOME=str(tmp_path),
               HTTPS_PROXY="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9")
    env.pop("RLCORE_HUB_MODEL", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert not any(tmp_path.iterdir()), "the default path wrote to the hub cache"


def test_hub_switch_is_honoured(tmp_path):
    """With the switch set, load_policy goes to the hub (which fails offline, proving the route).

    In a child process, so that HF_HUB_OFFLINE is set before huggingface_hub reads it at import
    (set later, it is ignored and the test would wait on the network), with a dead proxy besides."""
    code = (
        "from rlcore.policy import load_policy\n"
        "try:\n"
        "    load_policy()\n"
        "except Exception as e:\n"
        "    print('RAISED', type(e).__name__, e)\n"
    )
    env = dict(os.environ, RLCORE_HUB_MODEL="some-org/some-model", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               HF_HOME=str(tmp_path), HTTPS_PROXY="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("RAISED"), out.stdout
    assert "some-org/some-model" in out.stdout or "offline" in out.stdout.lower()


def test_build_model_is_a_llama_causal_lm(tokenizer):
    from transformers import LlamaForCausalLM

    model = build_model(tokenizer, seed=0)
    assert isinstance(model, LlamaForCausalLM)
    assert model.generation_config.top_k in (0, None) and model.generation_config.top_p == 1.0
    again = build_model(tokenizer, seed=0)
    for p, q in zip(model.parameters(), again.parameters()):
        assert torch.equal(p, q)


def test_tokenizer_files_name_a_class_every_transformers_knows(tmp_path):
    """transformers 5 saves its new class name, TokenizersBackend, which transformers 4 warns about
    on every load; the shipped files and save_tokenizer name PreTrainedTokenizerFast instead."""
    import json

    from rlcore.policy import FIFTH_GRADER_DIR, RUNNING_SUM_GRADER_DIR, TOKENIZER_DIR, load_tokenizer, save_tokenizer

    for folder in (TOKENIZER_DIR, FIFTH_GRADER_DIR, RUNNING_SUM_GRADER_DIR):
        config = json.loads((folder / "tokenizer_config.json").read_text())
        assert config["tokenizer_class"] == "PreTrainedTokenizerFast", folder
    tok = load_tokenizer()
    save_tokenizer(tok, tmp_path)
    assert json.loads((tmp_path / "tokenizer_config.json").read_text())["tokenizer_class"] == "PreTrainedTokenizerFast"
    again = load_tokenizer(tmp_path)
    assert again("047+085=")["input_ids"] == tok("047+085=")["input_ids"]
