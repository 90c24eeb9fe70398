"""Input checks shared by every public function.

Each check raises ``ValueError`` naming the argument and what it saw, so that a wrong
shape or a bad hyper-parameter fails loudly instead of broadcasting silently.
"""

from __future__ import annotations

import functools
import math
from typing import Iterable, Optional, Sequence

import torch

__all__ = [
    "compute_dtype",
    "float_tensor",
    "flag_tensor",
    "flags_as_float",
    "check_same_shape",
    "check_trailing_mask",
    "check_unit_interval",
    "check_positive",
    "check_choice",
    "check_group_size",
]


def compute_dtype(*tensors: Optional[torch.Tensor]) -> torch.dtype:
    """float64 if any input is float64, else float32 (bf16/fp16 are upcast)."""
    for x in tensors:
        if x is not None and x.dtype == torch.float64:
            return torch.float64
    return torch.float32


def float_tensor(
    x,
    name: str,
    *,
    ndim: Optional[int | Sequence[int]] = None,
    finite: bool = True,
) -> torch.Tensor:
    """Check that ``x`` is a floating-point tensor of the right rank (and finite)."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if x.dim() not in allowed:
            want = " or ".join(str(a) for a in allowed)
            raise ValueError(
                f"{name} must have {want} dimension(s), got shape {tuple(x.shape)}"
            )
    if finite and x.numel() and not _all_finite(x):
        raise ValueError(f"{name} must be finite, got non-finite values (nan or inf)")
    return x


def _all_finite(x: torch.Tensor) -> bool:
    """``torch.isfinite(x).all()``, usually from one sum: a nan or inf anywhere makes the sum
    non-finite. Only when the sum is not finite (a bad value, or an overflow of huge finite
    values) is every element checked."""
    if math.isfinite(x.sum().item()):
        return True
    return bool(torch.isfinite(x).all())


def flag_tensor(x, name: str, shape: torch.Size) -> torch.Tensor:
    """A boolean flag tensor (mask, dones) of exactly ``shape``; 0/1 numbers are accepted."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if tuple(x.shape) != tuple(shape):
        raise ValueError(
            f"{name} must have shape {tuple(shape)}, got shape {tuple(x.shape)}"
        )
    if x.dtype == torch.bool:
        return x
    if x.is_complex() or not bool(((x == 0) | (x == 1)).all()):
        raise ValueError(f"{name} must be boolean or hold only 0 and 1 (dtype {x.dtype})")
    return x.bool()


def flags_as_float(flags: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A bool tensor as 0.0/1.0 in ``dtype``. Read as bytes first: converting ``uint8`` is
    several times faster than converting ``bool`` on CPU."""
    return flags.view(torch.uint8).to(dtype)


def check_same_shape(x: torch.Tensor, name: str, ref: torch.Tensor, ref_name: str) -> None:
    if tuple(x.shape) != tuple(ref.shape):
        raise ValueError(
            f"{name} must have the same shape as {ref_name} {tuple(ref.shape)}, "
            f"got shape {tuple(x.shape)}"
        )


def check_trailing_mask(
    mask: torch.Tensor, name: str = "mask", *, as_float: Optional[torch.Tensor] = None
) -> None:
    """Padding must be trailing: along the last dim a row is 1…1 0…0.

    ``as_float`` may pass the mask already converted to 0.0/1.0 (it is then not converted again).
    """
    if mask.shape[-1] > 1 and not _is_trailing(mask, as_float):
        rows = torch.nonzero((mask[..., 1:] & ~mask[..., :-1]).any(-1)).flatten()
        raise ValueError(
            f"{name} must be trailing padding (True…True False…False in every row); "
            f"rows {rows[:5].tolist()} have a real step after a padded one"
        )


def _is_trailing(mask: torch.Tensor, as_float: Optional[torch.Tensor]) -> bool:
    """True when every row of ``mask`` (``[..., T]`` bool) is 1…1 0…0.

    A row with ``L`` ones at positions ``p_1 < … < p_L`` is trailing exactly when
    ``Σ p_i = 0 + 1 + … + (L−1)``, the smallest sum ``L`` distinct positions can have. Both
    sums come from one matrix product of the 0/1 mask with ``[1, t // s, t % s]`` (``s ≈ √T``),
    whose partial sums are integers small enough to be exact in floating point.
    """
    T = mask.shape[-1]
    m = as_float if as_float is not None else flags_as_float(mask, torch.float32)
    exact = 2 ** (53 if m.dtype == torch.float64 else 24)
    split = math.isqrt(T - 1) + 1  # t = split · (t // split) + t % split
    reduced = m.dtype == torch.float32 and torch.get_float32_matmul_precision() != "highest"
    if m.dtype not in (torch.float32, torch.float64) or T * split >= exact or reduced:
        return not bool((mask[..., 1:] & ~mask[..., :-1]).any())
    sums = _position_basis(T, split, m.dtype, m.device) @ m.reshape(-1, T).t()  # (3, rows)
    count, high, low = sums.to(torch.float64).unbind(0)  # exact integers
    # 2 Σ p + L == L² ⟺ Σ p == 0 + 1 + … + (L − 1)
    return torch.equal(torch.add(count, torch.add(low, high, alpha=split), alpha=2), count * count)


@functools.lru_cache(maxsize=32)
def _position_basis(T: int, split: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    t = torch.arange(T)
    basis = torch.stack([torch.ones(T, dtype=torch.long), t // split, t % split])  # (3, T)
    return basis.to(dtype=dtype, device=device)


def check_unit_interval(value, name: str) -> float:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name} must be a scalar, got shape {tuple(value.shape)}")
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    value = float(value)
    if not (0.0 <= value <= 1.0) or math.isnan(value):
        raise ValueError(f"{name} must lie in [0, 1], got {value}")
    return value


def check_positive(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    value = float(value)
    if not (value > 0.0) or not math.isfinite(value):
        raise ValueError(f"{name} must be > 0 and finite, got {value}")
    return value


def check_choice(value, name: str, choices: Iterable[str]) -> str:
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def check_group_size(group_size, n: int, name: str = "group_size") -> int:
    if isinstance(group_size, bool) or not isinstance(group_size, int):
        raise ValueError(f"{name} must be an int, got {group_size!r}")
    if group_size < 2:
        raise ValueError(f"{name} must be >= 2 (a group needs others to compare to), got {group_size}")
    if n % group_size != 0:
        raise ValueError(f"{name}={group_size} does not divide the number of rewards N={n}")
    return group_size
