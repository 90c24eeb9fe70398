"""rlcore: the small, vectorised RL toolkit behind the book.

Every public name is re-exported here, one per line, so ``import rlcore`` shows the whole
surface. Shapes are batch-first: ``[B, T]`` per step, ``[B]`` per trajectory, ``[B, T, V]``
logits, ``[N]`` flat groups for GRPO.
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
