"""rlcore: the small, vectorised RL toolkit behind the book.

Every public name of the math core is re-exported here, one per line, so ``import rlcore`` shows
the whole contract. Shapes are batch-first: ``[B, T]`` per step, ``[B]`` per trajectory,
``[B, T, V]`` logits, ``[N]`` flat groups for GRPO.

The package has four layers; every import points down (``tests/test_layers.py``):

* the **math core** (this namespace): ``returns``, ``advantages``, ``masked``, ``tokens``, ``kl``,
  ``losses``, ``scan``, and the toy environments of ``envs``;
* the **language-model substrate**: ``tasks`` (the verifier), ``policy`` (the policy, its
  tokenizer, the critic), ``rollout``, ``evaluation``, ``pairs`` (DPO's preference pairs), ``sft``;
* the **training layer**: ``credit`` (every method's per-token credit), ``train`` (the one loop),
  ``presets`` (the methods as configurations of it), ``settings`` (the book's), ``runs``;
* the **command line**: ``experiments``, ``compare``, ``bench``, ``robustness``.

``reproducibility``, ``plotting`` and ``_checks`` sit below all four.
"""

from .advantages import gae
from .advantages import group_advantages
from .advantages import rloo_advantages
from .kl import kl_estimate
from .losses import DPOLoss
from .losses import PPOLoss
from .losses import dpo_loss
from .losses import ppo_clip_loss
from .losses import value_loss
from .masked import aggregate
from .masked import masked_mean
from .masked import whiten
from .returns import discounted_return
from .returns import n_step_returns
from .returns import rewards_to_go
from .returns import td_residuals
from .tokens import token_logprobs

__version__ = "0.1.0"

__all__ = [
    "discounted_return",
    "rewards_to_go",
    "td_residuals",
    "n_step_returns",
    "gae",
    "group_advantages",
    "rloo_advantages",
    "whiten",
    "masked_mean",
    "aggregate",
    "token_logprobs",
    "kl_estimate",
    "ppo_clip_loss",
    "value_loss",
    "dpo_loss",
    "PPOLoss",
    "DPOLoss",
]
