"""Masked reductions: means, whitening, and the loss aggregation modes.

How per-token losses are averaged is not a detail: it decides how much each token, and
each answer, weighs in the update (the length-normalisation bias of Dr. GRPO). The mode
names are the ones verl and TRL use.
"""

from __future__ import annotations

import math
from typing import Optional

import torch

from ._checks import check_choice, check_positive, check_trailing_mask, flag_tensor, float_tensor

__all__ = ["masked_mean", "whiten", "aggregate", "AGG_MODES"]

AGG_MODES = (
    "token-mean",
    "seq-mean-token-mean",
    "seq-mean-token-sum",
    "seq-mean-token-sum-norm",
)
"""The aggregation modes :func:`rlcore.aggregate` accepts (verl's names)."""


def _upcast(x: torch.Tensor) -> torch.Tensor:
    return x if x.dtype == torch.float64 else x.float()


def masked_mean(x: torch.Tensor, mask, dim: Optional[int] = None) -> torch.Tensor:
    r"""Mean of ``x`` over the positions where ``mask`` is True:
    :math:`\sum_i m_i x_i / \sum_i m_i`.

    Args:
      x: a float tensor of any shape.
      mask: bool tensor of the same shape (0/1 numbers are accepted).
      dim: reduce over this dimension only; ``None`` reduces over everything.

    Returns:
      A scalar (``dim=None``) or ``x`` reduced over ``dim``. Where nothing is selected the
      mean is 0 (not NaN).

    Reference:
      The masked mean used across RLHF code (e.g. TRL's ``masked_mean``).
    """
    x = float_tensor(x, "x", finite=False)
    m = flag_tensor(mask, "mask", x.shape)
    if dim is not None and not (-x.dim() <= dim < x.dim()):
        raise ValueError(f"dim must index a dimension of x {tuple(x.shape)}, got {dim}")
    xf, mf = _upcast(x), m.to(_upcast(x).dtype)
    # where(), not multiplication: a padded NaN or inf must not leak into the mean.
    total = torch.where(m, xf, torch.zeros_like(xf)).sum(dim=dim)
    count = mf.sum(dim=dim)
    return total / count.clamp(min=1.0)


def whiten(x: torch.Tensor, mask=None, *, shift_mean: bool = True, eps: float = 1e-8) -> torch.Tensor:
    r"""Normalise ``x`` to zero mean and unit variance over the selected positions:
    :math:`(x - \mu) / \sqrt{\sigma^2 + \epsilon}`.

    The variance uses Bessel's correction. With ``shift_mean=False`` the mean is added back
    (only the scale changes), as PPO implementations do for rewards. Positions where
    ``mask`` is False are 0 in the output.

    Args:
      x: float tensor of any shape.
      mask: optional bool tensor of the same shape; ``None`` selects everything.
      shift_mean: subtract the mean (True) or keep it (False).
      eps: added to the variance, > 0.

    Returns:
      A tensor the shape of ``x``.

    Reference:
      Advantage normalisation as in Schulman et al., "Proximal Policy Optimization
      Algorithms", 2017 (OpenAI baselines) and TRL's ``masked_whiten``.
    """
    x = float_tensor(x, "x")
    eps = check_positive(eps, "eps")
    m = torch.ones_like(x, dtype=torch.bool) if mask is None else flag_tensor(mask, "mask", x.shape)
    xf = _upcast(x)
    mf = m.to(xf.dtype)
    n = mf.sum()
    mean = (xf * mf).sum() / n.clamp(min=1.0)
    var = (((xf - mean) * mf) ** 2).sum() / (n - 1.0).clamp(min=1.0)
    out = (xf - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return out * mf


def aggregate(per_token: torch.Tensor, mask, mode: str = "token-mean", *, max_len: Optional[int] = None,
              num_tokens: Optional[float] = None) -> torch.Tensor:
    r"""Reduce a ``[B, T]`` per-token loss to a scalar, in one of the ecosystem's modes.

    With :math:`m_{bt}` the mask and :math:`L_b = \sum_t m_{bt}` each row's length:

    * ``"token-mean"``: :math:`\sum_{b,t} m_{bt}\ell_{bt} / N` — every token weighs the same
      (DAPO). :math:`N` is ``num_tokens`` when given, else this call's token count
      :math:`\sum_{b,t} m_{bt}` (TRL's ``bnpo``: each minibatch divides by its own tokens). TRL's
      ``dapo`` passes the token count of the whole generation batch divided by the number of
      minibatches it is cut into, so a minibatch with more tokens weighs more and every token of
      the batch weighs the same across minibatches.
    * ``"seq-mean-token-mean"``: :math:`\frac{1}{B'}\sum_b \frac{1}{L_b}\sum_t m_{bt}\ell_{bt}`
      — every answer weighs the same, so a token of a long answer weighs less (original GRPO).
    * ``"seq-mean-token-sum"``: :math:`\frac{1}{B'}\sum_b \sum_t m_{bt}\ell_{bt}`.
    * ``"seq-mean-token-sum-norm"``: :math:`\sum_{b,t} m_{bt}\ell_{bt} / (B\,T_\text{max})` — a
      constant normaliser, no length bias (Dr. GRPO). :math:`T_\text{max}` is ``max_len``, the
      generation budget (TRL's ``max_completion_length``), so that the normaliser does not change
      with the width of a batch; without ``max_len`` it is the tensor's width ``T``.

    :math:`B'` counts the rows with at least one real token (empty rows do not dilute the
    mean). Where no token is real the result is 0.

    Args:
      per_token: ``[B, T]`` per-token losses.
      mask: ``[B, T]`` bool, True on real tokens (trailing padding).
      mode: one of the four names above.
      max_len: ``"seq-mean-token-sum-norm"``'s :math:`T_\text{max}`, at least ``T`` (ignored by the
        other modes).
      num_tokens: ``"token-mean"``'s :math:`N`, a positive number (ignored by the other modes).

    Returns:
      A scalar tensor.

    Reference:
      Yu et al., "DAPO", 2025, https://arxiv.org/abs/2503.14476 (token-level loss);
      Liu et al., "Understanding R1-Zero-Like Training", 2025,
      https://arxiv.org/abs/2503.20783 (Dr. GRPO); verl's ``agg_loss``; TRL's ``GRPOTrainer``
      (``loss_type``).
    """
    check_choice(mode, "mode", AGG_MODES)
    per_token = float_tensor(per_token, "per_token", ndim=2, finite=False)
    m = flag_tensor(mask, "mask", per_token.shape)
    check_trailing_mask(m, "mask")
    x = _upcast(per_token)
    mf = m.to(x.dtype)
    masked = torch.where(m, x, torch.zeros_like(x))  # (B, T)
    if mode == "token-mean":
        if num_tokens is not None:
            if isinstance(num_tokens, bool) or not isinstance(num_tokens, (int, float)) or not (
                    math.isfinite(num_tokens) and num_tokens > 0):
                raise ValueError(f"num_tokens must be a positive finite number, got {num_tokens!r}")
            return masked.sum() / float(num_tokens)
        return masked.sum() / mf.sum().clamp(min=1.0)
    if mode == "seq-mean-token-sum-norm":
        width = per_token.shape[1]
        if max_len is not None:
            if isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < max(width, 1):
                raise ValueError(f"max_len must be an int >= the width of per_token ({width}), got {max_len!r}")
            width = max_len
        return masked.sum() / max(per_token.shape[0] * width, 1)
    lengths = mf.sum(dim=1)  # (B,)
    row_sums = masked.sum(dim=1)  # (B,)
    if mode == "seq-mean-token-mean":
        row_sums = row_sums / lengths.clamp(min=1.0)
    rows = (lengths > 0).to(x.dtype)
    return (row_sums * rows).sum() / rows.sum().clamp(min=1.0)
