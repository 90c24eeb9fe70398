"""Tests for rlcore.scan: the reverse linear recurrence x_t = a_t + c_t x_{t+1}, x_T = 0.

reverse_linear_scan takes any coefficients c_t; discounted_reverse_scan takes one discount ρ and
optional dones, c_t = ρ (1 − done_t). Both are checked against the same plain loop.
"""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import reference as ref
from rlcore.scan import discounted_reverse_scan, reverse_linear_scan

F64 = torch.float64

# Every length from 0 to 20 (the cutoff for the plain loop is 8; odd lengths are padded),
# then powers of two and their neighbours, up to 300.
LENGTHS = list(range(0, 21)) + [31, 32, 33, 63, 64, 65, 127, 128, 129, 255, 256, 257, 299, 300]


def test_hand_computed():
    # a = [1, 2, 3, 4], c = [0.5, 0.5, 0.5, (unused)]
    # x3 = 4, x2 = 3 + 0.5·4 = 5, x1 = 2 + 0.5·5 = 4.5, x0 = 1 + 0.5·4.5 = 3.25
    a = torch.tensor([1.0, 2.0, 3.0, 4.0])
    out = reverse_linear_scan(a, torch.tensor([0.5, 0.5, 0.5, 123.0]))
    torch.testing.assert_close(out, torch.tensor([3.25, 4.5, 5.0, 4.0]))
    # c = 0 cuts the recursion: c = [1, 0, 1, ·] -> x3 = 4, x2 = 7, x1 = 2, x0 = 3
    out = reverse_linear_scan(a, torch.tensor([1.0, 0.0, 1.0, 1.0]))
    torch.testing.assert_close(out, torch.tensor([3.0, 2.0, 7.0, 4.0]))


@pytest.mark.parametrize("T", LENGTHS, ids=[f"T{T}" for T in LENGTHS])
def test_matches_the_loop(T):
    g = torch.Generator().manual_seed(T)
    a = torch.randn(3, T, generator=g, dtype=F64)
    # coefficients in [0, 1] with some exact zeros (episode ends)
    c = torch.rand(3, T, generator=g, dtype=F64) * (torch.rand(3, T, generator=g) > 0.2)
    out = reverse_linear_scan(a, c)
    assert out.shape == a.shape and out.dtype == F64
    torch.testing.assert_close(out, ref.reverse_linear_scan(a, c))


@pytest.mark.parametrize("T", [1, 9, 64, 300], ids=["T1", "T9", "T64", "T300"])
def test_constant_coefficient_is_a_discounted_sum(T):
    # c_t = γ: x_t = Σ_k γ^k a_{t+k}, computed here as a matrix product with an upper-triangular
    # matrix of powers.
    gamma = 0.97
    a = torch.randn(2, T, generator=torch.Generator().manual_seed(1), dtype=F64)
    k = torch.arange(T)
    powers = torch.where(k[None, :] >= k[:, None], gamma ** (k[None, :] - k[:, None]).to(F64), 0.0)  # (T, T)
    expected = a @ powers.T
    torch.testing.assert_close(reverse_linear_scan(a, torch.full_like(a, gamma)), expected)


@pytest.mark.parametrize("shape", [(17,), (1, 17), (2, 3, 17), (4, 1, 2, 9)], ids=["rank1", "rank2", "rank3", "rank4"])
def test_any_leading_dimensions(shape):
    g = torch.Generator().manual_seed(2)
    a, c = torch.randn(shape, generator=g, dtype=F64), torch.rand(shape, generator=g, dtype=F64)
    out = reverse_linear_scan(a, c)
    flat = ref.reverse_linear_scan(a.reshape(-1, shape[-1]), c.reshape(-1, shape[-1]))
    torch.testing.assert_close(out, flat.reshape(shape))


def test_non_contiguous_inputs():
    g = torch.Generator().manual_seed(3)
    a, c = torch.randn(20, 6, generator=g, dtype=F64).T, torch.rand(20, 6, generator=g, dtype=F64).T  # (6, 20)
    assert not a.is_contiguous()
    torch.testing.assert_close(reverse_linear_scan(a, c), ref.reverse_linear_scan(a, c))


def test_long_sums_are_exact_and_never_nan():
    # c = 1, a = 1: x_t = T − t exactly in float32 (a cumulative-product formula would divide)
    T = 300
    out = reverse_linear_scan(torch.ones(1, T), torch.ones(1, T))
    torch.testing.assert_close(out, torch.arange(T, 0, -1, dtype=torch.float32)[None], rtol=0, atol=0)
    # tiny coefficients: products underflow to 0, but nothing is divided by them
    out = reverse_linear_scan(torch.ones(1, T), torch.full((1, T), 1e-30))
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, torch.ones(1, T))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=["f32", "f64", "bf16"])
def test_dtype_is_preserved(dtype):
    a = torch.randn(2, 11).to(dtype)
    assert reverse_linear_scan(a, torch.full_like(a, 0.5)).dtype == dtype


@pytest.mark.parametrize("T", [1, 5, 8, 9, 21], ids=["T1", "T5", "T8", "T9", "T21"])
def test_gradcheck(T):
    g = torch.Generator().manual_seed(T)
    a = torch.randn(2, T, generator=g, dtype=F64, requires_grad=True)
    c = torch.rand(2, T, generator=g, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(reverse_linear_scan, (a, c))


@settings(max_examples=50, deadline=None)
@given(
    st.integers(0, 40).flatmap(
        lambda T: st.tuples(
            st.lists(st.floats(-100, 100), min_size=T, max_size=T),
            st.lists(st.one_of(st.just(0.0), st.just(1.0), st.floats(0, 1)), min_size=T, max_size=T),
        )
    )
)
def test_property_matches_the_loop(data):
    a, c = (torch.tensor([xs], dtype=F64).reshape(1, -1) for xs in data)
    torch.testing.assert_close(reverse_linear_scan(a, c), ref.reverse_linear_scan(a, c))


def test_mismatched_shapes_raise():
    with pytest.raises(ValueError, match=r"\bc\b"):
        reverse_linear_scan(torch.zeros(2, 5), torch.zeros(2, 4))


# ----------------------------------------------------------------------------------------
# discounted_reverse_scan: one discount, episode ends.
# ----------------------------------------------------------------------------------------


def test_discounted_hand_computed():
    # ρ = 0.5, a = [1, 2, 3, 4], done after t=1:  x3 = 4, x2 = 3 + 2 = 5, x1 = 2, x0 = 1 + 1 = 2
    a = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    out = discounted_reverse_scan(a, 0.5, dones=torch.tensor([[False, True, False, False]]))
    torch.testing.assert_close(out, torch.tensor([[2.0, 2.0, 5.0, 4.0]]))
    torch.testing.assert_close(discounted_reverse_scan(a, 0.5), torch.tensor([[3.25, 4.5, 5.0, 4.0]]))


@pytest.mark.parametrize("done_rate", [0.0, 0.05, 0.5, 1.0], ids=["no-dones", "rare", "half", "all"])
@pytest.mark.parametrize("discount", [0.0, 0.5, 0.95, 1.0], ids=["rho0", "rho0.5", "rho0.95", "rho1"])
@pytest.mark.parametrize("T", [1, 2, 7, 15, 16, 17, 33, 255, 256, 300], ids=lambda T: f"T{T}")
def test_discounted_matches_the_loop(T, discount, done_rate):
    g = torch.Generator().manual_seed(T)
    a = torch.randn(4, T, generator=g, dtype=F64)
    dones = torch.rand(4, T, generator=g) < done_rate
    expected = ref.reverse_linear_scan(a, discount * (~dones).to(F64))
    torch.testing.assert_close(discounted_reverse_scan(a, discount, dones=dones), expected)
    if done_rate == 0.0:
        torch.testing.assert_close(discounted_reverse_scan(a, discount), expected)


def test_discounted_leading_dimensions_and_dtypes():
    g = torch.Generator().manual_seed(5)
    a = torch.randn(2, 3, 40, generator=g, dtype=F64)
    dones = torch.rand(2, 3, 40, generator=g) < 0.1
    expected = ref.reverse_linear_scan(a.reshape(6, 40), 0.9 * (~dones).reshape(6, 40).to(F64)).reshape(2, 3, 40)
    torch.testing.assert_close(discounted_reverse_scan(a, 0.9, dones=dones), expected)
    out32 = discounted_reverse_scan(a.float(), 0.9, dones=dones)
    assert out32.dtype == torch.float32
    torch.testing.assert_close(out32, expected.float(), rtol=1e-5, atol=1e-5)
    # a long sum of ones with ρ = 1 is exact in float32: x_t = T − t
    T = 300
    out = discounted_reverse_scan(torch.ones(1, T), 1.0)
    torch.testing.assert_close(out, torch.arange(T, 0, -1, dtype=torch.float32)[None], rtol=0, atol=0)


@pytest.mark.parametrize("T", [3, 16, 37], ids=["T3", "T16", "T37"])
def test_discounted_gradcheck(T):
    g = torch.Generator().manual_seed(T)
    a = torch.randn(2, T, generator=g, dtype=F64, requires_grad=True)
    dones = torch.rand(2, T, generator=g) < 0.2
    assert torch.autograd.gradcheck(lambda x: discounted_reverse_scan(x, 0.9, dones=dones), (a,))
