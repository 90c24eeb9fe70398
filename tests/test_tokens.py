"""Tests for rlcore.tokens.token_logprobs."""

import math

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import rlcore
import rlcore.tokens
import reference as ref

F64 = torch.float64


def random_logits(seed, B, T, V, dtype=torch.float32, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    logits = (scale * torch.randn(B, T, V, generator=g, dtype=F64)).to(dtype)
    tokens = torch.randint(0, V, (B, T), generator=g)
    return logits, tokens


SHAPES = [
    pytest.param(1, 1, 1, id="B1-T1-V1"),
    pytest.param(1, 1, 7, id="B1-T1-V7"),
    pytest.param(2, 3, 2, id="B2-T3-V2"),
    pytest.param(3, 8, 50, id="B3-T8-V50"),
    pytest.param(4, 17, 33, id="B4-T17-V33"),
    pytest.param(2, 300, 11, id="B2-T300-V11"),
    pytest.param(1, 4, 5000, id="B1-T4-V5000"),
]


def test_hand_computed():
    # two equal logits: log(1/2) = −0.693147
    out = rlcore.token_logprobs(torch.zeros(1, 1, 2), torch.tensor([[0]]))
    torch.testing.assert_close(out, torch.tensor([[math.log(0.5)]]))
    # logits [1, 2, 3]: log Σ e^z = log(e + e² + e³) = 3.407606
    #   token 2: 3 − 3.407606 = −0.407606,  token 0: 1 − 3.407606 = −2.407606
    logits = torch.tensor([[[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]]])
    out = rlcore.token_logprobs(logits, torch.tensor([[2, 0]]))
    torch.testing.assert_close(out, torch.tensor([[-0.407606, -2.407606]]), atol=1e-6, rtol=0)


def test_a_vocabulary_of_one_is_certain():
    out = rlcore.token_logprobs(torch.randn(2, 3, 1), torch.zeros(2, 3, dtype=torch.long))
    assert bool((out == 0).all())


@pytest.mark.parametrize("dtype", [torch.float32, F64], ids=["f32", "f64"])
@pytest.mark.parametrize("B, T, V", SHAPES)
def test_matches_log_softmax_then_gather(B, T, V, dtype):
    logits, tokens = random_logits(B * T * V, B, T, V, dtype)
    out = rlcore.token_logprobs(logits, tokens)
    assert out.shape == (B, T) and out.dtype == dtype
    expected = ref.token_logprobs(logits, tokens).to(dtype)
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("B, T, V", SHAPES)
def test_non_contiguous_logits(B, T, V):
    # the usual causal-LM shift: logits[:, :-1] scores tokens[:, 1:]
    logits, tokens = random_logits(1, B, T + 1, V)
    shifted = logits[:, :-1]
    assert not shifted.is_contiguous() or B == 1
    out = rlcore.token_logprobs(shifted, tokens[:, 1:])
    torch.testing.assert_close(out, ref.token_logprobs(shifted, tokens[:, 1:]).float())
    # a vocabulary-strided view (every other logit) and a batch-transposed view
    strided = logits[..., ::2]
    ids = tokens.clamp(max=strided.shape[-1] - 1)
    torch.testing.assert_close(rlcore.token_logprobs(strided, ids), ref.token_logprobs(strided, ids).float())
    swapped = logits.transpose(0, 1)
    torch.testing.assert_close(
        rlcore.token_logprobs(swapped, tokens.T), ref.token_logprobs(swapped, tokens.T).float()
    )


def test_integer_token_dtypes_are_accepted():
    logits, tokens = random_logits(2, 2, 5, 9)
    expected = rlcore.token_logprobs(logits, tokens)
    for dtype in (torch.int32, torch.int16, torch.uint8):
        torch.testing.assert_close(rlcore.token_logprobs(logits, tokens.to(dtype)), expected)


# ----------------------------------------------------------------------------------------
# Chunking: the memory bound, checked by making the chunks tiny.
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "chunk_elements", [1, 7, 40, 129, 10_000], ids=["chunk1", "chunk7", "chunk40", "chunk129", "chunk10000"]
)
@pytest.mark.parametrize("layout", ["contiguous", "shifted"])
def test_small_chunks_agree_with_the_reference_values_and_gradients(monkeypatch, chunk_elements, layout):
    monkeypatch.setattr(rlcore.tokens, "_CHUNK_ELEMENTS", chunk_elements)
    B, T, V = 3, 13, 10
    base, tokens = random_logits(11, B, T + 1, V, dtype=F64)
    tokens = tokens[:, :T]
    weights = torch.randn(B, T, generator=torch.Generator().manual_seed(0), dtype=F64)

    def fresh():
        leaf = base.clone().requires_grad_()
        return leaf, (leaf[:, :T].contiguous() if layout == "contiguous" else leaf[:, :-1])

    leaf, logits = fresh()
    assert logits.is_contiguous() == (layout == "contiguous")
    out = rlcore.token_logprobs(logits, tokens)
    (out * weights).sum().backward()

    ref_leaf, ref_logits = fresh()
    expected = ref.token_logprobs(ref_logits, tokens)
    (expected * weights).sum().backward()

    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(leaf.grad, ref_leaf.grad)


class LargestNewTensor(TorchDispatchMode):
    """Records the largest tensor any operation creates (views of existing storage excluded)."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        existing = {x.untyped_storage().data_ptr() for x in _tensors(args) + _tensors(kwargs)}
        for x in _tensors(out):
            if x.untyped_storage().data_ptr() not in existing:
                self.largest = max(self.largest, x.numel())
        return out


def _tensors(tree):
    if isinstance(tree, torch.Tensor):
        return [tree]
    if isinstance(tree, (list, tuple)):
        return [x for item in tree for x in _tensors(item)]
    if isinstance(tree, dict):
        return [x for item in tree.values() for x in _tensors(item)]
    return []


@pytest.mark.parametrize("grad", [False, True], ids=["no-grad", "requires-grad"])
@pytest.mark.parametrize("layout", ["contiguous", "shifted"])
def test_forward_creates_no_tensor_larger_than_a_chunk(monkeypatch, layout, grad):
    # The contract: no second [B, T, V] tensor. With chunks of 5 rows of the vocabulary, the
    # largest new tensor is a chunk or the [B, T] output, far below B·T·V.
    B, T, V = 4, 21, 16
    monkeypatch.setattr(rlcore.tokens, "_CHUNK_ELEMENTS", 5 * V)
    logits, tokens = random_logits(3, B, T + 1, V)
    logits.requires_grad_(grad)
    logits = logits[:, :T].contiguous() if layout == "contiguous" else logits[:, :-1]
    tokens = tokens[:, :T]
    with LargestNewTensor() as naive:
        ref.token_logprobs(logits, tokens)
    assert naive.largest >= B * T * V  # the spy sees the naive version's full log-softmax
    with LargestNewTensor() as spy:
        out = rlcore.token_logprobs(logits, tokens)
    assert spy.largest <= max(5 * V, B * T)
    torch.testing.assert_close(out, ref.token_logprobs(logits, tokens).float())


# ----------------------------------------------------------------------------------------
# Extremes, dtypes, gradients.
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, F64], ids=["f32", "f64"])
def test_huge_logits_give_finite_log_probs(dtype):
    # ±1e4 would overflow exp() in any dtype without the max-shift inside log-sum-exp.
    # Row 0: log Σ e^z = 1e4 + log(1 + e^−1) = 1e4 + 0.313262; row 1: −9998 + log(1 + 3e^−2).
    logits = torch.tensor([[[1e4, -1e4, 0.0, 1e4 - 1.0], [-1e4, -1e4, -1e4, -1e4 + 2.0]]], dtype=dtype)
    # Some log-probs are about −1e4 or −2e4, which float32 holds only to its spacing there
    # (2^-10 ≈ 0.001 and 2^-9 ≈ 0.002): half a spacing is the best any float32 result can do.
    atol = 1e-3 if dtype == torch.float32 else 1e-12
    for chosen in range(4):
        tokens = torch.tensor([[chosen, chosen]])
        out = rlcore.token_logprobs(logits, tokens)
        expected = ref.token_logprobs(logits.to(F64), tokens)  # computed in float64
        assert torch.isfinite(out).all() and out.dtype == dtype
        torch.testing.assert_close(out, expected.to(dtype), atol=atol, rtol=0)
    out = rlcore.token_logprobs(logits, torch.tensor([[3, 3]]))
    # token 3: 9999 − (1e4 + log(1 + e^−1)) = −1.313262 and −9998 − (−9998 + log(1 + 3e^−2)) = −0.340753
    expected = [-1 - math.log1p(math.exp(-1)), -math.log1p(3 * math.exp(-2))]
    torch.testing.assert_close(out[0], torch.tensor(expected, dtype=dtype), atol=atol, rtol=0)


@pytest.mark.parametrize("low", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_half_precision_logits_are_upcast(low):
    logits, tokens = random_logits(4, 3, 9, 40, dtype=low)
    out = rlcore.token_logprobs(logits, tokens)
    assert out.dtype == torch.float32
    # the same numbers in float32 give the same log-probs: the upcast happens before any arithmetic
    torch.testing.assert_close(out, rlcore.token_logprobs(logits.float(), tokens), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(out, ref.token_logprobs(logits, tokens).float(), rtol=1e-5, atol=1e-5)


def test_half_precision_gradient_flows_to_the_half_logits():
    logits, tokens = random_logits(5, 2, 4, 8, dtype=torch.bfloat16)
    logits.requires_grad_()
    rlcore.token_logprobs(logits, tokens).sum().backward()
    assert logits.grad.dtype == torch.bfloat16 and torch.isfinite(logits.grad.float()).all()


def test_gradcheck(monkeypatch):
    logits, tokens = random_logits(6, 2, 5, 7, dtype=F64)
    assert torch.autograd.gradcheck(lambda z: rlcore.token_logprobs(z, tokens), (logits.requires_grad_(),))
    monkeypatch.setattr(rlcore.tokens, "_CHUNK_ELEMENTS", 3)
    assert torch.autograd.gradcheck(lambda z: rlcore.token_logprobs(z[:, :-1], tokens[:, :-1]), (logits,))


def test_gradient_is_onehot_minus_softmax():
    # d log π(y) / dz = onehot(y) − softmax(z)
    logits, tokens = random_logits(7, 1, 1, 6, dtype=F64)
    logits.requires_grad_()
    rlcore.token_logprobs(logits, tokens).sum().backward()
    expected = torch.nn.functional.one_hot(tokens, 6).to(F64) - torch.softmax(logits.detach(), -1)
    torch.testing.assert_close(logits.grad, expected)


# ----------------------------------------------------------------------------------------
# Bad inputs.
# ----------------------------------------------------------------------------------------

Z = torch.zeros(2, 3, 5)
IDS = torch.zeros(2, 3, dtype=torch.long)

BAD = [
    (lambda: rlcore.token_logprobs(torch.zeros(2, 5), IDS), "logits", "logits-rank-2"),
    (lambda: rlcore.token_logprobs(torch.zeros(2, 3, 5, 1), IDS), "logits", "logits-rank-4"),
    (lambda: rlcore.token_logprobs(torch.zeros(2, 3, 5, dtype=torch.int64), IDS), "logits", "logits-int"),
    (lambda: rlcore.token_logprobs(torch.full((2, 3, 5), float("nan")), IDS), "logits", "logits-nan"),
    (lambda: rlcore.token_logprobs(Z, torch.zeros(2, 4, dtype=torch.long)), "tokens", "tokens-shape"),
    (lambda: rlcore.token_logprobs(Z, torch.zeros(3, 2, dtype=torch.long)), "tokens", "tokens-transposed"),
    (lambda: rlcore.token_logprobs(Z, torch.zeros(2, 3, 1, dtype=torch.long)), "tokens", "tokens-rank-3"),
    (lambda: rlcore.token_logprobs(Z, torch.zeros(2, 3)), "tokens", "tokens-float"),
    (lambda: rlcore.token_logprobs(Z, torch.zeros(2, 3, dtype=torch.bool)), "tokens", "tokens-bool"),
    (lambda: rlcore.token_logprobs(Z, torch.full((2, 3), 5)), "tokens", "tokens-equal-to-V"),
    (lambda: rlcore.token_logprobs(Z, torch.full((2, 3), -1)), "tokens", "tokens-negative"),
    (lambda: rlcore.token_logprobs(Z, [[0, 0, 0], [0, 0, 0]]), "tokens", "tokens-list"),
]


@pytest.mark.parametrize("bad_call, argname", [pytest.param(c, a, id=i) for c, a, i in BAD])
def test_bad_input_raises_value_error_naming_the_argument(bad_call, argname):
    with pytest.raises(ValueError, match=rf"\b{argname}\b"):
        bad_call()
