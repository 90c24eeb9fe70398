"""Tests for rlcore.kl.kl_estimate (k1, k2, k3)."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import rlcore
import reference as ref

F64 = torch.float64
KINDS = ["k1", "k2", "k3"]
LOG2 = math.log(2.0)


@pytest.mark.parametrize(
    "p, p_ref, expected",
    [
        # π(y) = 0.5, π_ref(y) = 0.25: x = log(π_ref/π) = −log 2
        #   k1 = log 2 = 0.693147,  k2 = ½ log² 2 = 0.240227,  k3 = ½ + log 2 − 1 = 0.193147
        pytest.param(0.5, 0.25, {"k1": LOG2, "k2": 0.5 * LOG2**2, "k3": 0.5 + LOG2 - 1}, id="pi-above-ref"),
        # π(y) = 0.25, π_ref(y) = 0.5: x = log 2
        #   k1 = −0.693147 (a negative KL sample),  k2 = 0.240227,  k3 = 2 − log 2 − 1 = 0.306853
        pytest.param(0.25, 0.5, {"k1": -LOG2, "k2": 0.5 * LOG2**2, "k3": 1 - LOG2}, id="pi-below-ref"),
        # the same probability: every estimator is 0
        pytest.param(0.3, 0.3, {"k1": 0.0, "k2": 0.0, "k3": 0.0}, id="equal"),
    ],
)
@pytest.mark.parametrize("kind", KINDS)
def test_hand_computed(p, p_ref, expected, kind):
    logp = torch.tensor([[math.log(p)]], dtype=F64)
    ref_logp = torch.tensor([[math.log(p_ref)]], dtype=F64)
    out = rlcore.kl_estimate(logp, ref_logp, kind=kind)
    torch.testing.assert_close(out, torch.tensor([[expected[kind]]], dtype=F64))


def test_default_kind_is_k3():
    logp, ref_logp = torch.tensor([[-0.5, -2.0]]), torch.tensor([[-1.0, -0.1]])
    torch.testing.assert_close(rlcore.kl_estimate(logp, ref_logp), rlcore.kl_estimate(logp, ref_logp, kind="k3"))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "shape", [(1, 1), (3, 7), (2, 300), (5,), (2, 3, 4)], ids=["1x1", "3x7", "2x300", "rank1", "rank3"]
)
def test_matches_reference(shape, kind):
    g = torch.Generator().manual_seed(sum(shape))
    logp = -torch.rand(shape, generator=g, dtype=F64) * 5
    ref_logp = -torch.rand(shape, generator=g, dtype=F64) * 5
    out = rlcore.kl_estimate(logp, ref_logp, kind=kind)
    assert out.shape == logp.shape
    torch.testing.assert_close(out, ref.kl_estimate(logp, ref_logp, kind))


def test_k1_and_k3_are_unbiased_and_k2_is_not():
    # Exact expectation over a categorical π: E_{y~π}[k] = Σ_y π(y) k(y). k1 and k3 give
    # KL(π‖π_ref) exactly; k2 does not (it is a second-order approximation).
    g = torch.Generator().manual_seed(0)
    logp = torch.log_softmax(torch.randn(4, 10, generator=g, dtype=F64), -1)  # 4 distributions
    ref_logp = torch.log_softmax(torch.randn(4, 10, generator=g, dtype=F64), -1)
    pi = logp.exp()
    kl = (pi * (logp - ref_logp)).sum(-1)
    for kind in ("k1", "k3"):
        torch.testing.assert_close((pi * rlcore.kl_estimate(logp, ref_logp, kind=kind)).sum(-1), kl)
    k2_mean = (pi * rlcore.kl_estimate(logp, ref_logp, kind="k2")).sum(-1)
    assert not torch.allclose(k2_mean, kl, rtol=1e-2)


def test_k3_keeps_its_accuracy_when_the_policies_are_close():
    # x = 1e-4: k3 = e^x − x − 1 = x²/2 + x³/6 + … ≈ 5.000167e-9. In float32 the naive formula
    # loses everything (exp(x) − 1 is rounded at 6e-8); expm1 keeps it.
    x = 1e-4
    logp = torch.zeros(1, 1)
    ref_logp = torch.full((1, 1), x)
    out = rlcore.kl_estimate(logp, ref_logp, kind="k3").item()
    assert out == pytest.approx(x**2 / 2 + x**3 / 6, rel=1e-2)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.tuples(st.floats(-30, 0), st.floats(-30, 0)), min_size=1, max_size=20),
)
def test_property_k2_and_k3_are_nonnegative(pairs):
    logp = torch.tensor([[a for a, _ in pairs]], dtype=F64)
    ref_logp = torch.tensor([[b for _, b in pairs]], dtype=F64)
    k1 = rlcore.kl_estimate(logp, ref_logp, kind="k1")
    k2 = rlcore.kl_estimate(logp, ref_logp, kind="k2")
    k3 = rlcore.kl_estimate(logp, ref_logp, kind="k3")
    assert bool((k2 >= 0).all()) and bool((k3 >= 0).all())
    # k3 = e^x − x − 1 ≥ 0 with equality only at x = 0 (in floating point, k3 ≈ x²/2 is lost
    # against x itself once |x| < 1e-8); k2 = ½ k1²
    apart = (logp - ref_logp).abs() > 1e-6
    assert bool((k3[apart] > 0).all())
    torch.testing.assert_close(k2, 0.5 * k1**2)
    torch.testing.assert_close(k3, ref.kl_estimate(logp, ref_logp, "k3"))


@pytest.mark.parametrize("kind", KINDS)
def test_gradcheck(kind):
    g = torch.Generator().manual_seed(1)
    logp = (-torch.rand(3, 5, generator=g, dtype=F64) * 3).requires_grad_()
    ref_logp = (-torch.rand(3, 5, generator=g, dtype=F64) * 3).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: rlcore.kl_estimate(a, b, kind=kind), (logp, ref_logp))


@pytest.mark.parametrize(
    "kind, grad",
    [
        # d/d logp of each estimator, with d = logp − ref_logp
        pytest.param("k1", lambda d: torch.ones_like(d), id="k1"),
        pytest.param("k2", lambda d: d, id="k2"),
        pytest.param("k3", lambda d: 1 - torch.exp(-d), id="k3"),
    ],
)
def test_gradient_wrt_logp(kind, grad):
    logp = torch.tensor([[-0.2, -1.5, -3.0]], dtype=F64, requires_grad=True)
    ref_logp = torch.tensor([[-0.7, -1.5, -0.1]], dtype=F64)
    rlcore.kl_estimate(logp, ref_logp, kind=kind).sum().backward()
    torch.testing.assert_close(logp.grad, grad(logp.detach() - ref_logp))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("low", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_dtypes(low, kind):
    logp, ref_logp = torch.tensor([[-0.5, -2.0, -7.0]]), torch.tensor([[-1.0, -0.1, -7.5]])
    out = rlcore.kl_estimate(logp.to(low), ref_logp.to(low), kind=kind)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, rlcore.kl_estimate(logp.to(low).float(), ref_logp.to(low).float(), kind=kind))
    assert rlcore.kl_estimate(logp.double(), ref_logp.double(), kind=kind).dtype == F64
    assert rlcore.kl_estimate(logp, ref_logp.double(), kind=kind).dtype == F64  # the wider input wins


L = torch.zeros(2, 3)

BAD = [
    (lambda: rlcore.kl_estimate(L, L, kind="k4"), "kind", "unknown-kind"),
    (lambda: rlcore.kl_estimate(L, L, kind="K3"), "kind", "kind-case"),
    (lambda: rlcore.kl_estimate(L, torch.zeros(2, 4)), "ref_logp", "ref_logp-shape"),
    (lambda: rlcore.kl_estimate(L, torch.zeros(2)), "ref_logp", "ref_logp-no-broadcast"),
    (lambda: rlcore.kl_estimate(torch.zeros(2, 3, dtype=torch.int64), L), "logp", "logp-int"),
    (lambda: rlcore.kl_estimate(L, torch.zeros(2, 3, dtype=torch.int64)), "ref_logp", "ref_logp-int"),
    (lambda: rlcore.kl_estimate(torch.full((2, 3), float("nan")), L), "logp", "logp-nan"),
    (lambda: rlcore.kl_estimate(L, torch.full((2, 3), -float("inf"))), "ref_logp", "ref_logp-inf"),
]


@pytest.mark.parametrize("bad_call, argname", [pytest.param(c, a, id=i) for c, a, i in BAD])
def test_bad_input_raises_value_error_naming_the_argument(bad_call, argname):
    with pytest.raises(ValueError, match=rf"\b{argname}\b"):
        bad_call()
