"""Per-token log-probabilities from a language model's logits."""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from ._checks import float_tensor

__all__ = ["token_logprobs"]

# Rows of logits handled at once: bounds the temporary memory to about this many
# elements (4 MiB of float32, cache-friendly) however large B·T·V is.
_CHUNK_ELEMENTS = 1 << 20


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    r"""Log-probability of each chosen token, :math:`\log \pi(y_t) = z_{t,y_t} - \log\sum_v e^{z_{t,v}}`.

    The naive ``log_softmax(logits).gather(...)`` writes a second ``[B, T, V]`` tensor. Here the
    rows are processed in blocks of about 1M entries: each block's log-softmax is taken and the
    chosen entries kept, so the extra memory is one block whatever ``B·T·V`` is; the backward
    pass recomputes each block's softmax instead of storing it. bf16/fp16 logits are upcast to
    float32 block by block; the softmax is shifted by the row maximum, so logits of ±1e4 give
    finite log-probs. Differentiable (once).

    Args:
      logits: ``[B, T, V]`` unnormalised scores; ``logits[:, t]`` scores the token at ``t``
        (shift a causal LM's output by one before calling).
      tokens: ``[B, T]`` integer token ids in ``[0, V)``.

    Returns:
      ``[B, T]`` float32 (float64 for float64 logits) log-probabilities.

    Reference:
      The log-likelihood term of the policy gradient, Williams 1992; the chunked,
      gather-then-logsumexp form follows TRL's ``selective_log_softmax``.
    """
    logits = float_tensor(logits, "logits", ndim=3, finite=False)
    if not isinstance(tokens, torch.Tensor) or tokens.dtype.is_floating_point or tokens.dtype == torch.bool:
        got = tokens.dtype if isinstance(tokens, torch.Tensor) else type(tokens).__name__
        raise ValueError(f"tokens must be an integer tensor, got {got}")
    if tuple(tokens.shape) != tuple(logits.shape[:2]):
        raise ValueError(
            f"tokens must have shape {tuple(logits.shape[:2])} to match logits "
            f"{tuple(logits.shape)}, got {tuple(tokens.shape)}"
        )
    B, T, V = logits.shape
    if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= V):
        raise ValueError(
            f"tokens must lie in [0, {V}) for a vocabulary of {V}, got values in "
            f"[{int(tokens.min())}, {int(tokens.max())}]"
        )
    dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
    out = _TokenLogprobs.apply(logits, tokens, dtype)
    # Checked on the small output, not the logits: torch.isnan(logits) alone would allocate
    # B·T·V bytes. A NaN anywhere in a row makes that row's log-softmax NaN.
    if bool(torch.isnan(out.detach()).any()):
        raise ValueError("logits must not contain NaN (nor a row that is -inf everywhere)")
    return out


class _TokenLogprobs(torch.autograd.Function):
    """Block-wise ``log_softmax(...).gather(...)`` whose backward recomputes each block's softmax.

    Forward keeps one block of ``[n, V]`` alive at a time; backward saves nothing but the logits
    (which the caller already holds) and writes the gradient, the one tensor of full size that
    cannot be avoided.
    """

    @staticmethod
    def forward(ctx, logits, tokens, dtype):
        B, T, V = logits.shape
        rows = max(1, _CHUNK_ELEMENTS // max(V, 1))
        out = torch.empty((B, T), dtype=dtype, device=logits.device)
        for b0, b1, t0, t1 in _blocks(B, T, rows, contiguous=logits.is_contiguous()):
            block = logits[b0:b1, t0:t1].reshape(-1, V).to(dtype)  # (n, V); a view when contiguous
            ids = tokens[b0:b1, t0:t1].reshape(-1, 1).long()  # (n, 1)
            chosen = torch.log_softmax(block, dim=1).gather(1, ids)  # (n, 1)
            out[b0:b1, t0:t1] = chosen.view(b1 - b0, t1 - t0)
        ctx.save_for_backward(logits, tokens)
        ctx.dtype = dtype
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        # d log p(y) / d z_v = 1[v = y] - softmax(z)_v
        logits, tokens = ctx.saved_tensors
        B, T, V = logits.shape
        rows = max(1, _CHUNK_ELEMENTS // max(V, 1))
        grad = torch.empty_like(logits)
        for b0, b1, t0, t1 in _blocks(B, T, rows, contiguous=logits.is_contiguous()):
            block = logits[b0:b1, t0:t1].reshape(-1, V).to(ctx.dtype)  # (n, V)
            ids = tokens[b0:b1, t0:t1].reshape(-1, 1).long()  # (n, 1)
            g_out = grad_out[b0:b1, t0:t1].reshape(-1, 1).to(ctx.dtype)  # (n, 1)
            g = torch.softmax(block, dim=1).mul_(-g_out)  # (n, V)
            g.scatter_add_(1, ids, g_out)
            grad[b0:b1, t0:t1] = g.view(b1 - b0, t1 - t0, V).to(logits.dtype)
        return grad, None, None


def _blocks(B: int, T: int, rows: int, *, contiguous: bool):
    """Yield (b0, b1, t0, t1) blocks of at most ``rows`` positions, in row-major order.

    A block never needs a copy of the logits: for a contiguous tensor whole batch rows are
    grouped; otherwise (e.g. ``logits[:, :-1]``) each batch row is cut along time.
    """
    if contiguous and T <= rows:
        per = max(1, rows // max(T, 1))
        for b0 in range(0, B, per):
            yield b0, min(B, b0 + per), 0, T
        return
    for b in range(B):
        for t0 in range(0, T, rows):
            yield b, b + 1, t0, min(T, t0 + rows)
