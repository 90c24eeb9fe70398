"""Slow, obvious reference implementations that the tests compare ``rlcore`` against.

Every function here loops over the batch and over time in plain Python and reads like the
math in the book, so that it is easy to check by eye. They take torch tensors, compute with
Python floats (float64), and return float64 tensors. Speed does not matter here.

Conventions (the same as ``rlcore``'s contract):

* ``dones[b][t]`` True: the episode ends after step t, nothing after t is bootstrapped.
* ``mask[b][t]`` True on real steps; padding is trailing. A row's last real step is
  terminal, and padded positions are 0 in every output.
* ``last_value[b]`` is V(s_T): it bootstraps the step after T-1 when that step is real and
  not done. Absent means 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch

F64 = torch.float64


# ----------------------------------------------------------------------------------------
# Small helpers: turn tensors into nested Python lists with the defaults filled in.
# ----------------------------------------------------------------------------------------


def _rows(x: torch.Tensor) -> list[list[float]]:
    return x.detach().to(F64).tolist()


def _flags(x: Optional[torch.Tensor], B: int, T: int, default: bool) -> list[list[bool]]:
    if x is None:
        return [[default] * T for _ in range(B)]
    return x.bool().tolist()


def _last_values(last_value: Optional[torch.Tensor], B: int) -> list[float]:
    if last_value is None:
        return [0.0] * B
    return last_value.detach().to(F64).tolist()


def _is_terminal(b: int, t: int, T: int, dones, real) -> bool:
    """Step t ends its episode: done there, or it is the row's last real step before padding."""
    if dones[b][t]:
        return True
    return t + 1 < T and not real[b][t + 1]


def _next_value(b, t, T, values, dones, real, last_values) -> float:
    """V(s_{t+1}): 0 after a terminal step, last_value after the last column."""
    if _is_terminal(b, t, T, dones, real):
        return 0.0
    if t == T - 1:
        return last_values[b]
    return values[b][t + 1]


# ----------------------------------------------------------------------------------------
# Returns.
# ----------------------------------------------------------------------------------------


def discounted_return(rewards, gamma=1.0, mask=None) -> torch.Tensor:
    """R(τ) = Σ_t γ^t r_t over the real steps of each row."""
    B, T = rewards.shape
    r, real = _rows(rewards), _flags(mask, B, T, True)
    out = []
    for b in range(B):
        total = 0.0
        for t in range(T):
            if real[b][t]:
                total += gamma**t * r[b][t]
        out.append(total)
    return torch.tensor(out, dtype=F64)


def rewards_to_go(rewards, gamma=1.0, dones=None, mask=None, last_value=None) -> torch.Tensor:
    """G_t = r_t + γ G_{t+1}, with G_{t+1} = 0 after a terminal step, last_value after T-1."""
    B, T = rewards.shape
    r = _rows(rewards)
    real, done = _flags(mask, B, T, True), _flags(dones, B, T, False)
    lv = _last_values(last_value, B)
    out = [[0.0] * T for _ in range(B)]
    for b in range(B):
        for t in reversed(range(T)):
            if not real[b][t]:
                continue
            if _is_terminal(b, t, T, done, real):
                g_next = 0.0
            elif t == T - 1:
                g_next = lv[b]
            else:
                g_next = out[b][t + 1]
            out[b][t] = r[b][t] + gamma * g_next
    return torch.tensor(out, dtype=F64).reshape(B, T)


def td_residuals(rewards, values, gamma, dones=None, mask=None, last_value=None) -> torch.Tensor:
    """δ_t = r_t + γ V(s_{t+1}) − V(s_t)."""
    B, T = rewards.shape
    r, v = _rows(rewards), _rows(values)
    real, done = _flags(mask, B, T, True), _flags(dones, B, T, False)
    lv = _last_values(last_value, B)
    out = [[0.0] * T for _ in range(B)]
    for b in range(B):
        for t in range(T):
            if real[b][t]:
                out[b][t] = r[b][t] + gamma * _next_value(b, t, T, v, done, real, lv) - v[b][t]
    return torch.tensor(out, dtype=F64).reshape(B, T)


def n_step_returns(rewards, values, n, gamma, dones=None, mask=None, last_value=None) -> torch.Tensor:
    """G^(n)_t = r_t + γ r_{t+1} + … + γ^{n-1} r_{t+n-1} + γ^n V(s_{t+n}).

    The sum stops early at a terminal step (no bootstrap) or at the end of the row
    (bootstrapped with last_value).
    """
    B, T = rewards.shape
    r, v = _rows(rewards), _rows(values)
    real, done = _flags(mask, B, T, True), _flags(dones, B, T, False)
    lv = _last_values(last_value, B)
    out = [[0.0] * T for _ in range(B)]
    for b in range(B):
        for t in range(T):
            if not real[b][t]:
                continue
            total, discount, k = 0.0, 1.0, t
            for _ in range(n):
                total += discount * r[b][k]
                discount *= gamma
                if _is_terminal(b, k, T, done, real):
                    bootstrap = 0.0
                    break
                if k == T - 1:
                    bootstrap = lv[b]
                    break
                k += 1
            else:  # n real rewards taken, k == t + n: bootstrap from the critic
                bootstrap = v[b][k]
            out[b][t] = total + discount * bootstrap
    return torch.tensor(out, dtype=F64).reshape(B, T)


def gae(rewards, values, gamma, lam, dones=None, mask=None, last_value=None):
    """A_t = δ_t + γλ A_{t+1} within an episode; returns (advantages, advantages + values)."""
    B, T = rewards.shape
    v = _rows(values)
    real, done = _flags(mask, B, T, True), _flags(dones, B, T, False)
    delta = td_residuals(rewards, values, gamma, dones, mask, last_value).tolist()
    adv = [[0.0] * T for _ in range(B)]
    ret = [[0.0] * T for _ in range(B)]
    for b in range(B):
        a_next = 0.0
        for t in reversed(range(T)):
            if not real[b][t]:
                a_next = 0.0
                continue
            if _is_terminal(b, t, T, done, real) or t == T - 1:
                a_next = 0.0
            adv[b][t] = delta[b][t] + gamma * lam * a_next
            ret[b][t] = adv[b][t] + v[b][t]
            a_next = adv[b][t]
    shape = (B, T)
    return torch.tensor(adv, dtype=F64).reshape(shape), torch.tensor(ret, dtype=F64).reshape(shape)


def reverse_linear_scan(a, c) -> torch.Tensor:
    """x_t = a_t + c_t x_{t+1} with x_T = 0, for a [B, T] input."""
    B, T = a.shape
    a_, c_ = _rows(a), _rows(c)
    out = [[0.0] * T for _ in range(B)]
    for b in range(B):
        x_next = 0.0
        for t in reversed(range(T)):
            out[b][t] = a_[b][t] + (c_[b][t] * x_next if t < T - 1 else 0.0)
            x_next = out[b][t]
    return torch.tensor(out, dtype=F64).reshape(B, T)


# ----------------------------------------------------------------------------------------
# Group advantages (GRPO, Dr. GRPO, RLOO).
# ----------------------------------------------------------------------------------------


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def _std_bessel(xs: list[float]) -> float:
    m = _mean(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def group_advantages(rewards, group_size, scale="std", eps=1e-6) -> torch.Tensor:
    """(r_i − mean of its group) / (std of its group + eps), or / nothing, or / the batch std."""
    r = rewards.detach().to(F64).tolist()
    batch_std = _std_bessel(r) if len(r) > 1 else 0.0
    out = []
    for start in range(0, len(r), group_size):
        group = r[start : start + group_size]
        mean = _mean(group)
        for x in group:
            if scale == "std":
                out.append((x - mean) / (_std_bessel(group) + eps))
            elif scale == "none":
                out.append(x - mean)
            elif scale == "batch":
                out.append((x - mean) / (batch_std + eps))
            else:
                raise AssertionError(scale)
    return torch.tensor(out, dtype=F64)


def rloo_advantages(rewards, group_size) -> torch.Tensor:
    """r_i − (1/(G−1)) Σ_{j≠i} r_j, the others in the same group."""
    r = rewards.detach().to(F64).tolist()
    out = []
    for start in range(0, len(r), group_size):
        group = r[start : start + group_size]
        for i, x in enumerate(group):
            others = [y for j, y in enumerate(group) if j != i]
            out.append(x - sum(others) / len(others))
    return torch.tensor(out, dtype=F64)


# ----------------------------------------------------------------------------------------
# Masked reductions.
# ----------------------------------------------------------------------------------------


def masked_mean(x, mask) -> float:
    """Σ m x / Σ m over everything, 0 when nothing is selected."""
    xs, ms = x.detach().to(F64).flatten().tolist(), mask.bool().flatten().tolist()
    chosen = [xi for xi, mi in zip(xs, ms) if mi]
    return sum(chosen) / len(chosen) if chosen else 0.0


def whiten(x, mask=None, shift_mean=True, eps=1e-8) -> torch.Tensor:
    """(x − μ) / sqrt(σ² + eps) on the selected positions (σ² with Bessel), 0 elsewhere."""
    xs = x.detach().to(F64).flatten().tolist()
    ms = [True] * len(xs) if mask is None else mask.bool().flatten().tolist()
    chosen = [xi for xi, mi in zip(xs, ms) if mi]
    n = len(chosen)
    mean = sum(chosen) / n if n else 0.0
    var = sum((xi - mean) ** 2 for xi in chosen) / max(n - 1, 1)
    out = []
    for xi, mi in zip(xs, ms):
        if not mi:
            out.append(0.0)
            continue
        w = (xi - mean) / math.sqrt(var + eps)
        out.append(w if shift_mean else w + mean)
    return torch.tensor(out, dtype=F64).reshape(x.shape)


def aggregate(per_token, mask, mode="token-mean") -> float:
    """The four aggregation modes, written out with loops (see rlcore.aggregate)."""
    B, T = per_token.shape
    x, m = _rows(per_token), mask.bool().tolist()
    row_sums, row_lengths = [], []
    for b in range(B):
        s, n = 0.0, 0
        for t in range(T):
            if m[b][t]:
                s += x[b][t]
                n += 1
        row_sums.append(s)
        row_lengths.append(n)
    total, count = sum(row_sums), sum(row_lengths)
    nonempty = [b for b in range(B) if row_lengths[b] > 0]
    if mode == "token-mean":
        return total / count if count else 0.0
    if mode == "seq-mean-token-sum-norm":
        return total / (B * T) if B * T else 0.0
    if mode == "seq-mean-token-mean":
        per_seq = [row_sums[b] / row_lengths[b] for b in nonempty]
    elif mode == "seq-mean-token-sum":
        per_seq = [row_sums[b] for b in nonempty]
    else:
        raise AssertionError(mode)
    return sum(per_seq) / len(per_seq) if per_seq else 0.0


# ----------------------------------------------------------------------------------------
# Tokens, KL and losses.
# ----------------------------------------------------------------------------------------


def token_logprobs(logits, tokens) -> torch.Tensor:
    """The naive way: a full log_softmax in float64, then pick the chosen token."""
    logp = torch.log_softmax(logits.to(F64), dim=-1)  # (B, T, V)
    return logp.gather(-1, tokens.long().unsqueeze(-1)).squeeze(-1)  # (B, T)


def kl_estimate(logp, ref_logp, kind="k3") -> torch.Tensor:
    """k1 = log π − log π_ref, k2 = ½ (log π − log π_ref)², k3 = e^x − x − 1 with x = ref − logp."""
    lp, ref = logp.detach().to(F64).flatten().tolist(), ref_logp.detach().to(F64).flatten().tolist()
    out = []
    for a, r in zip(lp, ref):
        x = r - a
        if kind == "k1":
            out.append(-x)
        elif kind == "k2":
            out.append(0.5 * x * x)
        elif kind == "k3":
            out.append(math.exp(x) - x - 1.0)
        else:
            raise AssertionError(kind)
    return torch.tensor(out, dtype=F64).reshape(logp.shape)


def ppo_per_token(logp, old_logp, advantages, clip_eps=0.2, clip_eps_high=None):
    """Per-token −min(ρA, clip(ρ, 1−ε, 1+ε_high) A), and whether the clip was active there.

    ``advantages`` is [B, T] or [B] (one per sequence). Returns two [B, T] tensors.
    """
    eps_high = clip_eps if clip_eps_high is None else clip_eps_high
    B, T = logp.shape
    lp, old = _rows(logp), _rows(old_logp)
    adv = advantages.detach().to(F64).tolist()
    loss = [[0.0] * T for _ in range(B)]
    clipped = [[0.0] * T for _ in range(B)]
    for b in range(B):
        for t in range(T):
            a = adv[b] if advantages.dim() == 1 else adv[b][t]
            ratio = math.exp(lp[b][t] - old[b][t])
            ratio_clipped = min(max(ratio, 1.0 - clip_eps), 1.0 + eps_high)
            loss[b][t] = -min(ratio * a, ratio_clipped * a)
            clipped[b][t] = 1.0 if ratio_clipped * a < ratio * a else 0.0
    return torch.tensor(loss, dtype=F64).reshape(B, T), torch.tensor(clipped, dtype=F64).reshape(B, T)


def value_per_token(values, old_values, returns, clip_eps=None) -> torch.Tensor:
    """½ (V − R)², or with clipping ½ max((V − R)², (V_old + clip(V − V_old, ±ε) − R)²)."""
    B, T = values.shape
    v, v_old, ret = _rows(values), _rows(old_values), _rows(returns)
    out = [[0.0] * T for _ in range(B)]
    for b in range(B):
        for t in range(T):
            err = (v[b][t] - ret[b][t]) ** 2
            if clip_eps is not None:
                step = min(max(v[b][t] - v_old[b][t], -clip_eps), clip_eps)
                err = max(err, (v_old[b][t] + step - ret[b][t]) ** 2)
            out[b][t] = 0.5 * err
    return torch.tensor(out, dtype=F64).reshape(B, T)


def _log_sigmoid(z: float) -> float:
    # log σ(z) = −log(1 + e^{−z}), written to stay finite for large |z|
    return -math.log1p(math.exp(-z)) if z >= 0 else z - math.log1p(math.exp(z))


def dpo_losses(pc, pr, rc, rr, beta=0.1, loss_type="sigmoid", label_smoothing=0.0, lc=None, lr=None):
    """Per-pair DPO / IPO / hinge losses and the implicit rewards, each a [B] tensor; IPO on the
    log-ratios averaged over the lengths lc, lr (ones when not given)."""
    pc, pr, rc, rr = (x.detach().to(F64).tolist() for x in (pc, pr, rc, rr))
    lc = [1.0] * len(pc) if lc is None else [float(n) for n in lc]
    lr = [1.0] * len(pc) if lr is None else [float(n) for n in lr]
    losses, chosen, rejected = [], [], []
    for b in range(len(pc)):
        h = (pc[b] - pr[b]) - (rc[b] - rr[b])
        if loss_type == "sigmoid":
            s = label_smoothing
            losses.append(-(1 - s) * _log_sigmoid(beta * h) - s * _log_sigmoid(-beta * h))
        elif loss_type == "ipo":
            h_avg = (pc[b] - rc[b]) / lc[b] - (pr[b] - rr[b]) / lr[b]
            losses.append((h_avg - 1 / (2 * beta)) ** 2)
        elif loss_type == "hinge":
            losses.append(max(0.0, 1 - beta * h))
        else:
            raise AssertionError(loss_type)
        chosen.append(beta * (pc[b] - rc[b]))
        rejected.append(beta * (pr[b] - rr[b]))
    return tuple(torch.tensor(x, dtype=F64) for x in (losses, chosen, rejected))


# ----------------------------------------------------------------------------------------
# Random test batches.
# ----------------------------------------------------------------------------------------


@dataclass
class Batch:
    """A random batch of per-step data, float64 unless asked otherwise."""

    rewards: torch.Tensor  # (B, T)
    values: torch.Tensor  # (B, T)
    dones: torch.Tensor  # (B, T) bool
    mask: torch.Tensor  # (B, T) bool, trailing padding
    last_value: torch.Tensor  # (B,)

    @property
    def kwargs(self) -> dict:
        """dones, mask and last_value as keyword arguments."""
        return dict(dones=self.dones, mask=self.mask, last_value=self.last_value)


def random_trailing_mask(B: int, T: int, generator: torch.Generator) -> torch.Tensor:
    """A [B, T] trailing mask whose rows include a full one and (when B ≥ 2) an empty one."""
    lengths = torch.randint(0, T + 1, (B,), generator=generator)
    lengths[0] = T  # a full row
    if B >= 2:
        lengths[1] = 0  # a fully masked row
    lengths = lengths[torch.randperm(B, generator=generator)]
    return torch.arange(T)[None, :] < lengths[:, None]  # (B, T)


def random_batch(seed: int, B: Optional[int] = None, T: Optional[int] = None, dtype=F64) -> Batch:
    """Random rewards, values, dones (a random rate), trailing masks and last values."""
    g = torch.Generator().manual_seed(seed)
    if B is None:
        B = int(torch.randint(1, 7, (1,), generator=g))
    if T is None:
        T = int(torch.randint(1, 40, (1,), generator=g))
    done_rate = float(torch.rand((), generator=g)) * 0.3
    return Batch(
        rewards=torch.randn(B, T, generator=g, dtype=F64).to(dtype),
        values=torch.randn(B, T, generator=g, dtype=F64).to(dtype),
        dones=torch.rand(B, T, generator=g) < done_rate,
        mask=random_trailing_mask(B, T, g),
        last_value=torch.randn(B, generator=g, dtype=F64).to(dtype),
    )
