"""Reverse linear scans: the engine behind rewards-to-go, n-step returns and GAE.

Rewards-to-go (``G_t = r_t + γ G_{t+1}``) and GAE (``A_t = δ_t + γλ A_{t+1}``) are the same
first-order linear recurrence run backwards in time,

    x_t = a_t + c_t · x_{t+1},        x_T = 0,

with per-step coefficients ``c_t``. In every return of rlcore the coefficient is one number
ρ (γ, or γλ) that drops to 0 where an episode ends: ``c_t = ρ · (1 − done_t)``.
:func:`discounted_reverse_scan` is the fast path for that case; :func:`reverse_linear_scan`
takes any coefficients. Neither loops over time in Python.

**Blocked algorithm.** Cut time into chunks of ``K = 16`` steps, ``a: [B, T] → [B·n, K]``
with ``n = ⌈T/K⌉`` (zero-padded at the end: ``a = 0`` there keeps ``x_T = 0``).

1. *Inside a chunk*, with a zero boundary after its last step and no episode end, the solution
   is a fixed linear map of the chunk's inputs, ``y_t = Σ_{k≥t} ρ^{k−t} a_k``: one matrix
   product ``y = A @ W`` with the ``K × K`` upper-triangular Toeplitz matrix
   ``W[k, t] = ρ^{k−t}`` (``k ≥ t``), shared by every chunk of every row.
2. *Chunks that contain an episode end* (a done at rate p touches about ``K·p`` of them) are
   found by reading each chunk's 16 flags as two 64-bit words, gathered time-major and solved
   by the recurrence itself: ``K − 1`` vectorised steps across all of them at once
   (``x[t] = a[t] + c[t] · x[t+1]``, one column per chunk). The same steps carry
   ``P_t = c_t ⋯ c_{K−1}``, the weight with which the value after the chunk enters step ``t``
   (0 before the chunk's last episode end).
3. *Chunks talk through their first steps*: ``X_j = h_j + C_j · X_{j+1}``, where ``h_j`` is
   chunk ``j``'s own first value (step 1 or 2) and ``C_j = ρ^K`` for an unbroken chunk, 0 for
   a broken one. That is the same recurrence, ``K`` times shorter: solved recursively by
   steps 1–4 when few chunks are broken (``log_K T`` levels in all). When many are, it is
   solved by recursive doubling (``_doubling_scan``, ``log_2(T/K)`` rounds of four
   operations on the short problem), which needs no matrix product and no search for the cuts.
4. *Every step gets its carry*: ``x_t = y_t + ρ^{K−t} X_{j+1}`` in an unbroken chunk and
   ``x_t = x^{local}_t + P_t X_{j+1}`` in a broken one (``X_{n} = 0``).

The work is one ``[B·T/K, K] × [K, K]`` matrix product and two elementwise passes over the
data, plus work on the broken chunks and on the ``B·T/K`` chunk heads; the Python-level cost
is ``O(K log_K T)`` vectorised operations. :func:`reverse_linear_scan` uses steps 2–4 for
every chunk (its coefficients share no ρ).

**Accuracy.** Nothing is divided by a product of coefficients (no ``γ^{-t}``, no
``cumprod`` in a denominator), so tiny or zero coefficients cannot overflow or produce NaN.
Every step's output is a sum of the same terms as the plain loop's, associated by chunk: a
``K``-term dot product plus a carry, so rounding grows with ``K + log T`` rather than with
``T`` (at γλ = 1 over 16k steps in float32 the loop drifts ~1e-3, this stays within a few ulps).
Episode ends are exact zeros of the recurrence: no two long sums are ever subtracted.

Both functions are differentiable in their inputs (for ``discounted_reverse_scan``, in ``a``):
the adjoint of a reverse scan is the same scan run forwards in time.
"""

from __future__ import annotations

import functools
from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F

__all__ = ["reverse_linear_scan", "discounted_reverse_scan"]

# Chunk length K. 16 keeps the K × K matrix product cheap (16 multiply-adds per step), makes a
# done touch few chunks, and leaves a carry problem 16 times shorter than the input.
_CHUNK = 16


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
    T = a.shape[-1] if a.dim() else 0
    if a.numel() == 0:
        return torch.empty_like(a)
    a2 = a.reshape(-1, T)  # (R, T)
    c2 = c.reshape(-1, T).to(a.dtype)  # (R, T)
    if torch.is_grad_enabled() and (a2.requires_grad or c2.requires_grad):
        x = _LinearScan.apply(a2, c2)
    else:
        x = _blocked_scan(a2.contiguous(), c2.contiguous())
    return x.reshape(a.shape)


def discounted_reverse_scan(
    a: torch.Tensor, discount: float, *, dones: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """Solve ``x_t = a_t + discount · (1 − dones_t) · x_{t+1}`` (``x_T = 0``) along the last dim.

    The recurrence of every discounted return: ``dones_t`` True cuts the sum after step ``t``.

    Args:
      a: ``[..., T]`` floating-point inputs ``a_t``.
      discount: the common coefficient ρ (γ for rewards-to-go, γλ for GAE), a float in [0, 1].
      dones: optional ``[..., T]`` bool, True where nothing after step ``t`` is carried back.

    Returns:
      ``[..., T]`` the solution ``x``, same dtype as ``a``.
    """
    if dones is not None and dones.shape != a.shape:
        raise ValueError(f"dones must have the shape of a {tuple(a.shape)}, got {tuple(dones.shape)}")
    T = a.shape[-1] if a.dim() else 0
    if a.numel() == 0:
        return torch.empty_like(a)
    a2 = a.reshape(-1, T)  # (R, T)
    breaks = None if dones is None else _find_breaks(dones.reshape(-1, T).bool())
    return _scan_with_breaks(a2, float(discount), breaks).reshape(a.shape)


# ----------------------------------------------------------------------------------------
# Episode ends, by chunk.
# ----------------------------------------------------------------------------------------


class _Breaks(NamedTuple):
    """The dones of an ``[R, T]`` problem in the chunked layout ``[R·n, K]`` of the scan."""

    chunks: torch.Tensor  # (M,) int64, ascending: the chunks r·n + j that hold a done
    flags: torch.Tensor  # (M, K) bool: the dones inside those chunks


def _find_breaks(dones: torch.Tensor) -> Optional[_Breaks]:
    """The chunks of ``dones`` (``[R, T]`` bool) that hold a True, or None if none does.

    With ``K`` a multiple of 8, each chunk's flags are reread as ``K/8`` 64-bit words and OR-ed:
    one operation per 8 flags, several times faster than ``any`` over the bools.
    """
    R, T = dones.shape
    K = min(_CHUNK, T)
    n = -(-T // K)
    if n * K != T:
        dones = F.pad(dones, (0, n * K - T))  # padded steps are never done
    flags = dones.contiguous().view(R * n, K)  # (N, K)
    if K % 8 == 0 and flags.storage_offset() % 8 == 0:
        words = flags.view(torch.int64)  # (N, K/8)
        hit = words[:, 0]
        for j in range(1, K // 8):
            hit = hit | words[:, j]
    else:
        hit = flags.any(-1)
    chunks = hit.nonzero().squeeze(1)  # (M,)
    if chunks.numel() == 0:
        return None
    return _Breaks(chunks, flags.index_select(0, chunks))


def _break_positions(breaks: _Breaks, T: int) -> torch.Tensor:
    """``(m,)`` the flat positions ``r · T + t`` of the dones in ``breaks``, ascending."""
    K = breaks.flags.shape[1]
    chunk, step = breaks.flags.nonzero().unbind(1)  # (m,) each
    at = breaks.chunks.index_select(0, chunk).mul_(K).add_(step)  # in the padded [R, n·K]
    row_length = -(-T // K) * K
    if row_length != T:
        at = at.div(row_length, rounding_mode="floor").mul_(T).add_(at.remainder(row_length))
    return at


def _scan_with_breaks(a: torch.Tensor, rho: float, breaks: Optional[_Breaks]) -> torch.Tensor:
    """:func:`discounted_reverse_scan` on ``a (R, T)``, the dones found by :func:`_find_breaks`."""
    if torch.is_grad_enabled() and a.requires_grad:
        return _DiscountedScan.apply(a, rho, breaks)
    return _discounted_scan(a.contiguous(), rho, breaks)


# ----------------------------------------------------------------------------------------
# The two solvers, on contiguous [R, T] tensors, without autograd.
# ----------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def _powers(rho: float, K: int, dtype: torch.dtype, device: torch.device):
    """``W[k, t] = ρ^{k−t}`` for ``k ≥ t``, else 0, ``(K, K)``; ``tail[t] = ρ^{K−t}``, ``(K,)``."""
    k = torch.arange(K + 1, dtype=torch.float64)
    gap = k[:, None] - k[None, :]  # (K+1, K+1): k − t
    powers = torch.where(gap >= 0, torch.tensor(rho, dtype=torch.float64) ** gap.clamp(min=0), 0.0)
    W = powers[:K, :K].to(dtype=dtype, device=device).contiguous()  # (K, K)
    tail = powers[K, :K].to(dtype=dtype, device=device).contiguous()  # (K,)
    return W, tail


def _discounted_scan(
    a: torch.Tensor, rho: float, breaks: Optional[_Breaks], rows: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """``x_t = a_t + ρ (1 − done_t) x_{t+1}`` on a contiguous ``a (R, T)``.

    ``rows``, if given, are the true inputs ``(M, K)`` of the chunks in ``breaks`` (``T`` a
    multiple of ``K``); ``a`` may then hold anything finite there. GAE uses it: at a done,
    ``δ`` must drop its bootstrap, and patching the gathered rows is cheaper than patching ``a``.
    """
    R, T = a.shape
    if rho == 0.0:
        if rows is None:
            return a.clone()
        out = a.clone()
        out.view(-1, rows.shape[1]).index_copy_(0, breaks.chunks, rows)
        return out
    K = min(_CHUNK, T)
    n = -(-T // K)  # chunks per row
    if n * K != T:  # pad the end with a = 0 (and no done): x_T = 0 stays true
        a = F.pad(a, (0, n * K - T))
    N = R * n
    A = a.view(N, K)  # (N, K): one row per chunk
    W, tail = _powers(rho, K, a.dtype, a.device)
    y = _matmul(A, W)  # (N, K): each chunk solved as if unbroken, with a zero boundary (step 1)

    if breaks is not None:  # step 2: the recurrence itself, K − 1 steps across broken chunks
        broken = breaks.chunks  # (M,)
        continues = (~breaks.flags).t().contiguous().view(torch.uint8).to(a.dtype)  # (K, M)
        if rows is None:
            rows = A.index_select(0, broken)  # (M, K)
        x_b, P_b = _solve_chunks(rows.t(), continues, scale=rho)  # (K, M)

    if n > 1:  # step 3: the carry between chunks, X_j = h_j + C_j X_{j+1}
        heads = y[:, 0].clone(memory_format=torch.contiguous_format)  # (N,)
        if breaks is None:
            X = _discounted_scan(heads.view(R, n), rho**K, None)  # (R, n)
        else:
            heads.index_copy_(0, broken, x_b[0])
            cut = torch.zeros(N, dtype=torch.bool, device=a.device).index_fill_(0, broken, True)
            if broken.numel() * K < N:  # few broken chunks: most chunks of chunks are unbroken
                X = _discounted_scan(heads.view(R, n), rho**K, _find_breaks(cut.view(R, n)))
            else:  # many: by recursive doubling, log2(n) rounds
                coef = (~cut).view(torch.uint8).to(a.dtype).mul_(rho**K)  # (N,): C_j
                X = _doubling_scan(heads.view(R, n), coef.view(R, n))  # (R, n)
        X_next = F.pad(X[:, 1:], (0, 1))  # (R, n): the value after each chunk
        y.view(R, n, K).addcmul_(X_next.unsqueeze(-1), tail)  # step 4: x_t += ρ^{K−t} X_{j+1}
    if breaks is not None:
        # back to one row per chunk before the scatter (a transposed source makes index_copy_
        # several times slower, most of all with several threads)
        if n > 1:
            rows = torch.addcmul(x_b.t(), P_b.t(), X_next.view(N).index_select(0, broken)[:, None],
                                 out=a.new_empty(broken.numel(), K))  # (M, K)
        else:
            rows = x_b.t().contiguous()  # (M, K)
        y.index_copy_(0, broken, rows)
    out = y.view(R, n * K)
    return out if n * K == T else out[:, :T].contiguous()


def _matmul(A: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """``A @ W`` in full precision, even if the user allowed float32 products in bf16/TF32."""
    if A.dtype == torch.float32 and torch.get_float32_matmul_precision() != "highest":
        return (A.double() @ W.double()).float()
    return A @ W


def _doubling_scan(a: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """``x_t = a_t + c_t x_{t+1}`` (``x_T = 0``) on short rows, ``a``, ``c`` ``(R, T)``, by
    recursive doubling (Hillis and Steele): after the round of stride ``s``, ``x_t`` holds the
    sum over ``[t, t + 2s)`` and ``c_t`` the product of the coefficients there. ``⌈log2 T⌉``
    rounds of four whole-tensor operations, with no matrix product and no search for zeros:
    cheap where every chunk is cut, as in the chunk-head problem of a batch with many dones.
    """
    R, T = a.shape
    x, x_next = a.clone(), torch.empty_like(a)
    c, c_next = c.clone(), torch.empty_like(c)
    s = 1
    while s < T:
        torch.addcmul(x[:, :-s], c[:, :-s], x[:, s:], out=x_next[:, :-s])
        x_next[:, -s:] = x[:, -s:]
        x, x_next = x_next, x
        if 2 * s < T:  # the last round needs no products
            torch.mul(c[:, :-s], c[:, s:], out=c_next[:, :-s])
            c_next[:, -s:] = c[:, -s:]
            c, c_next = c_next, c
        s *= 2
    return x


def _blocked_scan(a: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """``x_t = a_t + c_t x_{t+1}`` for any coefficients; ``a``, ``c`` ``(R, T)`` contiguous."""
    R, T = a.shape
    K = min(_CHUNK, T)
    n = -(-T // K)
    if n * K != T:
        a = F.pad(a, (0, n * K - T))
        c = F.pad(c, (0, n * K - T))
    N = R * n
    x, P = _solve_chunks(a.view(N, K).t(), c.view(N, K).t())  # (K, N) each, time-major
    if n == 1:
        out = x.t()  # (R, K)
    else:
        X = _blocked_scan(x[0].view(R, n), P[0].view(R, n))  # (R, n): true first values
        X_next = F.pad(X[:, 1:], (0, 1)).view(N, 1)  # (N, 1)
        out = torch.addcmul(x.t(), P.t(), X_next, out=a.new_empty(N, K))  # (N, K), batch-major
    out = out.reshape(R, n * K)
    return out if n * K == T else out[:, :T].contiguous()


def _solve_chunks(
    a: torch.Tensor, c: torch.Tensor, scale: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every chunk by the recurrence itself, all chunks at once.

    Args:
      a, c: ``(K, M)`` time-major inputs and coefficients of ``M`` chunks (views are fine);
        the coefficient of step ``t`` is ``scale · c_t``.

    Returns:
      ``x, P``, ``(K, M)`` each: the solution with a zero boundary after step ``K − 1``, and
      ``P_t = s c_t ⋯ s c_{K−1}`` (``s = scale``), the weight of the value after the chunk in
      ``x_t``. Both come out of the same ``K − 1`` vectorised steps on the stacked state
      ``[x_t; P_t] = [a_t; 0] + s c_t · [x_{t+1}; P_{t+1}]``, started at ``P_{K−1} = s c_{K−1}``.
    """
    K, M = a.shape
    state = a.new_empty(K, 2, M)  # (K, 2, M)
    state[:, 0].copy_(a)
    state[:-1, 1].zero_()
    torch.mul(c[-1], scale, out=state[-1, 1])
    rows, cs = state.unbind(0), c.unbind(0)
    for t in range(K - 2, -1, -1):  # K ≤ 16 steps: never a loop over the time axis
        rows[t].addcmul_(cs[t], rows[t + 1], value=scale)
    return state[:, 0], state[:, 1]


# ----------------------------------------------------------------------------------------
# Autograd: the adjoint of a reverse scan is a forward scan, i.e. a reverse scan of the
# time-reversed gradient with the coefficients shifted by one step.
# ----------------------------------------------------------------------------------------


def _reverse_shifted(flags: torch.Tensor, fill) -> torch.Tensor:
    """``out[:, s] = flags[:, T−2−s]`` for ``s < T−1`` and ``fill`` at ``s = T−1``."""
    return F.pad(flags.flip(-1)[:, 1:], (0, 1), value=fill)


class _LinearScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, c):
        x = _blocked_scan(a.contiguous(), c.contiguous())
        ctx.save_for_backward(c, x)
        return x

    @staticmethod
    def backward(ctx, grad):
        c, x = ctx.saved_tensors
        # u_t = g_t + c_{t−1} u_{t−1}: the reverse scan of the reversed gradient.
        u = reverse_linear_scan(grad.flip(-1), _reverse_shifted(c, 0.0)).flip(-1)
        grad_c = u * F.pad(x[:, 1:], (0, 1))  # ∂x_t/∂c_t = x_{t+1}
        return u, grad_c


class _DiscountedScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, rho, breaks):
        ctx.rho, ctx.breaks, ctx.shape = rho, breaks, a.shape
        return _discounted_scan(a.contiguous(), rho, breaks)

    @staticmethod
    def backward(ctx, grad):
        R, T = ctx.shape
        rev = None
        if ctx.breaks is not None:  # a done after t cuts the link t+1 → t: at T−2−t reversed
            K, n = min(_CHUNK, T), -(-T // min(_CHUNK, T))
            dones = torch.zeros(R * n, K, dtype=torch.bool, device=grad.device)
            dones.index_copy_(0, ctx.breaks.chunks, ctx.breaks.flags)
            rev = _find_breaks(_reverse_shifted(dones.view(R, n * K)[:, :T], False))
        u = _scan_with_breaks(grad.flip(-1), ctx.rho, rev).flip(-1)
        return u, None, None
