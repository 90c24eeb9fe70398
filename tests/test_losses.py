"""Tests for rlcore.losses: ppo_clip_loss, value_loss, dpo_loss."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import rlcore
import reference as ref

F64 = torch.float64
MODES = ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm"]
LOSS_TYPES = ["sigmoid", "ipo", "hinge"]


def ppo_batch(seed, B, T, spread=0.4, dtype=F64):
    """Random log-probs, log-ratios of size ~spread, advantages and a trailing mask."""
    g = torch.Generator().manual_seed(seed)
    old_logp = -torch.rand(B, T, generator=g, dtype=F64) * 4
    logp = old_logp + spread * torch.randn(B, T, generator=g, dtype=F64)
    advantages = torch.randn(B, T, generator=g, dtype=F64)
    mask = ref.random_trailing_mask(B, T, g)
    return logp.to(dtype), old_logp.to(dtype), advantages.to(dtype), mask


# ----------------------------------------------------------------------------------------
# PPO: hand-computed example of the clip, with and without DAPO's clip-higher.
# ----------------------------------------------------------------------------------------


class TestPPOHandComputed:
    # One row of 6 real tokens and one padded token (whose huge ratio must not count).
    ratios = [1.25, 1.30, 0.70, 0.70, 1.50, 1.25, 5.0]
    advantages = torch.tensor([[1.0, 1.0, 1.0, -1.0, -1.0, -2.0, 1.0]], dtype=F64)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1, 0]], dtype=torch.bool)
    old_logp = torch.full((1, 7), -1.0, dtype=F64)
    logp = old_logp + torch.tensor([[math.log(r) for r in ratios]], dtype=F64)

    def test_clip_higher(self):
        # clip range [1 − 0.2, 1 + 0.28] = [0.8, 1.28]; ℓ = −min(ρA, clip(ρ)A)
        #   ρ=1.25 A=+1: inside the range              ℓ = −1.25   not clipped
        #   ρ=1.30 A=+1: above 1.28, A > 0             ℓ = −1.28   clipped
        #   ρ=0.70 A=+1: below 0.8, but ρA is smaller  ℓ = −0.70   not clipped
        #   ρ=0.70 A=−1: below 0.8, A < 0              ℓ = +0.80   clipped
        #   ρ=1.50 A=−1: above, but ρA is smaller      ℓ = +1.50   not clipped
        #   ρ=1.25 A=−2: inside                        ℓ = +2.50   not clipped
        # token-mean: (−1.25 − 1.28 − 0.7 + 0.8 + 1.5 + 2.5) / 6 = 1.57 / 6;  clip_frac = 2/6
        out = rlcore.ppo_clip_loss(self.logp, self.old_logp, self.advantages, self.mask,
                                   clip_eps=0.2, clip_eps_high=0.28)
        assert out.loss.item() == pytest.approx(1.57 / 6)
        assert out.clip_frac.item() == pytest.approx(2 / 6)

    def test_symmetric_clip(self):
        # clip range [0.8, 1.2]: now ρ=1.25 A=+1 is clipped too (ℓ = −1.2), and ρ=1.30 gives −1.2;
        # ρ=1.25 A=−2: ρA = −2.5 < −2.4, not clipped.
        # token-mean: (−1.2 − 1.2 − 0.7 + 0.8 + 1.5 + 2.5) / 6 = 1.7 / 6;  clip_frac = 3/6
        out = rlcore.ppo_clip_loss(self.logp, self.old_logp, self.advantages, self.mask, clip_eps=0.2)
        assert out.loss.item() == pytest.approx(1.7 / 6)
        assert out.clip_frac.item() == pytest.approx(3 / 6)

    def test_approx_kl(self):
        # mean over the real tokens of (ρ − 1) − log ρ
        expected = sum((r - 1) - math.log(r) for r in self.ratios[:6]) / 6
        out = rlcore.ppo_clip_loss(self.logp, self.old_logp, self.advantages, self.mask)
        assert out.approx_kl.item() == pytest.approx(expected)

    def test_clipped_tokens_get_no_gradient(self):
        logp = self.logp.clone().requires_grad_()
        out = rlcore.ppo_clip_loss(logp, self.old_logp, self.advantages, self.mask,
                                   clip_eps=0.2, clip_eps_high=0.28)
        out.loss.backward()
        # d ℓ/d logp = −ρA / 6 on the unclipped tokens, 0 on the clipped and the padded ones
        rho, adv = torch.tensor([self.ratios], dtype=F64), self.advantages
        active = torch.tensor([[1, 0, 1, 0, 1, 1, 0]], dtype=F64)
        torch.testing.assert_close(logp.grad, -rho * adv * active / 6)

    def test_returns_a_named_tuple_of_detached_diagnostics(self):
        logp = self.logp.clone().requires_grad_()
        out = rlcore.ppo_clip_loss(logp, self.old_logp, self.advantages, self.mask)
        assert isinstance(out, rlcore.PPOLoss)
        loss, clip_frac, approx_kl = out
        assert loss.requires_grad and not clip_frac.requires_grad and not approx_kl.requires_grad
        assert loss.shape == clip_frac.shape == approx_kl.shape == ()


@pytest.mark.parametrize("agg", MODES)
@pytest.mark.parametrize(
    "seed, B, T", [pytest.param(s, B, T, id=f"B{B}-T{T}") for s, (B, T) in enumerate([(1, 1), (3, 2), (4, 9), (5, 64), (2, 300)])]
)
@pytest.mark.parametrize("eps, eps_high", [(0.2, None), (0.2, 0.28), (0.1, 0.05)], ids=["sym", "higher", "lower"])
def test_ppo_matches_reference(seed, B, T, agg, eps, eps_high):
    logp, old_logp, advantages, mask = ppo_batch(seed, B, T)
    out = rlcore.ppo_clip_loss(logp, old_logp, advantages, mask, clip_eps=eps, clip_eps_high=eps_high, agg=agg)
    per_token, clipped = ref.ppo_per_token(logp, old_logp, advantages, eps, eps_high)
    assert out.loss.item() == pytest.approx(ref.aggregate(per_token, mask, agg), rel=1e-12, abs=1e-12)
    assert out.clip_frac.item() == pytest.approx(ref.aggregate(clipped, mask, "token-mean"), abs=1e-12)
    ratio = (logp - old_logp).exp()
    assert out.approx_kl.item() == pytest.approx(ref.aggregate(ratio - 1 - ratio.log(), mask, "token-mean"), abs=1e-12)


@pytest.mark.parametrize("agg", MODES)
def test_ppo_at_the_old_policy_loss_is_minus_mean_advantage(agg):
    # ρ = 1: ℓ_t = −A_t, so the loss is the aggregate of −A; for token-mean, −mean(A), and
    # the gradient is the policy gradient −A_t / (number of real tokens).
    logp, _, advantages, mask = ppo_batch(3, 4, 10)
    logp = logp.clone().requires_grad_()
    out = rlcore.ppo_clip_loss(logp, logp.detach(), advantages, mask, agg=agg)
    assert out.loss.item() == pytest.approx(ref.aggregate(-advantages, mask, agg))
    assert out.clip_frac.item() == 0.0 and out.approx_kl.item() == 0.0
    if agg == "token-mean":
        assert out.loss.item() == pytest.approx(-advantages[mask].mean().item())
        out.loss.backward()
        torch.testing.assert_close(logp.grad, -advantages * mask / mask.sum())


@pytest.mark.parametrize("agg", MODES)
def test_ppo_sequence_advantages_broadcast_over_tokens(agg):
    logp, old_logp, _, mask = ppo_batch(4, 5, 8)
    seq_adv = torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0], dtype=F64)
    a = rlcore.ppo_clip_loss(logp, old_logp, seq_adv, mask, agg=agg)
    b = rlcore.ppo_clip_loss(logp, old_logp, seq_adv[:, None].expand(5, 8), mask, agg=agg)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y)
    per_token, _ = ref.ppo_per_token(logp, old_logp, seq_adv)
    assert a.loss.item() == pytest.approx(ref.aggregate(per_token, mask, agg))


def test_ppo_padding_and_degenerate_rows():
    logp, old_logp, advantages, mask = ppo_batch(5, 3, 6)
    # a fully masked batch: everything is 0, nothing is NaN
    empty = torch.zeros_like(mask)
    out = rlcore.ppo_clip_loss(logp, old_logp, advantages, empty)
    assert out.loss.item() == 0.0 and out.clip_frac.item() == 0.0 and out.approx_kl.item() == 0.0
    # padded values do not matter
    changed = logp.clone()
    changed[~mask] += 10.0
    for x, y in zip(rlcore.ppo_clip_loss(changed, old_logp, advantages, mask),
                    rlcore.ppo_clip_loss(logp, old_logp, advantages, mask)):
        torch.testing.assert_close(x, y)
    # T = 1
    out = rlcore.ppo_clip_loss(torch.tensor([[math.log(1.5)]]), torch.zeros(1, 1), torch.tensor([2.0]),
                               torch.ones(1, 1, dtype=torch.bool))
    assert out.loss.item() == pytest.approx(-1.2 * 2.0) and out.clip_frac.item() == 1.0


def away_from_kinks(logp, old_logp, eps, eps_high):
    ratio = (logp - old_logp).exp()
    return bool(((ratio - (1 - eps)).abs() > 1e-3).all() and ((ratio - (1 + eps_high)).abs() > 1e-3).all())


@pytest.mark.parametrize("agg", MODES)
@pytest.mark.parametrize("eps_high", [None, 0.28], ids=["sym", "higher"])
def test_gradcheck_ppo(agg, eps_high):
    logp, old_logp, advantages, mask = ppo_batch(6, 3, 7, spread=0.3)
    assert away_from_kinks(logp, old_logp, 0.2, eps_high or 0.2)
    assert ((logp - old_logp).abs() > 0.2).any()  # some tokens are clipped
    assert torch.autograd.gradcheck(
        lambda lp: rlcore.ppo_clip_loss(lp, old_logp, advantages, mask, clip_eps_high=eps_high, agg=agg).loss,
        (logp.requires_grad_(),),
    )


@pytest.mark.parametrize("low", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_ppo_dtypes(low):
    logp, old_logp, advantages, mask = ppo_batch(7, 3, 5, dtype=torch.float32)
    lo = [x.to(low) for x in (logp, old_logp, advantages)]
    out = rlcore.ppo_clip_loss(*lo, mask)
    assert out.loss.dtype == out.clip_frac.dtype == torch.float32
    for x, y in zip(out, rlcore.ppo_clip_loss(*[x.float() for x in lo], mask)):
        torch.testing.assert_close(x, y)
    assert rlcore.ppo_clip_loss(logp.double(), old_logp.double(), advantages.double(), mask).loss.dtype == F64


def ppo_call(**overrides):
    a = dict(logp=torch.zeros(2, 3), old_logp=torch.zeros(2, 3), advantages=torch.zeros(2, 3),
             mask=torch.ones(2, 3, dtype=torch.bool))
    kw = {k: overrides.pop(k) for k in list(overrides) if k in ("clip_eps", "clip_eps_high", "agg")}
    a.update(overrides)
    return rlcore.ppo_clip_loss(a["logp"], a["old_logp"], a["advantages"], a["mask"], **kw)


PPO_BAD = [
    (dict(clip_eps=0.0), "clip_eps", "clip_eps-zero"),
    (dict(clip_eps=-0.1), "clip_eps", "clip_eps-negative"),
    (dict(clip_eps=float("nan")), "clip_eps", "clip_eps-nan"),
    (dict(clip_eps_high=0.0), "clip_eps_high", "clip_eps_high-zero"),
    (dict(agg="mean"), "agg", "agg-unknown"),
    (dict(logp=torch.zeros(2, 3, 1)), "logp", "logp-rank"),
    (dict(logp=torch.zeros(2, 3, dtype=torch.int64)), "logp", "logp-int"),
    (dict(logp=torch.tensor([[0.0, float("nan"), 0], [0, 0, 0]])), "logp", "logp-nan"),
    (dict(old_logp=torch.zeros(2, 4)), "old_logp", "old_logp-shape"),
    (dict(old_logp=torch.zeros(3)), "old_logp", "old_logp-rank"),
    (dict(old_logp=torch.zeros(2, 3, dtype=torch.int32)), "old_logp", "old_logp-int"),
    (dict(old_logp=torch.full((2, 3), float("inf"))), "old_logp", "old_logp-inf"),
    (dict(advantages=torch.zeros(2, 4)), "advantages", "advantages-shape"),
    (dict(advantages=torch.zeros(3)), "advantages", "advantages-B-mismatch"),
    (dict(advantages=torch.zeros(3, 2)), "advantages", "advantages-transposed"),
    (dict(advantages=torch.zeros(2, 3, 1)), "advantages", "advantages-rank"),
    (dict(advantages=torch.zeros(2, 3, dtype=torch.int64)), "advantages", "advantages-int"),
    (dict(advantages=torch.tensor([float("nan"), 0.0])), "advantages", "advantages-nan"),
    (dict(mask=torch.ones(2, 4, dtype=torch.bool)), "mask", "mask-shape"),
    (dict(mask=torch.tensor([[0, 1, 1], [1, 1, 1]], dtype=torch.bool)), "mask", "mask-not-trailing"),
]


@pytest.mark.parametrize("overrides, argname", [pytest.param(o, a, id=i) for o, a, i in PPO_BAD])
def test_ppo_bad_input_raises_value_error_naming_the_argument(overrides, argname):
    with pytest.raises(ValueError, match=rf"\b{argname}\b"):
        ppo_call(**overrides)


def test_ppo_good_call_does_not_raise():
    ppo_call()  # each bad case above changes one argument of this call


# ----------------------------------------------------------------------------------------
# Value loss.
# ----------------------------------------------------------------------------------------


class TestValueLossHandComputed:
    values = torch.tensor([[1.0, 2.0]], dtype=F64)
    old_values = torch.tensor([[0.5, 2.5]], dtype=F64)
    returns = torch.tensor([[0.0, 0.0]], dtype=F64)
    mask = torch.ones(1, 2, dtype=torch.bool)

    def test_unclipped(self):
        # ½ (1 − 0)² = 0.5 and ½ (2 − 0)² = 2: mean 1.25
        out = rlcore.value_loss(self.values, self.old_values, self.returns, self.mask)
        assert out.item() == pytest.approx(1.25)

    def test_clipped(self):
        # ε = 0.2. token 0: V_clip = 0.5 + clip(0.5) = 0.7, max(1², 0.7²) = 1      -> 0.5
        #          token 1: V_clip = 2.5 + clip(−0.5) = 2.3, max(2², 2.3²) = 5.29  -> 2.645
        # mean (0.5 + 2.645) / 2 = 1.5725
        out = rlcore.value_loss(self.values, self.old_values, self.returns, self.mask, clip_eps=0.2)
        assert out.item() == pytest.approx(1.5725)

    def test_padding_is_ignored(self):
        mask = torch.tensor([[True, False]])
        out = rlcore.value_loss(self.values, self.old_values, self.returns, mask, clip_eps=0.2)
        assert out.item() == pytest.approx(0.5)


@pytest.mark.parametrize("agg", MODES)
@pytest.mark.parametrize("clip_eps", [None, 0.1, 1.0], ids=["unclipped", "clip0.1", "clip1.0"])
@pytest.mark.parametrize("B, T", [(1, 1), (3, 8), (4, 33), (2, 300)], ids=["1x1", "3x8", "4x33", "2x300"])
def test_value_loss_matches_reference(B, T, clip_eps, agg):
    g = torch.Generator().manual_seed(B * T)
    values, old_values, returns = (torch.randn(B, T, generator=g, dtype=F64) for _ in range(3))
    mask = ref.random_trailing_mask(B, T, g)
    out = rlcore.value_loss(values, old_values, returns, mask, clip_eps=clip_eps, agg=agg)
    expected = ref.aggregate(ref.value_per_token(values, old_values, returns, clip_eps), mask, agg)
    assert out.item() == pytest.approx(expected, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("clip_eps", [None, 0.2], ids=["unclipped", "clipped"])
def test_gradcheck_value_loss(clip_eps):
    g = torch.Generator().manual_seed(8)
    old_values = torch.randn(3, 6, generator=g, dtype=F64)
    step = 0.4 * torch.randn(3, 6, generator=g, dtype=F64)
    values = old_values + step
    returns = torch.randn(3, 6, generator=g, dtype=F64)
    mask = ref.random_trailing_mask(3, 6, g)
    # away from the kinks: |V − V_old| ≠ ε, and the two squared errors not equal
    assert ((step.abs() - 0.2).abs() > 1e-3).all()
    v_clip = old_values + step.clamp(-0.2, 0.2)
    assert (((values - returns) ** 2 - (v_clip - returns) ** 2).abs()[step.abs() > 0.2] > 1e-3).all()
    assert torch.autograd.gradcheck(
        lambda v: rlcore.value_loss(v, old_values, returns, mask, clip_eps=clip_eps), (values.requires_grad_(),)
    )


def test_value_loss_gradient_is_the_error():
    # d/dV of ½ (V − R)² averaged over 3 tokens is (V − R) / 3
    values = torch.tensor([[1.0, 2.0, -1.0]], dtype=F64, requires_grad=True)
    returns = torch.tensor([[0.0, 3.0, 1.0]], dtype=F64)
    rlcore.value_loss(values, values.detach(), returns, torch.ones(1, 3, dtype=torch.bool)).backward()
    torch.testing.assert_close(values.grad, (values.detach() - returns) / 3)


@pytest.mark.parametrize("low", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_value_loss_dtypes(low):
    g = torch.Generator().manual_seed(9)
    v, vo, r = (torch.randn(2, 4, generator=g).to(low) for _ in range(3))
    mask = torch.ones(2, 4, dtype=torch.bool)
    out = rlcore.value_loss(v, vo, r, mask, clip_eps=0.2)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, rlcore.value_loss(v.float(), vo.float(), r.float(), mask, clip_eps=0.2))
    assert rlcore.value_loss(v.double(), vo.double(), r.double(), mask).dtype == F64


def value_call(**overrides):
    a = dict(values=torch.zeros(2, 3), old_values=torch.zeros(2, 3), returns=torch.zeros(2, 3),
             mask=torch.ones(2, 3, dtype=torch.bool))
    kw = {k: overrides.pop(k) for k in list(overrides) if k in ("clip_eps", "agg")}
    a.update(overrides)
    return rlcore.value_loss(a["values"], a["old_values"], a["returns"], a["mask"], **kw)


VALUE_BAD = [
    (dict(clip_eps=0.0), "clip_eps", "clip_eps-zero"),
    (dict(clip_eps=-1.0), "clip_eps", "clip_eps-negative"),
    (dict(agg="sum"), "agg", "agg-unknown"),
    (dict(values=torch.zeros(6)), "values", "values-rank"),
    (dict(values=torch.zeros(2, 3, dtype=torch.int64)), "values", "values-int"),
    (dict(values=torch.full((2, 3), float("nan"))), "values", "values-nan"),
    (dict(old_values=torch.zeros(2, 4)), "old_values", "old_values-shape"),
    (dict(old_values=torch.zeros(2, 3, dtype=torch.int64)), "old_values", "old_values-int"),
    (dict(returns=torch.zeros(1, 3)), "returns", "returns-shape"),
    (dict(returns=torch.full((2, 3), float("inf"))), "returns", "returns-inf"),
    (dict(mask=torch.ones(3, 2, dtype=torch.bool)), "mask", "mask-shape"),
    (dict(mask=torch.tensor([[1, 0, 1], [1, 1, 1]], dtype=torch.bool)), "mask", "mask-not-trailing"),
]


@pytest.mark.parametrize("overrides, argname", [pytest.param(o, a, id=i) for o, a, i in VALUE_BAD])
def test_value_loss_bad_input_raises_value_error_naming_the_argument(overrides, argname):
    value_call()  # the good call works
    with pytest.raises(ValueError, match=rf"\b{argname}\b"):
        value_call(**overrides)


# ----------------------------------------------------------------------------------------
# DPO.
# ----------------------------------------------------------------------------------------


def logsig(z):
    return -math.log1p(math.exp(-z))


class TestDPOHandComputed:
    # pair 0: π_c = −1, π_r = −3, ref_c = −2, ref_r = −2 -> h = (−1 + 3) − (−2 + 2) = 2
    # pair 1: π_c = −5, π_r = −1, ref_c = −4, ref_r = −2 -> h = (−5 + 1) − (−4 + 2) = −2
    pc = torch.tensor([-1.0, -5.0], dtype=F64)
    pr = torch.tensor([-3.0, -1.0], dtype=F64)
    rc = torch.tensor([-2.0, -4.0], dtype=F64)
    rr = torch.tensor([-2.0, -2.0], dtype=F64)

    @pytest.mark.parametrize(
        "loss_type, smoothing, expected",
        [
            # β = 0.1, βh = ±0.2:  −log σ(0.2) = 0.598139,  −log σ(−0.2) = 0.798139
            pytest.param("sigmoid", 0.0, [-logsig(0.2), -logsig(-0.2)], id="sigmoid"),
            # s = 0.1: 0.9·0.598139 + 0.1·0.798139 = 0.618139 and 0.9·0.798139 + 0.1·0.598139 = 0.778139
            pytest.param("sigmoid", 0.1, [0.618139, 0.778139], id="sigmoid-smoothed"),
            # (h − 1/(2β))² = (2 − 5)² = 9 and (−2 − 5)² = 49
            pytest.param("ipo", 0.0, [9.0, 49.0], id="ipo"),
            # max(0, 1 − βh) = 0.8 and 1.2
            pytest.param("hinge", 0.0, [0.8, 1.2], id="hinge"),
        ],
    )
    def test_losses(self, loss_type, smoothing, expected):
        ones = torch.ones(2, dtype=F64)  # IPO on summed log-probs: lengths of one
        out = rlcore.dpo_loss(self.pc, self.pr, self.rc, self.rr, beta=0.1, loss_type=loss_type,
                              label_smoothing=smoothing, chosen_lengths=ones, rejected_lengths=ones)
        torch.testing.assert_close(out.losses, torch.tensor(expected, dtype=F64), atol=1e-6, rtol=0)

    def test_ipo_averages_each_log_ratio_over_its_length(self):
        # lengths (2, 4) and (5, 1): h̄ = (π_c − ref_c)/L_c − (π_r − ref_r)/L_r
        # pair 0: 1/2 − (−1)/5 = 0.7;  pair 1: (−1)/4 − 1/1 = −1.25;  1/(2β) = 5
        out = rlcore.dpo_loss(self.pc, self.pr, self.rc, self.rr, beta=0.1, loss_type="ipo",
                              chosen_lengths=torch.tensor([2, 4]), rejected_lengths=torch.tensor([5, 1]))
        torch.testing.assert_close(out.losses, torch.tensor([(0.7 - 5) ** 2, (-1.25 - 5) ** 2], dtype=F64))

    def test_ipo_needs_the_lengths(self):
        with pytest.raises(ValueError, match="chosen_lengths"):
            rlcore.dpo_loss(self.pc, self.pr, self.rc, self.rr, loss_type="ipo")

    @pytest.mark.parametrize("lengths, match", [
        (torch.tensor([0, 3]), "chosen_lengths must be > 0"),
        (torch.tensor([1, 2, 3]), "chosen_lengths"),
        (torch.tensor([True, True]), "chosen_lengths"),
        ([1, 2], "chosen_lengths"),
        (torch.tensor([1.0, float("nan")]), "chosen_lengths"),
    ], ids=["zero", "shape", "bool", "list", "nan"])
    def test_ipo_rejects_bad_lengths(self, lengths, match):
        with pytest.raises(ValueError, match=match):
            rlcore.dpo_loss(self.pc, self.pr, self.rc, self.rr, loss_type="ipo", chosen_lengths=lengths,
                            rejected_lengths=torch.ones(2))

    def test_implicit_rewards(self):
        # β(π_c − ref_c) = 0.1·(1, −1);  β(π_r − ref_r) = 0.1·(−1, 1)
        out = rlcore.dpo_loss(self.pc, self.pr, self.rc, self.rr)
        assert isinstance(out, rlcore.DPOLoss)
        torch.testing.assert_close(out.chosen_rewards, torch.tensor([0.1, -0.1], dtype=F64))
        torch.testing.assert_close(out.rejected_rewards, torch.tensor([-0.1, 0.1], dtype=F64))

    def test_default_is_sigmoid_with_beta_0_1(self):
        a = rlcore.dpo_loss(self.pc, self.pr, self.rc, self.rr)
        b = rlcore.dpo_loss(self.pc, self.pr, self.rc, self.rr, beta=0.1, loss_type="sigmoid")
        torch.testing.assert_close(a.losses, b.losses)

    def test_hinge_is_zero_beyond_the_margin(self):
        # βh = 0.5 · 4 = 2 > 1: no loss and no gradient
        pc = torch.tensor([1.0], dtype=F64, requires_grad=True)
        out = rlcore.dpo_loss(pc, torch.tensor([-3.0], dtype=F64), torch.zeros(1, dtype=F64),
                              torch.zeros(1, dtype=F64), beta=0.5, loss_type="hinge")
        out.losses.sum().backward()
        assert out.losses.item() == 0.0 and pc.grad.item() == 0.0


@pytest.mark.parametrize("smoothing", [0.0, 0.25], ids=["s0", "s0.25"])
@pytest.mark.parametrize("beta", [0.01, 0.1, 1.0, 5.0], ids=["b0.01", "b0.1", "b1", "b5"])
@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_dpo_matches_reference(loss_type, beta, smoothing):
    g = torch.Generator().manual_seed(int(beta * 100))
    pc, pr, rc, rr = (-torch.rand(16, generator=g, dtype=F64) * 20 for _ in range(4))
    lc, lr = torch.randint(1, 30, (16,), generator=g), torch.randint(1, 30, (16,), generator=g)
    out = rlcore.dpo_loss(pc, pr, rc, rr, beta=beta, loss_type=loss_type, label_smoothing=smoothing,
                          chosen_lengths=lc, rejected_lengths=lr)
    expected = ref.dpo_losses(pc, pr, rc, rr, beta, loss_type, smoothing, lc.tolist(), lr.tolist())
    for got, want in zip(out, expected):
        torch.testing.assert_close(got, want)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.tuples(*[st.floats(-50, 0)] * 4), min_size=1, max_size=8),
    st.floats(0.01, 10),
    st.sampled_from(LOSS_TYPES),
    st.floats(-20, 20),
)
def test_property_dpo_depends_only_on_the_margin(rows, beta, loss_type, shift):
    # Adding the same constant to π_c and ref_c (or to π_r and ref_r) leaves h, the loss and the
    # difference of the implicit rewards' margins unchanged.
    pc, pr, rc, rr = (torch.tensor(col, dtype=F64) for col in zip(*rows))
    ones = torch.ones(len(rows), dtype=F64)
    a = rlcore.dpo_loss(pc, pr, rc, rr, beta=beta, loss_type=loss_type, chosen_lengths=ones, rejected_lengths=ones)
    b = rlcore.dpo_loss(pc + shift, pr, rc + shift, rr, beta=beta, loss_type=loss_type, chosen_lengths=ones,
                        rejected_lengths=ones)
    torch.testing.assert_close(a.losses, b.losses, rtol=1e-9, atol=1e-9)
    assert torch.isfinite(a.losses).all() and bool((a.losses >= 0).all())
    expected = ref.dpo_losses(pc, pr, rc, rr, beta, loss_type)
    torch.testing.assert_close(a.losses, expected[0], rtol=1e-9, atol=1e-9)


def test_dpo_sigmoid_is_stable_for_huge_margins():
    # βh = ±1e4: log σ must not overflow; −log σ(1e4) = 0 and −log σ(−1e4) = 1e4
    pc = torch.tensor([1e4, -1e4])
    zeros = torch.zeros(2)
    out = rlcore.dpo_loss(pc, zeros, zeros, zeros, beta=1.0)
    assert torch.isfinite(out.losses).all()
    torch.testing.assert_close(out.losses, torch.tensor([0.0, 1e4]))


def test_dpo_sigmoid_gradient():
    # d/dπ_c [−log σ(βh)] = −β σ(−βh) and d/dπ_r = +β σ(−βh)
    pc = torch.tensor([-1.0, -5.0], dtype=F64, requires_grad=True)
    pr = torch.tensor([-3.0, -1.0], dtype=F64, requires_grad=True)
    rc, rr = torch.tensor([-2.0, -4.0], dtype=F64), torch.tensor([-2.0, -2.0], dtype=F64)
    rlcore.dpo_loss(pc, pr, rc, rr, beta=0.1).losses.sum().backward()
    weight = torch.sigmoid(-0.1 * torch.tensor([2.0, -2.0], dtype=F64))
    torch.testing.assert_close(pc.grad, -0.1 * weight)
    torch.testing.assert_close(pr.grad, 0.1 * weight)


@pytest.mark.parametrize("smoothing", [0.0, 0.2], ids=["s0", "s0.2"])
@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_gradcheck_dpo(loss_type, smoothing):
    g = torch.Generator().manual_seed(10)
    pc, pr, rc, rr = (-torch.rand(6, generator=g, dtype=F64) * 10 for _ in range(4))
    beta = 0.3
    h = (pc - pr) - (rc - rr)
    assert ((beta * h - 1).abs() > 1e-3).all()  # away from the hinge's kink
    lc, lr = torch.tensor([1, 2, 3, 4, 5, 6]), torch.tensor([6, 5, 4, 3, 2, 1])
    assert torch.autograd.gradcheck(
        lambda c, r: rlcore.dpo_loss(c, r, rc, rr, beta=beta, loss_type=loss_type, label_smoothing=smoothing,
                                     chosen_lengths=lc, rejected_lengths=lr).losses,
        (pc.requires_grad_(), pr.requires_grad_()),
    )


def test_dpo_rewards_are_detached():
    pc = torch.tensor([-1.0], requires_grad=True)
    out = rlcore.dpo_loss(pc, torch.tensor([-2.0]), torch.tensor([-1.5]), torch.tensor([-1.5]))
    assert out.losses.requires_grad
    assert not out.chosen_rewards.requires_grad and not out.rejected_rewards.requires_grad


@pytest.mark.parametrize("low", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_dpo_dtypes(low):
    args = [torch.tensor([-1.0, -5.0]), torch.tensor([-3.0, -1.0]), torch.tensor([-2.0, -4.0]), torch.tensor([-2.0, -2.0])]
    lo = [a.to(low) for a in args]
    out = rlcore.dpo_loss(*lo)
    assert out.losses.dtype == out.chosen_rewards.dtype == torch.float32
    for x, y in zip(out, rlcore.dpo_loss(*[a.float() for a in lo])):
        torch.testing.assert_close(x, y)
    assert rlcore.dpo_loss(*[a.double() for a in args]).losses.dtype == F64


DPO_NAMES = ["policy_chosen_logps", "policy_rejected_logps", "ref_chosen_logps", "ref_rejected_logps"]


def dpo_call(**overrides):
    a = {name: torch.zeros(3) for name in DPO_NAMES}
    kw = {k: overrides.pop(k) for k in list(overrides) if k in ("beta", "loss_type", "label_smoothing")}
    a.update(overrides)
    return rlcore.dpo_loss(*(a[name] for name in DPO_NAMES), **kw)


DPO_BAD = [
    (dict(beta=0.0), "beta", "beta-zero"),
    (dict(beta=-0.1), "beta", "beta-negative"),
    (dict(beta=float("inf")), "beta", "beta-inf"),
    (dict(loss_type="kto"), "loss_type", "loss_type-unknown"),
    (dict(label_smoothing=0.5), "label_smoothing", "label_smoothing-half"),
    (dict(label_smoothing=-0.1), "label_smoothing", "label_smoothing-negative"),
] + [
    case
    for name in DPO_NAMES
    for case in [
        (dict({name: torch.zeros(4)}), name, f"{name}-shape"),
        (dict({name: torch.zeros(3, 1)}), name, f"{name}-rank"),
        (dict({name: torch.zeros(3, dtype=torch.int64)}), name, f"{name}-int"),
        (dict({name: torch.tensor([0.0, float("nan"), 0.0])}), name, f"{name}-nan"),
    ]
]


@pytest.mark.parametrize("overrides, argname", [pytest.param(o, a, id=i) for o, a, i in DPO_BAD])
def test_dpo_bad_input_raises_value_error_naming_the_argument(overrides, argname):
    dpo_call()  # the good call works
    with pytest.raises(ValueError, match=rf"\b{argname}\b"):
        dpo_call(**overrides)
