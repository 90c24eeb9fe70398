"""Returns: what a trajectory (or a suffix of it) is worth.

Conventions shared by every function here (see the book's notation page):

* ``rewards[b, t]`` is the reward received at step ``t`` of row ``b``; shapes are ``[B, T]``.
* ``dones[b, t]`` is True when the episode ends after step ``t``: nothing after ``t`` is
  bootstrapped, and a new episode may start at ``t + 1`` in the same row.
* ``mask[b, t]`` is True for real steps; padding is trailing. A row's last real step is
  terminal, and padded positions are 0 in every output.
* ``last_value[b]`` is V(s_T), the value of the state after the last column, used for rows
  that are real and not done at ``T - 1`` (a rollout cut by a time limit). Absent means 0.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional

import torch

from ._checks import (
    check_same_shape,
    check_trailing_mask,
    check_unit_interval,
    compute_dtype,
    flag_tensor,
    flags_as_float,
    float_tensor,
)
from .scan import discounted_reverse_scan

__all__ = ["discounted_return", "rewards_to_go", "td_residuals", "n_step_returns"]


class _Inputs(NamedTuple):
    """Validated arguments, cast to the compute dtype (no copy when they already are)."""

    rewards: torch.Tensor  # (B, T)
    values: Optional[torch.Tensor]  # (B, T)
    last_value: Optional[torch.Tensor]  # (B,)
    mask: Optional[torch.Tensor]  # (B, T) bool, trailing padding
    real: Optional[torch.Tensor]  # (B, T) the mask as 0.0/1.0 in the compute dtype
    dones: Optional[torch.Tensor]  # (B, T) bool


def _inputs(
    rewards, values=None, *, dones=None, mask=None, last_value=None, finite_later=False
) -> _Inputs:
    """Check every argument (in this order: rewards, values, last_value, mask, dones) and cast
    the floats to the compute dtype. Absent optional arguments stay None: no work is spent on
    an all-True mask or all-False dones.

    ``finite_later=True`` leaves the finiteness of ``rewards`` and ``values`` to the caller
    (:func:`_check_finite_later`, on a result that any nan or inf would spoil); an error found
    here first still loses to a non-finite ``rewards`` or ``values`` checked before it.
    """
    rewards = float_tensor(rewards, "rewards", ndim=2, finite=not finite_later)
    values_checked = False
    try:
        if values is not None:
            values = float_tensor(values, "values", ndim=2, finite=not finite_later)
            values_checked = True
            check_same_shape(values, "values", rewards, "rewards")
        if last_value is not None:
            last_value = float_tensor(last_value, "last_value", ndim=1)
            if last_value.shape[0] != rewards.shape[0]:
                raise ValueError(
                    f"last_value must have shape ({rewards.shape[0]},) to match rewards "
                    f"{tuple(rewards.shape)}, got {tuple(last_value.shape)}"
                )
        dtype = compute_dtype(rewards, values, last_value)
        real = None
        if mask is not None:
            mask = flag_tensor(mask, "mask", rewards.shape)
            real = flags_as_float(mask, dtype)
            check_trailing_mask(mask, "mask", as_float=real)
        if dones is not None:
            dones = flag_tensor(dones, "dones", rewards.shape)
    except ValueError:
        if finite_later:  # the checks that came first in order
            float_tensor(rewards, "rewards")
            if values_checked:
                float_tensor(values, "values")
        raise
    return _Inputs(
        rewards.to(dtype),
        None if values is None else values.to(dtype),
        None if last_value is None else last_value.to(dtype),
        mask,
        real,
        dones,
    )


def _check_finite_later(result: torch.Tensor, rewards, values) -> None:
    """The finiteness checks ``_inputs(..., finite_later=True)`` skipped, from one sum.

    ``result`` must be non-finite whenever ``rewards`` or ``values`` are (a nan or inf survives
    every sum and product, even a product with 0); only then are the inputs checked one by one,
    with the usual errors. A finite input that merely overflowed ``result`` passes.
    """
    if result.numel() and not math.isfinite(result.sum().item()):
        float_tensor(rewards, "rewards")
        if values is not None:
            float_tensor(values, "values")


def _bootstrap(x: _Inputs) -> Optional[torch.Tensor]:
    """``(B,)`` the value after the last column, ``last_value`` where the row is real and not
    done at ``T - 1``, else 0; None when there is nothing to add."""
    if x.last_value is None or x.rewards.shape[1] == 0:
        return None
    tail = x.last_value
    if x.real is not None:
        tail = tail * x.real[:, -1]
    if x.dones is not None:
        tail = tail.masked_fill(x.dones[:, -1], 0.0)
    return tail


class _Steps(NamedTuple):
    """Validated per-step data in the compute dtype."""

    rewards: torch.Tensor  # (B, T), 0 on padding
    values: Optional[torch.Tensor]  # (B, T), 0 on padding
    real: torch.Tensor  # (B, T) float 0/1
    cont: torch.Tensor  # (B, T) float 0/1: 1 if step t+1 continues the episode of step t
    next_values: Optional[torch.Tensor]  # (B, T): V(s_{t+1}), last_value at t = T-1, times cont
    tail: torch.Tensor  # (B,) the bootstrap after T-1: last_value × cont[:, -1]


def _steps(rewards, values=None, *, dones=None, mask=None, last_value=None) -> _Steps:
    x = _inputs(rewards, values, dones=dones, mask=mask, last_value=last_value)
    r, v, dtype = x.rewards, x.values, x.rewards.dtype
    B, T = r.shape
    # Step t continues into t+1 when it is real, not done, and t+1 is real (or t = T-1).
    if x.mask is None and x.dones is None:
        cont = torch.ones(B, T, dtype=dtype, device=r.device)
    else:
        flags = torch.ones(B, T, dtype=torch.bool, device=r.device) if x.mask is None else x.mask.clone()
        if x.mask is not None and T > 1:
            flags[:, :-1] &= x.mask[:, 1:]
        if x.dones is not None:
            flags &= ~x.dones
        cont = flags_as_float(flags, dtype)
    if x.real is None:
        realf = torch.ones(B, T, dtype=dtype, device=r.device)
    else:
        realf = x.real
        r = r * realf
        v = None if v is None else v * realf
    tail = torch.zeros(B, dtype=dtype, device=r.device)
    if x.last_value is not None and T:
        tail = x.last_value * cont[:, -1]
    next_values = None
    if v is not None:
        next_values = torch.cat([v[:, 1:], tail[:, None]], dim=1) * cont  # (B, T)
    return _Steps(r, v, realf, cont, next_values, tail)


def discounted_return(rewards: torch.Tensor, *, gamma: float = 1.0, mask=None) -> torch.Tensor:
    r"""The discounted return of each row, :math:`R(\tau) = \sum_{t=0}^{T-1} \gamma^t r_t`.

    Args:
      rewards: ``[B, T]`` rewards ``r_0 … r_{T-1}`` of each trajectory.
      gamma: discount factor γ in [0, 1].
      mask: optional ``[B, T]`` bool, True on real steps (trailing padding).

    Returns:
      ``[B]`` float32 (float64 for float64 input): the return of each row.

    Reference:
      Sutton & Barto, *Reinforcement Learning: An Introduction* (2nd ed., 2018), eq. 3.8.
    """
    gamma = check_unit_interval(gamma, "gamma")
    s = _steps(rewards, mask=mask)
    T = s.rewards.shape[1]
    powers = gamma ** torch.arange(T, dtype=s.rewards.dtype, device=s.rewards.device)  # (T,)
    return (s.rewards * powers).sum(dim=1)


def rewards_to_go(
    rewards: torch.Tensor,
    *,
    gamma: float = 1.0,
    dones=None,
    mask=None,
    last_value=None,
) -> torch.Tensor:
    r"""Reward-to-go :math:`G_t = r_t + \gamma G_{t+1}`, computed backwards from the end.

    ``G_t`` sums only the rewards at or after ``t`` within the same episode (causality:
    an action cannot change rewards that came before it). After the last column a row that
    is neither done nor padded bootstraps with ``last_value``.

    Args:
      rewards: ``[B, T]`` rewards ``r_0 … r_{T-1}``.
      gamma: discount factor γ in [0, 1].
      dones: optional ``[B, T]`` bool, True where the episode ends after step t.
      mask: optional ``[B, T]`` bool, True on real steps (trailing padding).
      last_value: optional ``[B]`` V(s_T) for rows cut by a time limit.

    Returns:
      ``[B, T]`` the rewards-to-go, 0 on padding.

    Reference:
      Williams, "Simple statistical gradient-following algorithms for connectionist
      reinforcement learning", Machine Learning 1992.
    """
    gamma = check_unit_interval(gamma, "gamma")
    x = _inputs(rewards, dones=dones, mask=mask, last_value=last_value)
    # Rewards on padding are 0, so a padded tail adds exactly 0 to G: the scan needs to stop
    # only at dones, and padded positions come out 0.
    a = x.rewards.clone() if x.real is None else x.rewards * x.real  # (B, T)
    tail = _bootstrap(x)
    if tail is not None:
        a[:, -1] += gamma * tail
    return discounted_reverse_scan(a, gamma, dones=x.dones)


def td_residuals(
    rewards: torch.Tensor,
    values: torch.Tensor,
    *,
    gamma: float,
    dones=None,
    mask=None,
    last_value=None,
) -> torch.Tensor:
    r"""One-step TD errors :math:`\delta_t = r_t + \gamma V(s_{t+1}) - V(s_t)`.

    ``V(s_{t+1})`` is 0 after a terminal step and ``last_value`` after the last column.

    Args:
      rewards: ``[B, T]`` rewards.
      values: ``[B, T]`` critic values V(s_t) of the states the actions were taken in.
      gamma: discount factor γ in [0, 1].
      dones, mask, last_value: as in :func:`rewards_to_go`.

    Returns:
      ``[B, T]`` the residuals, 0 on padding.

    Reference:
      Sutton, "Learning to predict by the methods of temporal differences",
      Machine Learning 1988; used as the building block of GAE (Schulman et al., 2015).
    """
    gamma = check_unit_interval(gamma, "gamma")
    s = _steps(rewards, values, dones=dones, mask=mask, last_value=last_value)
    return (s.rewards + gamma * s.next_values - s.values) * s.real


def n_step_returns(
    rewards: torch.Tensor,
    values: torch.Tensor,
    *,
    n: int,
    gamma: float,
    dones=None,
    mask=None,
    last_value=None,
) -> torch.Tensor:
    r"""n-step bootstrapped returns
    :math:`G^{(n)}_t = \sum_{k=0}^{n-1} \gamma^k r_{t+k} + \gamma^n V(s_{t+n})`.

    The sum stops early at the end of an episode (no bootstrap after a terminal step) and
    at the end of the row (bootstrapped with ``last_value``). ``n ≥ T`` gives
    :func:`rewards_to_go`; ``n = 1`` gives ``td_residuals + values``.

    Computed without a loop over time from the full reward-to-go:
    :math:`G^{(n)}_t = G_t - \gamma^n\,[\text{no episode end in } t..t+n-1]\,(G_{t+n} - V_{t+n})`.

    Args:
      rewards: ``[B, T]`` rewards.
      values: ``[B, T]`` critic values V(s_t).
      n: number of real rewards before bootstrapping, an int ≥ 1.
      gamma: discount factor γ in [0, 1].
      dones, mask, last_value: as in :func:`rewards_to_go`.

    Returns:
      ``[B, T]`` the n-step returns, 0 on padding.

    Reference:
      Sutton & Barto, *Reinforcement Learning: An Introduction* (2nd ed., 2018), eq. 7.1.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    gamma = check_unit_interval(gamma, "gamma")
    s = _steps(rewards, values, dones=dones, mask=mask, last_value=last_value)
    # float64 inside: G_t − γⁿ G_{t+n} subtracts two long sums.
    wide = torch.float64
    r, v, cont = s.rewards.to(wide), s.values.to(wide), s.cont.to(wide)
    B, T = r.shape
    a = r.clone()
    if T:
        a[:, -1] += gamma * s.tail.to(wide)
    G = discounted_reverse_scan(a, gamma, dones=cont == 0)  # (B, T) full reward-to-go
    if n < T:
        # breaks[t] = number of episode ends among steps < t; the window t..t+n-1 is
        # unbroken when breaks[t+n] == breaks[t].
        breaks = torch.cat([torch.zeros(B, 1, dtype=wide, device=r.device),
                            torch.cumsum(1.0 - cont, dim=1)], dim=1)  # (B, T+1)
        unbroken = (breaks[:, n:T] == breaks[:, : T - n]).to(wide)  # (B, T-n)
        correction = (gamma ** n) * unbroken * (G[:, n:] - v[:, n:])  # (B, T-n)
        G = G.clone()
        G[:, : T - n] -= correction
    return (G * s.real.to(wide)).to(s.rewards.dtype)
