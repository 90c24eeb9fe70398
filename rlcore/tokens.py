"""Per-token log-probabilities from a language model's logits."""

from __future__ import annotations

import torch

from ._checks import float_tensor

__all__ = ["token_logprobs"]

# Rows of logits handled at once: bounds the temporary memory to about this many
# elements (16 MiB of float32) however large B·T·V is.
_CHUNK_ELEMENTS = 1 << 22


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    r"""Log-probability of each chosen token, :math:`\log \pi(y_t) = z_{t,y_t} - \log\sum_v e^{z_{t,v}}`.

    The naive ``log_softmax(logits).gather(...)`` writes a second ``[B, T, V]`` tensor. Here the
    rows are processed in chunks: the chosen logit is gathered and the log-sum-exp of the
    row is subtracted, so the extra memory is a few chunk-sized buffers, whatever ``B·T·V``
    is. bf16/fp16 logits are upcast to float32 chunk by chunk; the log-sum-exp is shifted by
    the row maximum, so logits of ±1e4 give finite log-probs. Differentiable.

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
    if bool(torch.isnan(logits).any()):
        raise ValueError("logits must not contain NaN")
    dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
    rows = max(1, _CHUNK_ELEMENTS // max(V, 1))
    out = logits.new_zeros((B, T), dtype=dtype)
    for b0, b1, t0, t1 in _blocks(B, T, rows, contiguous=logits.is_contiguous()):
        block = logits[b0:b1, t0:t1].reshape(-1, V).to(dtype)  # (n, V); a view when contiguous
        ids = tokens[b0:b1, t0:t1].reshape(-1, 1).long()  # (n, 1)
        chosen = block.gather(1, ids).squeeze(1)  # (n,)
        out[b0:b1, t0:t1] = (chosen - torch.logsumexp(block, dim=1)).view(b1 - b0, t1 - t0)
    return out


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
