"""Per-token estimators of KL(π ‖ π_ref) from sampled tokens."""

from __future__ import annotations

import torch

from ._checks import check_choice, check_same_shape, compute_dtype, float_tensor

__all__ = ["kl_estimate", "KL_KINDS"]

KL_KINDS = ("k1", "k2", "k3")
"""The estimator names :func:`rlcore.kl_estimate` accepts."""


def kl_estimate(logp: torch.Tensor, ref_logp: torch.Tensor, *, kind: str = "k3") -> torch.Tensor:
    r"""Single-sample estimators of :math:`\mathrm{KL}(\pi\,\|\,\pi_\text{ref})` at tokens drawn from π.

    With :math:`x = \log\pi_\text{ref}(y) - \log\pi(y)` (so :math:`e^x` is the ratio
    :math:`\pi_\text{ref}/\pi`):

    * ``"k1"``: :math:`-x = \log\pi - \log\pi_\text{ref}` — unbiased, high variance, can be negative.
    * ``"k2"``: :math:`\tfrac12 x^2` — biased, low variance, always ≥ 0.
    * ``"k3"``: :math:`e^{x} - x - 1` — unbiased and always ≥ 0 (GRPO's choice). Computed as
      ``expm1(x) - x``, which keeps its accuracy when π and π_ref are close.

    Args:
      logp: ``[B, T]`` log π(y_t) of the sampled tokens (any shape is accepted).
      ref_logp: log π_ref(y_t), the same shape.
      kind: ``"k1"``, ``"k2"`` or ``"k3"``.

    Returns:
      The per-token estimate, the shape of ``logp``.

    Reference:
      Schulman, "Approximating KL Divergence", 2020, http://joschu.net/blog/kl-approx.html.
    """
    check_choice(kind, "kind", KL_KINDS)
    logp = float_tensor(logp, "logp")
    ref_logp = float_tensor(ref_logp, "ref_logp")
    check_same_shape(ref_logp, "ref_logp", logp, "logp")
    dtype = compute_dtype(logp, ref_logp)
    x = ref_logp.to(dtype) - logp.to(dtype)
    if kind == "k1":
        return -x
    if kind == "k2":
        return 0.5 * x * x
    return torch.expm1(x) - x
