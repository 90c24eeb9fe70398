"""Tests for rlcore.masked: masked_mean, whiten, aggregate."""

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import rlcore
import reference as ref

F64 = torch.float64
MODES = ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm"]
LENGTHS = [1, 2, 7, 8, 33, 300]


def random_case(seed, T):
    g = torch.Generator().manual_seed(seed)
    B = int(torch.randint(1, 7, (1,), generator=g))
    x = torch.randn(B, T, generator=g, dtype=F64)
    return x, ref.random_trailing_mask(B, T, g)


CASES = [pytest.param(1000 * T + k, T, id=f"T{T}-seed{k}") for T in LENGTHS for k in range(3)]


# ----------------------------------------------------------------------------------------
# aggregate
# ----------------------------------------------------------------------------------------


class TestAggregateHandComputed:
    # Rows of different lengths (T = 4):
    #   row 0: [1, 2, 3, 6], all real    -> 4 tokens, sum 12, mean 3
    #   row 1: [8, ·, ·, ·], one real    -> 1 token,  sum 8,  mean 8
    #   row 2: [·, ·, ·, ·], empty       -> ignored by the per-sequence means
    per_token = torch.tensor([[1.0, 2, 3, 6], [8, 99, 99, 99], [5, 5, 5, 5]], dtype=F64)
    mask = torch.tensor([[1, 1, 1, 1], [1, 0, 0, 0], [0, 0, 0, 0]], dtype=torch.bool)

    @pytest.mark.parametrize(
        "mode, expected",
        [
            # every token the same weight: (12 + 8) / 5 = 4
            pytest.param("token-mean", 4.0, id="token-mean"),
            # every answer the same weight: (3 + 8) / 2 = 5.5  (the lone token of row 1 weighs 4x more)
            pytest.param("seq-mean-token-mean", 5.5, id="seq-mean-token-mean"),
            # mean of the per-answer sums: (12 + 8) / 2 = 10
            pytest.param("seq-mean-token-sum", 10.0, id="seq-mean-token-sum"),
            # all real tokens over the constant B·T = 3·4: 20 / 12
            pytest.param("seq-mean-token-sum-norm", 20.0 / 12.0, id="seq-mean-token-sum-norm"),
        ],
    )
    def test_value(self, mode, expected):
        out = rlcore.aggregate(self.per_token, self.mask, mode)
        torch.testing.assert_close(out, torch.tensor(expected, dtype=F64))

    @pytest.mark.parametrize(
        "mode, row0_weight, row1_weight",
        [
            pytest.param("token-mean", 1 / 5, 1 / 5, id="token-mean"),
            pytest.param("seq-mean-token-mean", 1 / 8, 1 / 2, id="seq-mean-token-mean"),  # 1/(B'·L_b)
            pytest.param("seq-mean-token-sum", 1 / 2, 1 / 2, id="seq-mean-token-sum"),  # 1/B'
            pytest.param("seq-mean-token-sum-norm", 1 / 12, 1 / 12, id="seq-mean-token-sum-norm"),  # 1/(B·T)
        ],
    )
    def test_gradient_is_the_weight_of_each_token(self, mode, row0_weight, row1_weight):
        per_token = self.per_token.clone().requires_grad_()
        rlcore.aggregate(per_token, self.mask, mode).backward()
        expected = torch.tensor(
            [[row0_weight] * 4, [row1_weight, 0, 0, 0], [0, 0, 0, 0]], dtype=F64
        )
        torch.testing.assert_close(per_token.grad, expected)

    def test_default_mode_is_token_mean(self):
        torch.testing.assert_close(
            rlcore.aggregate(self.per_token, self.mask), torch.tensor(4.0, dtype=F64)
        )


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("seed, T", CASES)
def test_aggregate_matches_reference(seed, T, mode):
    x, mask = random_case(seed, T)
    out = rlcore.aggregate(x, mask, mode)
    assert out.shape == ()
    torch.testing.assert_close(out, torch.tensor(ref.aggregate(x, mask, mode), dtype=F64))


@pytest.mark.parametrize("mode", MODES)
def test_aggregate_ignores_nan_and_inf_in_padding(mode):
    x, mask = random_case(5, 9)
    dirty = x.clone()
    dirty[~mask] = float("nan")
    dirty[~mask & (torch.arange(9) % 2 == 0)] = float("inf")
    torch.testing.assert_close(rlcore.aggregate(dirty, mask, mode), rlcore.aggregate(x, mask, mode))
    dirty.requires_grad_()
    rlcore.aggregate(dirty, mask, mode).backward()
    assert torch.isfinite(dirty.grad).all() and bool((dirty.grad[~mask] == 0).all())


@pytest.mark.parametrize("mode", MODES)
def test_aggregate_of_nothing_is_zero(mode):
    out = rlcore.aggregate(torch.randn(3, 5), torch.zeros(3, 5, dtype=torch.bool), mode)
    assert out.item() == 0.0


@pytest.mark.parametrize("mode", MODES)
def test_aggregate_T_equals_one(mode):
    # one token per row: every mode is the mean over the real rows, except the B·T normaliser
    x = torch.tensor([[2.0], [4.0], [100.0]])
    mask = torch.tensor([[True], [True], [False]])
    expected = 6.0 / 3 if mode == "seq-mean-token-sum-norm" else 3.0
    assert rlcore.aggregate(x, mask, mode).item() == pytest.approx(expected)


@pytest.mark.parametrize("mode", MODES)
def test_gradcheck_aggregate(mode):
    x, mask = random_case(7, 6)
    assert torch.autograd.gradcheck(lambda p: rlcore.aggregate(p, mask, mode), (x.requires_grad_(),))


@pytest.mark.parametrize("low", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("mode", MODES)
def test_aggregate_dtypes(mode, low):
    x, mask = random_case(8, 12)
    out = rlcore.aggregate(x.to(low), mask, mode)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, rlcore.aggregate(x.to(low).float(), mask, mode))
    assert rlcore.aggregate(x, mask, mode).dtype == F64


@st.composite
def masked_grids(draw, min_real=0):
    B = draw(st.integers(1, 5))
    T = draw(st.integers(1, 10))
    x = draw(st.lists(st.lists(st.floats(-1e3, 1e3), min_size=T, max_size=T), min_size=B, max_size=B))
    lengths = draw(st.lists(st.integers(0, T), min_size=B, max_size=B))
    if sum(lengths) < min_real:
        lengths = [T] * B
    assume(sum(lengths) >= min_real)
    mask = torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]
    return torch.tensor(x, dtype=F64), mask


@settings(max_examples=50, deadline=None)
@given(masked_grids(min_real=1), st.floats(-1e3, 1e3))
def test_property_aggregate_of_a_constant(data, c):
    x, mask = data
    const = torch.full_like(x, c)
    lengths = mask.sum(1).to(F64)
    expected = {
        "token-mean": c,  # a mean of c's is c
        "seq-mean-token-mean": c,
        "seq-mean-token-sum": c * lengths[lengths > 0].mean().item(),  # c × mean length
        "seq-mean-token-sum-norm": c * mask.sum().item() / mask.numel(),  # c × fraction real
    }
    for mode in MODES:
        out = rlcore.aggregate(const, mask, mode).item()
        assert out == pytest.approx(expected[mode], rel=1e-12, abs=1e-12)


@settings(max_examples=50, deadline=None)
@given(masked_grids())
def test_property_aggregate_matches_reference(data):
    x, mask = data
    for mode in MODES:
        out = rlcore.aggregate(x, mask, mode).item()
        assert out == pytest.approx(ref.aggregate(x, mask, mode), rel=1e-9, abs=1e-9)


# ----------------------------------------------------------------------------------------
# masked_mean
# ----------------------------------------------------------------------------------------


class TestMaskedMean:
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], dtype=F64)
    mask = torch.tensor([[1, 0], [1, 1], [0, 0]], dtype=torch.bool)

    def test_hand_computed(self):
        # everything: (1 + 3 + 4) / 3 = 8/3
        torch.testing.assert_close(rlcore.masked_mean(self.x, self.mask), torch.tensor(8 / 3, dtype=F64))
        # per row: [1, 3.5, 0 (nothing selected)]
        torch.testing.assert_close(
            rlcore.masked_mean(self.x, self.mask, dim=1), torch.tensor([1.0, 3.5, 0.0], dtype=F64)
        )
        # per column: [(1 + 3)/2, 4/1] = [2, 4];  dim=-2 is the same dimension
        torch.testing.assert_close(rlcore.masked_mean(self.x, self.mask, dim=0), torch.tensor([2.0, 4.0], dtype=F64))
        torch.testing.assert_close(rlcore.masked_mean(self.x, self.mask, dim=-2), torch.tensor([2.0, 4.0], dtype=F64))

    def test_accepts_0_1_numbers_as_mask(self):
        torch.testing.assert_close(
            rlcore.masked_mean(self.x, self.mask.float()), rlcore.masked_mean(self.x, self.mask)
        )

    def test_nan_in_unselected_positions_does_not_leak(self):
        dirty = self.x.clone()
        dirty[~self.mask] = float("nan")
        torch.testing.assert_close(rlcore.masked_mean(dirty, self.mask), torch.tensor(8 / 3, dtype=F64))

    def test_nothing_selected_is_zero(self):
        assert rlcore.masked_mean(self.x, torch.zeros_like(self.mask)).item() == 0.0

    def test_any_shape_matches_reference(self):
        g = torch.Generator().manual_seed(0)
        x = torch.randn(3, 4, 5, generator=g, dtype=F64)
        mask = torch.rand(3, 4, 5, generator=g) < 0.5  # any pattern, not only trailing
        assert rlcore.masked_mean(x, mask).item() == pytest.approx(ref.masked_mean(x, mask))
        per_row = rlcore.masked_mean(x, mask, dim=2)
        for i in range(3):
            for j in range(4):
                assert per_row[i, j].item() == pytest.approx(ref.masked_mean(x[i, j], mask[i, j]))

    def test_dtypes_and_gradcheck(self):
        assert rlcore.masked_mean(self.x.to(torch.bfloat16), self.mask).dtype == torch.float32
        assert rlcore.masked_mean(self.x, self.mask).dtype == F64
        x = self.x.clone().requires_grad_()
        assert torch.autograd.gradcheck(lambda v: rlcore.masked_mean(v, self.mask, dim=1), (x,))


# ----------------------------------------------------------------------------------------
# whiten
# ----------------------------------------------------------------------------------------


class TestWhiten:
    # x = [1, 2, 3, 4] real, 100 padded.  mean 2.5, Bessel variance (2.25+0.25+0.25+2.25)/3 = 5/3
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0, 100.0]], dtype=F64)
    mask = torch.tensor([[1, 1, 1, 1, 0]], dtype=torch.bool)

    def test_hand_computed(self):
        # (x − 2.5) / sqrt(5/3 + 1e-8) = [−1.161895, −0.387298, 0.387298, 1.161895], padding 0
        s = (5 / 3 + 1e-8) ** 0.5
        out = rlcore.whiten(self.x, self.mask)
        torch.testing.assert_close(out, torch.tensor([[-1.5 / s, -0.5 / s, 0.5 / s, 1.5 / s, 0.0]], dtype=F64))
        assert out[0, 0].item() == pytest.approx(-1.161895, abs=1e-6)

    def test_keep_mean(self):
        # shift_mean=False adds the mean 2.5 back on the real positions
        s = (5 / 3 + 1e-8) ** 0.5
        out = rlcore.whiten(self.x, self.mask, shift_mean=False)
        expected = torch.tensor([[2.5 - 1.5 / s, 2.5 - 0.5 / s, 2.5 + 0.5 / s, 2.5 + 1.5 / s, 0.0]], dtype=F64)
        torch.testing.assert_close(out, expected)

    def test_no_mask_selects_everything(self):
        x = self.x[:, :4]
        torch.testing.assert_close(rlcore.whiten(x), rlcore.whiten(x, torch.ones_like(x, dtype=torch.bool)))

    @pytest.mark.parametrize("shift_mean", [True, False], ids=["shift", "keep-mean"])
    @pytest.mark.parametrize("seed, T", CASES)
    def test_matches_reference(self, seed, T, shift_mean):
        x, mask = random_case(seed, T)
        out = rlcore.whiten(x, mask, shift_mean=shift_mean)
        torch.testing.assert_close(out, ref.whiten(x, mask, shift_mean=shift_mean))

    def test_degenerate(self):
        # nothing selected, a single selected value, a constant: all give zeros, never NaN
        for x, mask in [
            (torch.randn(2, 3), torch.zeros(2, 3, dtype=torch.bool)),
            (torch.randn(2, 3), torch.tensor([[1, 0, 0], [0, 0, 0]], dtype=torch.bool)),
            (torch.full((2, 3), 4.0), torch.ones(2, 3, dtype=torch.bool)),
        ]:
            out = rlcore.whiten(x, mask)
            assert bool((out == 0).all())

    def test_dtypes_and_gradcheck(self):
        assert rlcore.whiten(self.x.to(torch.float16), self.mask).dtype == torch.float32
        torch.testing.assert_close(
            rlcore.whiten(self.x.to(torch.bfloat16), self.mask), rlcore.whiten(self.x.to(torch.bfloat16).float(), self.mask)
        )
        assert rlcore.whiten(self.x, self.mask).dtype == F64
        x = self.x.clone().requires_grad_()
        assert torch.autograd.gradcheck(lambda v: rlcore.whiten(v, self.mask), (x,))


@settings(max_examples=50, deadline=None)
@given(masked_grids(min_real=2))
def test_property_whiten_gives_mean_0_and_variance_1(data):
    x, mask = data
    chosen = x[mask]
    if chosen.var().item() < 1e-3:  # eps = 1e-8 matters only for (nearly) constant inputs
        chosen = chosen + torch.arange(len(chosen), dtype=F64)
        x = x.clone()
        x[mask] = chosen
    out = rlcore.whiten(x, mask)
    assert out[mask].mean().item() == pytest.approx(0.0, abs=1e-9)
    assert out[mask].var().item() == pytest.approx(1.0, rel=1e-4)  # Bessel, like whiten
    assert bool((out[~mask] == 0).all())


# ----------------------------------------------------------------------------------------
# Trailing masks: accepted exactly when every row is True…True False…False.
# ----------------------------------------------------------------------------------------


@st.composite
def masks_maybe_trailing(draw):
    """A trailing mask, sometimes with a few bits flipped (which may or may not break it)."""
    B = draw(st.integers(1, 6))
    T = draw(st.integers(1, 40))
    lengths = draw(st.lists(st.integers(0, T), min_size=B, max_size=B))
    rows = [[t < L for t in range(T)] for L in lengths]
    for b, t in draw(st.lists(st.tuples(st.integers(0, B - 1), st.integers(0, T - 1)), max_size=3)):
        rows[b][t] = not rows[b][t]
    return rows


def is_trailing(rows):
    return all(row == sorted(row, reverse=True) for row in rows)


@settings(max_examples=50, deadline=None)
@given(masks_maybe_trailing())
def test_property_mask_is_accepted_exactly_when_trailing(rows):
    mask = torch.tensor(rows)
    x = torch.zeros(mask.shape, dtype=F64)
    for call in (lambda: rlcore.aggregate(x, mask), lambda: rlcore.rewards_to_go(x, mask=mask)):
        if is_trailing(rows):
            call()
        else:
            with pytest.raises(ValueError, match="mask"):
                call()


@pytest.mark.parametrize("T", [3_000, 200_000], ids=["T3000", "T200000"])
def test_one_late_gap_in_a_long_mask_is_found(T):
    mask = torch.ones(2, T, dtype=torch.bool)
    mask[1, T // 2 :] = False
    x = torch.zeros(2, T)
    rlcore.aggregate(x, mask)  # trailing: fine
    mask[1, T - 1] = True  # row 1: real … padded … one real step at the very end
    with pytest.raises(ValueError, match="mask"):
        rlcore.aggregate(x, mask)
    with pytest.raises(ValueError, match="mask"):
        rlcore.gae(x, x, gamma=1.0, lam=1.0, mask=mask)
    mask[1, T - 1] = False
    mask[0, 1] = False  # row 0: a gap right at the start
    with pytest.raises(ValueError, match="mask"):
        rlcore.rewards_to_go(x, mask=mask)


# ----------------------------------------------------------------------------------------
# Bad inputs
# ----------------------------------------------------------------------------------------

X = torch.zeros(2, 3)
M = torch.ones(2, 3, dtype=torch.bool)
NON_TRAILING = torch.tensor([[1, 0, 1], [1, 1, 1]], dtype=torch.bool)

BAD = [
    (lambda: rlcore.aggregate(X, M, "mean"), "mode", "aggregate-unknown-mode"),
    (lambda: rlcore.aggregate(X, M, "seq-mean-token-mean-norm"), "mode", "aggregate-unknown-mode-2"),
    (lambda: rlcore.aggregate(torch.zeros(3), torch.ones(3, dtype=torch.bool)), "per_token", "aggregate-rank-1"),
    (lambda: rlcore.aggregate(torch.zeros(2, 3, 1), M), "per_token", "aggregate-rank-3"),
    (lambda: rlcore.aggregate(torch.zeros(2, 3, dtype=torch.int64), M), "per_token", "aggregate-int"),
    (lambda: rlcore.aggregate(X, torch.ones(2, 4, dtype=torch.bool)), "mask", "aggregate-mask-shape"),
    (lambda: rlcore.aggregate(X, NON_TRAILING), "mask", "aggregate-mask-not-trailing"),
    (lambda: rlcore.masked_mean(X, torch.ones(3, 2, dtype=torch.bool)), "mask", "masked_mean-mask-shape"),
    (lambda: rlcore.masked_mean(X, M, dim=2), "dim", "masked_mean-dim"),
    (lambda: rlcore.masked_mean(X, M, dim=-3), "dim", "masked_mean-dim-negative"),
    (lambda: rlcore.masked_mean(torch.zeros(2, 3, dtype=torch.int32), M), "x", "masked_mean-int"),
    (lambda: rlcore.whiten(X, torch.ones(2, 4, dtype=torch.bool)), "mask", "whiten-mask-shape"),
    (lambda: rlcore.whiten(X, M, eps=0.0), "eps", "whiten-eps"),
    (lambda: rlcore.whiten(torch.zeros(2, 3, dtype=torch.int64), M), "x", "whiten-int"),
    (lambda: rlcore.whiten(torch.tensor([1.0, float("nan")])), "x", "whiten-nan"),
]


@pytest.mark.parametrize("bad_call, argname", [pytest.param(c, a, id=i) for c, a, i in BAD])
def test_bad_input_raises_value_error_naming_the_argument(bad_call, argname):
    with pytest.raises(ValueError, match=rf"\b{argname}\b"):
        bad_call()


def test_dr_grpo_normaliser_is_the_generation_budget_not_the_batch_width():
    """Dr. GRPO (TRL's loss_type="dr_grpo") divides by B x max_completion_length: a batch padded to
    another width gives the same loss, and the value is TRL's formula written out."""
    g = torch.Generator().manual_seed(0)
    loss = torch.randn(4, 7, generator=g, dtype=torch.float64)
    mask = torch.arange(7).expand(4, 7) < torch.tensor([[7], [3], [5], [1]])
    trl = (loss * mask).sum() / (loss.size(0) * 12)  # TRL: (per_token_loss * mask).sum() / (B * max_completion_length)
    got = rlcore.aggregate(loss, mask, "seq-mean-token-sum-norm", max_len=12)
    assert torch.allclose(got, trl, rtol=0, atol=1e-14)
    wider = torch.cat([loss, torch.randn(4, 5, generator=g, dtype=torch.float64)], dim=1)  # more padding
    wider_mask = torch.cat([mask, torch.zeros(4, 5, dtype=torch.bool)], dim=1)
    assert torch.allclose(rlcore.aggregate(wider, wider_mask, "seq-mean-token-sum-norm", max_len=12), got,
                          rtol=0, atol=1e-14)
    # without max_len, the width is the normaliser, and it changes with the padding
    assert not torch.allclose(rlcore.aggregate(wider, wider_mask, "seq-mean-token-sum-norm"),
                              rlcore.aggregate(loss, mask, "seq-mean-token-sum-norm"))
    # the other modes do not read max_len
    assert rlcore.aggregate(loss, mask, "token-mean", max_len=12) == rlcore.aggregate(loss, mask, "token-mean")
    for bad in (6, 0, 12.0, True):
        with pytest.raises(ValueError, match="max_len"):
            rlcore.aggregate(loss, mask, "seq-mean-token-sum-norm", max_len=bad)


def test_token_mean_divides_by_num_tokens_when_given():
    """TRL's dapo: each minibatch's token sum over the whole batch's tokens per minibatch, so that the
    sum of the minibatch losses is the batch's token mean times the number of minibatches."""
    # rows of lengths 3, 1 | 2, 2: minibatch sums 1+2+3+4 = 10 and 5+6+7+8 = 26, 8 tokens in all
    loss = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0], [5.0, 6.0, 0.0], [7.0, 8.0, 0.0]], dtype=torch.float64)
    mask = loss != 0
    first = rlcore.aggregate(loss[:2], mask[:2], "token-mean", num_tokens=8 / 2)
    second = rlcore.aggregate(loss[2:], mask[2:], "token-mean", num_tokens=8 / 2)
    assert first.item() == 10 / 4 and second.item() == 26 / 4
    assert first + second == 2 * rlcore.aggregate(loss, mask, "token-mean")
    # bnpo (no num_tokens): each minibatch over its own 4 tokens here, 10/4 and 26/4 as well; unequal counts differ
    assert rlcore.aggregate(loss[:1], mask[:1], "token-mean").item() == 6 / 3
    assert rlcore.aggregate(loss[:1], mask[:1], "token-mean", num_tokens=4.0).item() == 6 / 4
    # the other modes do not read num_tokens
    assert rlcore.aggregate(loss, mask, "seq-mean-token-mean", num_tokens=3) == rlcore.aggregate(
        loss, mask, "seq-mean-token-mean")
    for bad in (0, -1.0, float("nan"), float("inf"), True, "8"):
        with pytest.raises(ValueError, match="num_tokens"):
            rlcore.aggregate(loss, mask, "token-mean", num_tokens=bad)
