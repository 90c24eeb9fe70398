"""A vectorised reverse linear scan: the engine behind rewards-to-go and GAE.

Both rewards-to-go (``G_t = r_t + γ G_{t+1}``) and GAE (``A_t = δ_t + γλ A_{t+1}``) are the
same first-order linear recurrence run backwards in time,

    x_t = a_t + c_t · x_{t+1},        x_T = 0,

with per-step coefficients ``c_t`` that drop to 0 where an episode ends. The pair
``(a, c)`` composes associatively — applying step ``t`` after step ``t+1`` is the map
``x ↦ a_t + c_t a_{t+1} + c_t c_{t+1} x`` — so the whole recurrence can be solved in
``log2(T)`` vectorised rounds instead of ``T`` Python iterations. We use cyclic reduction:
fold neighbouring pairs ``(2i, 2i+1)`` into one step, solve the half-length problem
recursively, then fill in the odd positions. Total work is ``O(B·T)`` and every round is a
handful of elementwise tensor ops. No cumulative products are divided, so the result is as
accurate as the plain loop (no underflow of ``γ^t`` and no division by zero at ``dones``).
"""

from __future__ import annotations

import torch

__all__ = ["reverse_linear_scan"]

# Below this length a short Python loop is cheaper than another round of slicing.
_LOOP_BELOW = 8


def reverse_linear_scan(a: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Solve ``x_t = a_t + c_t x_{t+1}`` (with ``x_T = 0``) along the last dimension.

    Args:
      a: ``[..., T]`` the inputs ``a_t``.
      c: ``[..., T]`` the coefficients ``c_t`` (``c_{T-1}`` is never used).

    Returns:
      ``[..., T]`` the solution ``x``, same dtype as ``a``.
    """
    if a.shape != c.shape:
        raise ValueError(f"c must have the shape of a {tuple(a.shape)}, got {tuple(c.shape)}")
    return _scan(a, c)


def _scan(a: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    T = a.shape[-1]
    if T <= _LOOP_BELOW:
        out = torch.empty_like(a)
        if T == 0:
            return out
        out[..., T - 1] = a[..., T - 1]
        for t in range(T - 2, -1, -1):
            out[..., t] = a[..., t] + c[..., t] * out[..., t + 1]
        return out
    if T % 2:  # pad one step with a = 0 (so x_T = 0 stays true) to make T even
        a = torch.nn.functional.pad(a, (0, 1))
        c = torch.nn.functional.pad(c, (0, 1))
    a_even, a_odd = a[..., 0::2], a[..., 1::2]
    c_even, c_odd = c[..., 0::2], c[..., 1::2]
    # Fold step 2i+1 into step 2i:  x_{2i} = (a_{2i} + c_{2i} a_{2i+1}) + c_{2i} c_{2i+1} x_{2i+2}
    x_even = _scan(torch.addcmul(a_even, c_even, a_odd), c_even * c_odd)
    # Fill in the odd steps:        x_{2i+1} = a_{2i+1} + c_{2i+1} x_{2i+2}
    x_next = torch.nn.functional.pad(x_even[..., 1:], (0, 1))
    x_odd = torch.addcmul(a_odd, c_odd, x_next)
    out = torch.stack((x_even, x_odd), dim=-1).flatten(-2)  # (..., T_even)
    return out[..., :T]
