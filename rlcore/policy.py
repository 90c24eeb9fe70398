"""The policy: a tiny Llama-style causal LM with a character-level tokenizer, both genuine
``transformers`` objects, and the shipped "fifth grader" checkpoint.

Everything here runs offline. The tokenizer is a :class:`transformers.PreTrainedTokenizerFast`
built from a ``tokenizers`` word-level model over single characters; the model is a
:class:`transformers.LlamaForCausalLM` built from a config (random init), small enough to train
on a laptop CPU in minutes. The fifth grader's weights ship inside the package as safetensors.

A reader with internet and a GPU can swap in a real hub model with one switch:
``load_policy(hub_model="Qwen/Qwen2.5-0.5B-Instruct")`` or the environment variable
``RLCORE_HUB_MODEL``. The default path never touches the network.
"""

from __future__ import annotations

import copy
import json
import os
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Union

import torch
from torch import nn

__all__ = [
    "ASSETS",
    "TOKENIZER_DIR",
    "FIFTH_GRADER_DIR",
    "RUNNING_SUM_GRADER_DIR",
    "CHARACTERS",
    "PolicyConfig",
    "build_tokenizer",
    "load_tokenizer",
    "build_model",
    "load_policy",
    "save_policy",
    "save_tokenizer",
    "HUB_MODEL_ENV",
    "ValueModel",
    "frozen_copy",
    "model_device",
]

ASSETS = Path(__file__).resolve().parent / "assets"
TOKENIZER_DIR = ASSETS / "tokenizer"
#: The addition task's fifth grader, shipped inside the package (safetensors).
FIFTH_GRADER_DIR = ASSETS / "fifth_grader"
#: The running-sum task's fifth grader (:class:`rlcore.tasks.RunningSumTask`), longer answers, 64 positions.
RUNNING_SUM_GRADER_DIR = ASSETS / "running_sum_grader"
HUB_MODEL_ENV = "RLCORE_HUB_MODEL"

# The alphabet: digits and the few symbols the task writes. Special tokens come first.
SPECIAL_TOKENS = {"pad": "<pad>", "bos": "<bos>", "eos": "<eos>", "unk": "<unk>"}
CHARACTERS = "0123456789+=#- "


def build_tokenizer():
    """A character-level :class:`~transformers.PreTrainedTokenizerFast` (every character one token).

    ``<bos>`` is prepended by the post-processor; ``<pad>``, ``<eos>`` and ``<unk>`` are special
    tokens; decoding fuses characters back into a string.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = list(SPECIAL_TOKENS.values())
    vocab = {tok: i for i, tok in enumerate(specials + list(CHARACTERS))}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=SPECIAL_TOKENS["unk"]))
    core.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    core.post_processor = processors.TemplateProcessing(
        single=f"{SPECIAL_TOKENS['bos']} $A",
        pair=f"{SPECIAL_TOKENS['bos']} $A $B",
        special_tokens=[(SPECIAL_TOKENS["bos"], vocab[SPECIAL_TOKENS["bos"]])],
    )
    core.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=SPECIAL_TOKENS["bos"],
        eos_token=SPECIAL_TOKENS["eos"],
        pad_token=SPECIAL_TOKENS["pad"],
        unk_token=SPECIAL_TOKENS["unk"],
        padding_side="left",
        model_max_length=64,
    )


def load_tokenizer(path: Union[str, Path] = TOKENIZER_DIR):
    """Load the shipped tokenizer with ``from_pretrained`` (built and saved by :func:`build_tokenizer`)."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast.from_pretrained(str(path))


@dataclass
class PolicyConfig:
    """Size of the tiny policy (a Llama-style decoder: RMSNorm, RoPE, SwiGLU)."""

    hidden_size: int = 64
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    intermediate_size: int = 192
    max_position_embeddings: int = 32


def build_model(tokenizer, config: Optional[PolicyConfig] = None, *, seed: int = 0):
    """A freshly initialised :class:`~transformers.LlamaForCausalLM` sized by ``config``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = config or PolicyConfig()
    hf_config = LlamaConfig(
        vocab_size=len(tokenizer),
        num_key_value_heads=cfg.num_attention_heads,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
        **asdict(cfg),
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(hf_config)
    _plain_sampling(model)
    return model


def _plain_sampling(model) -> None:
    """Sampling defaults: pure ancestral sampling at temperature 1 (no top-k, no top-p)."""
    gc = model.generation_config
    gc.do_sample = True
    gc.temperature = 1.0
    gc.top_k = 0
    gc.top_p = 1.0
    gc.pad_token_id = model.config.pad_token_id
    gc.bos_token_id = model.config.bos_token_id
    gc.eos_token_id = model.config.eos_token_id


@contextmanager
def _quiet_loading():
    """Hide transformers' weight-loading progress bar (noise in a notebook), then restore it."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def save_policy(model, tokenizer, path: Union[str, Path]) -> None:
    """Save weights as safetensors (no pickle) with the config and the tokenizer files."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(path), safe_serialization=True)
    save_tokenizer(tokenizer, path)


def save_tokenizer(tokenizer, path: Union[str, Path]) -> None:
    """``save_pretrained``, with the class named ``PreTrainedTokenizerFast`` in the config.

    transformers 5 writes its new name for the class, ``TokenizersBackend``, which transformers 4
    does not know (it warns on every load); the class name every version knows loads the same
    tokenizer in both."""
    path = Path(path)
    tokenizer.save_pretrained(str(path))
    config_file = path / "tokenizer_config.json"
    config = json.loads(config_file.read_text())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def load_policy(path: Union[str, Path, None] = None, *, hub_model: Optional[str] = None,
                device: Union[str, torch.device] = "cpu", dtype: Optional[torch.dtype] = None):
    """Load ``(model, tokenizer)``.

    By default the shipped fifth grader (safetensors inside the package; no network). With
    ``hub_model`` (or the environment variable ``RLCORE_HUB_MODEL``) a small hub model is loaded
    by name with ``AutoModelForCausalLM`` / ``AutoTokenizer`` instead — for readers with internet
    and a GPU; the arithmetic task then uses that model's own tokenizer.
    """
    hub_model = hub_model or os.environ.get(HUB_MODEL_ENV) or None
    if hub_model is not None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(hub_model, padding_side="left")
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        model = AutoModelForCausalLM.from_pretrained(hub_model, dtype=dtype or torch.bfloat16)
    else:
        from transformers import LlamaForCausalLM

        path = Path(path) if path is not None else FIFTH_GRADER_DIR
        if not (path / "model.safetensors").exists():
            raise FileNotFoundError(
                f"no model.safetensors in {path}; build it with `python -m rlcore.experiments sft`"
            )
        tokenizer = load_tokenizer(path)
        with _quiet_loading():
            model = LlamaForCausalLM.from_pretrained(str(path), local_files_only=True, use_safetensors=True)
        if dtype is not None:
            model = model.to(dtype)
    _plain_sampling(model)
    return model.to(device), tokenizer


def model_device(model) -> torch.device:
    """The device of ``model``'s parameters: where every tensor a training loop builds must live."""
    return next(model.parameters()).device


def frozen_copy(model):
    """A copy of ``model`` in eval mode with gradients off: the reference policy π_ref."""
    return copy.deepcopy(model).eval().requires_grad_(False)


class ValueModel(nn.Module):
    """A critic: a causal transformer trunk and a linear head giving one value per position.

    :meth:`from_policy` copies the policy's trunk and adds a zero-initialised head, so the critic
    starts by predicting 0 everywhere. A separate copy keeps the policy's and the critic's gradients
    from fighting over shared weights, at the price of one more forward pass (InstructGPT's value
    model is a separate network too).
    """

    def __init__(self, trunk: nn.Module, hidden_size: int):
        super().__init__()
        self.trunk = trunk
        self.head = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    @classmethod
    def from_policy(cls, policy) -> "ValueModel":
        """Copy the policy's trunk (``policy.model``) and add a zero-initialised head, on its device."""
        return cls(copy.deepcopy(policy.model), policy.config.hidden_size).to(model_device(policy))

    def hidden_states(self, rollout) -> torch.Tensor:
        """The trunk's last hidden states over prompt and response, ``[B, P + R, H]``."""
        ids = torch.cat([rollout.prompt_ids, rollout.response_ids], dim=1)  # (B, P + R)
        attn = torch.cat([rollout.prompt_mask, rollout.response_mask], dim=1).long()
        positions = (attn.cumsum(-1) - 1).clamp(min=0)  # skip left padding, as generate does
        return self.trunk(input_ids=ids, attention_mask=attn, position_ids=positions).last_hidden_state

    def forward(self, rollout) -> torch.Tensor:
        """``V(s_t)`` for every response token of a :class:`~rlcore.rollout.Rollout`, ``[B, R]``
        (0 on padding): the value is read at the position that has seen the prompt and the tokens
        before ``t``."""
        hidden = self.hidden_states(rollout)
        P, R = rollout.prompt_ids.shape[1], rollout.response_ids.shape[1]
        values = self.head(hidden[:, P - 1 : P - 1 + R]).squeeze(-1)  # (B, R): state before token t
        return values * rollout.response_mask
