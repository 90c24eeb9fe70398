"""Tests for rlcore.advantages: gae, group_advantages, rloo_advantages.

gae's input checks are shared with the returns functions and tested with them in
test_returns.py (the bad-input table there runs every case against gae too).
"""

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import rlcore
import reference as ref

F64 = torch.float64

LENGTHS = [1, 2, 3, 5, 8, 9, 16, 17, 31, 64, 100, 257, 300]
GAMMA_LAMS = [(0.99, 0.95), (1.0, 1.0), (1.0, 0.0), (0.5, 0.5), (0.0, 0.7), (0.9, 1.0), (1.0, 0.9)]
OPTION_SETS = {
    "plain": (),
    "dones": ("dones",),
    "mask": ("mask",),
    "last_value": ("last_value",),
    "dones+mask+last_value": ("dones", "mask", "last_value"),
}


def t(*rows):
    return torch.tensor(rows, dtype=F64)


def cases(seeds_per_length=2):
    out = []
    for T in LENGTHS:
        for k in range(seeds_per_length):
            seed = 1000 * T + k
            gamma, lam = GAMMA_LAMS[(T + k) % len(GAMMA_LAMS)]
            out.append(pytest.param(seed, T, gamma, lam, id=f"T{T}-seed{seed}-g{gamma}-l{lam}"))
    return out


def options(batch, which):
    return {name: batch.kwargs[name] for name in OPTION_SETS[which]}


# ----------------------------------------------------------------------------------------
# GAE
# ----------------------------------------------------------------------------------------


class TestGAEHandComputed:
    def test_bootstrapped_row(self):
        # gamma = lam = 0.5, rewards = values = [1, 2, 3, 4], last_value = 2.
        # δ = [1, 1.5, 2, 1] (see test_returns), and A_t = δ_t + 0.25 A_{t+1}:
        # A3 = 1, A2 = 2 + 0.25 = 2.25, A1 = 1.5 + 0.5625 = 2.0625, A0 = 1 + 0.515625 = 1.515625
        # returns = A + V = [2.515625, 4.0625, 5.25, 5]
        adv, ret = rlcore.gae(
            t([1, 2, 3, 4]), t([1, 2, 3, 4]), gamma=0.5, lam=0.5, last_value=torch.tensor([2.0], dtype=F64)
        )
        torch.testing.assert_close(adv, t([1.515625, 2.0625, 2.25, 1.0]))
        torch.testing.assert_close(ret, t([2.515625, 4.0625, 5.25, 5.0]))

    def test_done_cuts_the_sum(self):
        # done after t=1, no last_value: δ = [1, 0, 2, 0].
        # A3 = 0, A2 = 2 + 0.25*0 = 2, A1 = 0 (terminal: A2 is not added), A0 = 1 + 0.25*0 = 1
        adv, ret = rlcore.gae(
            t([1, 2, 3, 4]), t([1, 2, 3, 4]), gamma=0.5, lam=0.5, dones=t([0, 1, 0, 0]).bool()
        )
        torch.testing.assert_close(adv, t([1.0, 0.0, 2.0, 0.0]))
        torch.testing.assert_close(ret, t([2.0, 2.0, 5.0, 4.0]))

    def test_padding(self):
        # gamma = 1, lam = 0.5, rewards [0, 0, 1, 9], values [0.5, 0.5, 0.5, 7], mask [1, 1, 1, 0].
        # Step 2 is terminal: δ2 = 1 − 0.5 = 0.5, δ1 = 0 + 0.5 − 0.5 = 0, δ0 = 0.
        # A2 = 0.5, A1 = 0 + 0.5*0.5 = 0.25, A0 = 0 + 0.5*0.25 = 0.125, A3 = 0 (padded)
        adv, ret = rlcore.gae(
            t([0, 0, 1, 9]), t([0.5, 0.5, 0.5, 7]), gamma=1.0, lam=0.5, mask=t([1, 1, 1, 0]).bool(),
            last_value=torch.tensor([100.0], dtype=F64),
        )
        torch.testing.assert_close(adv, t([0.125, 0.25, 0.5, 0.0]))
        torch.testing.assert_close(ret, t([0.625, 0.75, 1.0, 0.0]))


@pytest.mark.parametrize("which", list(OPTION_SETS))
@pytest.mark.parametrize("seed, T, gamma, lam", cases())
def test_gae_matches_reference(seed, T, gamma, lam, which):
    batch = ref.random_batch(seed, T=T)
    kw = options(batch, which)
    adv, ret = rlcore.gae(batch.rewards, batch.values, gamma=gamma, lam=lam, **kw)
    ref_adv, ref_ret = ref.gae(batch.rewards, batch.values, gamma, lam, **kw)
    torch.testing.assert_close(adv, ref_adv)
    torch.testing.assert_close(ret, ref_ret)


@pytest.mark.parametrize("seed, T, gamma, lam", cases(seeds_per_length=1))
def test_gae_float32_matches_reference(seed, T, gamma, lam):
    batch = ref.random_batch(seed, T=T, dtype=torch.float32)
    adv, ret = rlcore.gae(batch.rewards, batch.values, gamma=gamma, lam=lam, **batch.kwargs)
    assert adv.dtype == ret.dtype == torch.float32
    ref_adv, ref_ret = ref.gae(batch.rewards, batch.values, gamma, lam, **batch.kwargs)
    torch.testing.assert_close(adv, ref_adv.float(), rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(ret, ref_ret.float(), rtol=1e-5, atol=1e-4)


class TestGAEIdentities:
    @pytest.mark.parametrize("seed, T, gamma, lam", cases(seeds_per_length=1))
    def test_lam_one_is_reward_to_go_minus_values(self, seed, T, gamma, lam):
        batch = ref.random_batch(seed, T=T)
        adv, _ = rlcore.gae(batch.rewards, batch.values, gamma=gamma, lam=1.0, **batch.kwargs)
        G = rlcore.rewards_to_go(batch.rewards, gamma=gamma, **batch.kwargs)
        torch.testing.assert_close(adv, G - batch.values * batch.mask)

    @pytest.mark.parametrize("seed, T, gamma, lam", cases(seeds_per_length=1))
    def test_lam_zero_is_td_residual(self, seed, T, gamma, lam):
        batch = ref.random_batch(seed, T=T)
        adv, _ = rlcore.gae(batch.rewards, batch.values, gamma=gamma, lam=0.0, **batch.kwargs)
        delta = rlcore.td_residuals(batch.rewards, batch.values, gamma=gamma, **batch.kwargs)
        torch.testing.assert_close(adv, delta)

    @pytest.mark.parametrize("seed, T, gamma, lam", cases(seeds_per_length=1))
    def test_returns_are_advantages_plus_values(self, seed, T, gamma, lam):
        batch = ref.random_batch(seed, T=T)
        adv, ret = rlcore.gae(batch.rewards, batch.values, gamma=gamma, lam=lam, **batch.kwargs)
        torch.testing.assert_close(ret, adv + batch.values * batch.mask)

    @pytest.mark.parametrize(
        "seed, T, lam, with_dones",
        [
            pytest.param(1, 1, 0.5, True, id="T1"),
            pytest.param(2, 2, 0.9, True, id="T2-dones"),
            pytest.param(3, 9, 0.3, True, id="T9-dones"),
            pytest.param(4, 40, 0.95, True, id="T40-dones"),
            pytest.param(5, 41, 0.8, False, id="T41-no-dones"),
            pytest.param(6, 300, 0.9, False, id="T300-no-dones"),
        ],
    )
    def test_gae_is_the_lambda_mixture_of_n_step_returns(self, seed, T, lam, with_dones):
        # The λ-return: G^λ_t = (1−λ) Σ_{n≥1} λ^{n−1} G^(n)_t. Every G^(n) with n ≥ T − t is the
        # full (bootstrapped) return, so the tail of the sum collapses exactly:
        #   G^λ_t = (1−λ) Σ_{n=1}^{T−1} λ^{n−1} G^(n)_t + λ^{T−1} G^(T)_t,   and  A_t = G^λ_t − V_t.
        batch = ref.random_batch(seed, B=3, T=T)
        kw = batch.kwargs if with_dones else dict(last_value=batch.last_value)
        gamma = 0.97
        lam_return = torch.zeros_like(batch.rewards)
        for n in range(1, T):
            G_n = rlcore.n_step_returns(batch.rewards, batch.values, n=n, gamma=gamma, **kw)
            lam_return += (1 - lam) * lam ** (n - 1) * G_n
        lam_return += lam ** (T - 1) * rlcore.n_step_returns(batch.rewards, batch.values, n=T, gamma=gamma, **kw)
        mask = kw.get("mask", torch.ones_like(batch.mask))
        adv, _ = rlcore.gae(batch.rewards, batch.values, gamma=gamma, lam=lam, **kw)
        torch.testing.assert_close(adv, lam_return - batch.values * mask)

    def test_truncated_infinite_lambda_sum_on_a_long_row(self):
        # Far from the end of a long row, the infinite λ-sum truncated where λ^n < 1e-13 already
        # gives A_0 (the neglected tail weight is λ^N · |G| ≈ 1e-13 · 30).
        batch = ref.random_batch(12, B=2, T=300)
        gamma, lam = 0.99, 0.5
        N = 45  # 0.5^45 ≈ 3e-14
        total = torch.zeros(2, dtype=F64)
        for n in range(1, N + 1):
            G_n = rlcore.n_step_returns(batch.rewards, batch.values, n=n, gamma=gamma)
            total += (1 - lam) * lam ** (n - 1) * (G_n[:, 0] - batch.values[:, 0])
        adv, _ = rlcore.gae(batch.rewards, batch.values, gamma=gamma, lam=lam)
        torch.testing.assert_close(adv[:, 0], total, rtol=1e-10, atol=1e-10)

    def test_batched_call_equals_per_row_calls(self):
        batch = ref.random_batch(21, B=6, T=37)
        adv, ret = rlcore.gae(batch.rewards, batch.values, gamma=0.9, lam=0.8, **batch.kwargs)
        for b in range(6):
            row_adv, row_ret = rlcore.gae(
                batch.rewards[b : b + 1], batch.values[b : b + 1], gamma=0.9, lam=0.8,
                dones=batch.dones[b : b + 1], mask=batch.mask[b : b + 1], last_value=batch.last_value[b : b + 1],
            )
            torch.testing.assert_close(adv[b : b + 1], row_adv)
            torch.testing.assert_close(ret[b : b + 1], row_ret)

    def test_dones_split_a_row_into_independent_episodes(self):
        # A row with a done after step 4 gives the same advantages as two separate rows.
        batch = ref.random_batch(22, B=1, T=10)
        dones = torch.zeros(1, 10, dtype=torch.bool)
        dones[0, 4] = True
        lv = batch.last_value
        adv, _ = rlcore.gae(batch.rewards, batch.values, gamma=0.9, lam=0.8, dones=dones, last_value=lv)
        first, _ = rlcore.gae(batch.rewards[:, :5], batch.values[:, :5], gamma=0.9, lam=0.8, dones=dones[:, :5])
        second, _ = rlcore.gae(batch.rewards[:, 5:], batch.values[:, 5:], gamma=0.9, lam=0.8, last_value=lv)
        torch.testing.assert_close(adv, torch.cat([first, second], dim=1))


@st.composite
def small_batches(draw):
    """Random small [B, T] rewards/values with dones, a trailing mask and last values."""
    B = draw(st.integers(1, 4))
    T = draw(st.integers(1, 12))
    num = st.floats(-10, 10, allow_nan=False, width=64)
    grid = st.lists(st.lists(num, min_size=T, max_size=T), min_size=B, max_size=B)
    rewards = torch.tensor(draw(grid), dtype=F64)
    values = torch.tensor(draw(grid), dtype=F64)
    dones = torch.tensor(draw(st.lists(st.lists(st.booleans(), min_size=T, max_size=T), min_size=B, max_size=B)))
    lengths = torch.tensor(draw(st.lists(st.integers(0, T), min_size=B, max_size=B)))
    mask = torch.arange(T)[None, :] < lengths[:, None]
    last_value = torch.tensor(draw(st.lists(num, min_size=B, max_size=B)), dtype=F64)
    return rewards, values, dict(dones=dones, mask=mask, last_value=last_value)


unit = st.floats(0.0, 1.0)


@settings(max_examples=50, deadline=None)
@given(small_batches(), unit, unit)
def test_property_gae_matches_reference(data, gamma, lam):
    rewards, values, kw = data
    adv, ret = rlcore.gae(rewards, values, gamma=gamma, lam=lam, **kw)
    ref_adv, ref_ret = ref.gae(rewards, values, gamma, lam, **kw)
    torch.testing.assert_close(adv, ref_adv)
    torch.testing.assert_close(ret, ref_ret)


@settings(max_examples=50, deadline=None)
@given(small_batches(), unit)
def test_property_gae_identities(data, gamma):
    rewards, values, kw = data
    masked_values = values * kw["mask"]
    adv1, ret1 = rlcore.gae(rewards, values, gamma=gamma, lam=1.0, **kw)
    torch.testing.assert_close(adv1, rlcore.rewards_to_go(rewards, gamma=gamma, **kw) - masked_values)
    torch.testing.assert_close(ret1, adv1 + masked_values)
    adv0, _ = rlcore.gae(rewards, values, gamma=gamma, lam=0.0, **kw)
    torch.testing.assert_close(adv0, rlcore.td_residuals(rewards, values, gamma=gamma, **kw))
    assert bool((adv1[~kw["mask"]] == 0).all()) and bool((adv0[~kw["mask"]] == 0).all())


def test_gradcheck_gae_wrt_rewards_values_and_last_value():
    batch = ref.random_batch(31, B=3, T=11)
    inputs = (
        batch.rewards.clone().requires_grad_(),
        batch.values.clone().requires_grad_(),
        batch.last_value.clone().requires_grad_(),
    )

    def both(r, v, lv):
        return rlcore.gae(r, v, gamma=0.9, lam=0.8, dones=batch.dones, mask=batch.mask, last_value=lv)

    assert torch.autograd.gradcheck(both, inputs)


def test_gae_gradient_is_the_discounted_sum_of_future_deltas():
    # dA_0/dr_t = (γλ)^t on a row with no dones: the credit step t gets for A_0
    rewards = torch.zeros(1, 6, dtype=F64, requires_grad=True)
    adv, _ = rlcore.gae(rewards, torch.zeros(1, 6, dtype=F64), gamma=0.9, lam=0.5)
    adv[0, 0].backward()
    torch.testing.assert_close(rewards.grad[0], 0.45 ** torch.arange(6, dtype=F64))


def test_gae_T1_fully_masked_row_and_dtypes():
    # T = 1: A = r + γ·last_value − V for the open row, r − V for the done row
    adv, ret = rlcore.gae(
        t([2.0], [3.0]), t([1.0], [5.0]), gamma=0.5, lam=0.9, dones=t([0], [1]).bool(),
        last_value=torch.tensor([4.0, 4.0], dtype=F64),
    )
    torch.testing.assert_close(adv, t([3.0], [-2.0]))
    torch.testing.assert_close(ret, t([4.0], [3.0]))
    # a fully masked row: zeros, no NaN
    batch = ref.random_batch(32, B=3, T=9)
    mask = batch.mask.clone()
    mask[2] = False
    adv, ret = rlcore.gae(batch.rewards, batch.values, gamma=1.0, lam=1.0, mask=mask, last_value=batch.last_value)
    assert torch.isfinite(adv).all() and torch.isfinite(ret).all()
    assert bool((adv[2] == 0).all()) and bool((ret[2] == 0).all())
    assert adv.dtype == F64


@pytest.mark.parametrize("low", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_gae_half_precision_is_upcast(low):
    batch = ref.random_batch(33, B=3, T=20)
    r, v, lv = batch.rewards.to(low), batch.values.to(low), batch.last_value.to(low)
    adv, ret = rlcore.gae(r, v, gamma=0.99, lam=0.95, dones=batch.dones, mask=batch.mask, last_value=lv)
    assert adv.dtype == ret.dtype == torch.float32
    adv32, ret32 = rlcore.gae(r.float(), v.float(), gamma=0.99, lam=0.95, dones=batch.dones, mask=batch.mask,
                              last_value=lv.float())
    torch.testing.assert_close(adv, adv32)
    torch.testing.assert_close(ret, ret32)


# ----------------------------------------------------------------------------------------
# Group advantages and RLOO
# ----------------------------------------------------------------------------------------


class TestGroupHandComputed:
    # Two groups of 4: [1, 0, 0, 1] (mean 0.5) and [2, 2, 2, 2] (all equal).
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 2.0, 2.0, 2.0, 2.0], dtype=F64)

    def test_std(self):
        # group std with Bessel: sqrt(4 · 0.25 / 3) = sqrt(1/3) ≈ 0.57735
        # A = ±0.5 / (0.57735 + 1e-6) ≈ ±0.866024; the constant group gets 0
        a = 0.5 / ((1 / 3) ** 0.5 + 1e-6)
        out = rlcore.group_advantages(self.rewards, 4)
        torch.testing.assert_close(out, torch.tensor([a, -a, -a, a, 0, 0, 0, 0], dtype=F64))
        assert abs(a - 0.866024) < 1e-6

    def test_none(self):
        # Dr. GRPO: r − mean_g, no scaling
        out = rlcore.group_advantages(self.rewards, 4, scale="none")
        torch.testing.assert_close(out, torch.tensor([0.5, -0.5, -0.5, 0.5, 0, 0, 0, 0], dtype=F64))

    def test_batch(self):
        # batch mean 10/8 = 1.25; squared deviations 0.0625 + 1.5625 + 1.5625 + 0.0625 + 4·0.5625 = 5.5
        # batch std = sqrt(5.5 / 7) ≈ 0.886405, so A = ±0.5 / 0.886405 ≈ ±0.564076
        a = 0.5 / ((5.5 / 7) ** 0.5 + 1e-6)
        out = rlcore.group_advantages(self.rewards, 4, scale="batch")
        torch.testing.assert_close(out, torch.tensor([a, -a, -a, a, 0, 0, 0, 0], dtype=F64))
        assert abs(a - 0.564076) < 1e-6

    def test_rloo(self):
        # A_0 = 1 − (0 + 0 + 1)/3 = 2/3,  A_1 = 0 − (1 + 0 + 1)/3 = −2/3; the constant group gets 0
        out = rlcore.rloo_advantages(self.rewards, 4)
        torch.testing.assert_close(out, torch.tensor([2, -2, -2, 2, 0, 0, 0, 0], dtype=F64) / 3)

    def test_groups_are_contiguous(self):
        # [0, 1 | 10, 30]: groups are (0, 1) and (10, 30), not interleaved (0, 10) and (1, 30)
        out = rlcore.group_advantages(torch.tensor([0.0, 1.0, 10.0, 30.0]), 2, scale="none")
        torch.testing.assert_close(out, torch.tensor([-0.5, 0.5, -10.0, 10.0]))


GROUP_CASES = [
    pytest.param(seed, P, G, id=f"P{P}-G{G}")
    for seed, (P, G) in enumerate([(1, 2), (3, 2), (1, 5), (4, 4), (7, 3), (16, 8), (2, 64)])
]


@pytest.mark.parametrize("scale", ["std", "none", "batch"])
@pytest.mark.parametrize("seed, P, G", GROUP_CASES)
def test_group_advantages_match_reference(seed, P, G, scale):
    g = torch.Generator().manual_seed(seed)
    rewards = torch.randn(P * G, generator=g, dtype=F64)
    rewards[:G] = 1.5  # one constant group
    out = rlcore.group_advantages(rewards, G, scale=scale)
    torch.testing.assert_close(out, ref.group_advantages(rewards, G, scale))


@pytest.mark.parametrize("seed, P, G", GROUP_CASES)
def test_rloo_matches_reference_and_identity(seed, P, G):
    g = torch.Generator().manual_seed(seed)
    rewards = (torch.rand(P * G, generator=g) < 0.5).to(F64)  # 0/1 verifier rewards
    out = rlcore.rloo_advantages(rewards, G)
    torch.testing.assert_close(out, ref.rloo_advantages(rewards, G))
    # RLOO = G/(G−1) · (r − group mean)
    torch.testing.assert_close(out, G / (G - 1) * rlcore.group_advantages(rewards, G, scale="none"))


def test_group_batched_call_equals_per_group_calls():
    rewards = torch.randn(12, generator=torch.Generator().manual_seed(3), dtype=F64)
    for fn, kw in [(rlcore.group_advantages, {}), (rlcore.group_advantages, dict(scale="none")),
                   (rlcore.rloo_advantages, {})]:
        whole = fn(rewards, 4, **kw)
        parts = torch.cat([fn(rewards[i : i + 4], 4, **kw) for i in range(0, 12, 4)])
        torch.testing.assert_close(whole, parts)


group_rewards = st.integers(1, 5).flatmap(
    lambda P: st.integers(2, 6).flatmap(
        lambda G: st.tuples(
            st.just(G),
            st.lists(
                st.one_of(st.floats(-100, 100, allow_nan=False), st.sampled_from([0.0, 1.0])),
                min_size=P * G, max_size=P * G,
            ),
        )
    )
)


@settings(max_examples=50, deadline=None)
@given(group_rewards, st.sampled_from(["std", "none", "batch"]))
def test_property_group_mean_is_zero(data, scale):
    G, rewards = data
    out = rlcore.group_advantages(torch.tensor(rewards, dtype=F64), G, scale=scale)
    assert torch.isfinite(out).all()
    group_means = out.view(-1, G).mean(dim=1)
    torch.testing.assert_close(group_means, torch.zeros_like(group_means), atol=1e-9, rtol=0)


@settings(max_examples=50, deadline=None)
@given(group_rewards)
def test_property_std_mode_has_unit_group_std(data):
    G, rewards = data
    x = torch.tensor(rewards, dtype=F64).view(-1, G)
    out = rlcore.group_advantages(x.flatten(), G, scale="std").view(-1, G)
    for group, adv in zip(x, out):
        if bool((group == group[0]).all()):
            assert bool((adv == 0).all())  # constant group: zeros, not NaN
        else:
            s = group.std().item()
            assume(s > 1e-3)  # with eps = 1e-6 the std is s / (s + eps), within 1e-3 of 1
            assert abs(adv.std().item() - 1.0) < 1e-3


@settings(max_examples=50, deadline=None)
@given(group_rewards)
def test_property_rloo_is_scaled_centred_reward(data):
    G, rewards = data
    r = torch.tensor(rewards, dtype=F64)
    expected = G / (G - 1) * (r.view(-1, G) - r.view(-1, G).mean(dim=1, keepdim=True)).flatten()
    torch.testing.assert_close(rlcore.rloo_advantages(r, G), expected, atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize(
    "fn, kw",
    [
        pytest.param(rlcore.group_advantages, dict(scale="std"), id="std"),
        pytest.param(rlcore.group_advantages, dict(scale="none"), id="none"),
        pytest.param(rlcore.group_advantages, dict(scale="batch"), id="batch"),
        pytest.param(rlcore.rloo_advantages, {}, id="rloo"),
    ],
)
def test_all_equal_groups_give_zeros_not_nan(fn, kw):
    rewards = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 0.0])  # every group constant, batch not
    out = fn(rewards, 3, **kw)
    assert bool((out == 0).all())
    out = fn(torch.full((6,), 7.0), 2, **kw)  # the whole batch constant
    assert bool((out == 0).all())


@pytest.mark.parametrize("low", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("scale", ["std", "none", "batch", "rloo"])
def test_group_dtypes(low, scale):
    rewards = torch.tensor([0.0, 1.0, 1.0, 0.5, 2.0, -1.0])
    fn = (lambda r: rlcore.rloo_advantages(r, 3)) if scale == "rloo" else (
        lambda r: rlcore.group_advantages(r, 3, scale=scale))
    out = fn(rewards.to(low))
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, fn(rewards))
    assert fn(rewards.to(F64)).dtype == F64


def test_gradcheck_group_advantages():
    r = torch.randn(8, generator=torch.Generator().manual_seed(4), dtype=F64, requires_grad=True)
    for scale in ("std", "none", "batch"):
        assert torch.autograd.gradcheck(lambda x: rlcore.group_advantages(x, 4, scale=scale), (r,))
    assert torch.autograd.gradcheck(lambda x: rlcore.rloo_advantages(x, 4), (r,))


GROUP_BAD = [
    # (call, the name the message must contain, id)
    (lambda: rlcore.group_advantages(torch.zeros(6), 4), "group_size", "std-does-not-divide"),
    (lambda: rlcore.rloo_advantages(torch.zeros(6), 4), "group_size", "rloo-does-not-divide"),
    (lambda: rlcore.group_advantages(torch.zeros(6), 1), "group_size", "std-size-1"),
    (lambda: rlcore.rloo_advantages(torch.zeros(6), 1), "group_size", "rloo-size-1"),
    (lambda: rlcore.group_advantages(torch.zeros(6), 0), "group_size", "std-size-0"),
    (lambda: rlcore.group_advantages(torch.zeros(6), 2.0), "group_size", "std-size-float"),
    (lambda: rlcore.group_advantages(torch.zeros(6), 2, scale="mean"), "scale", "unknown-scale"),
    (lambda: rlcore.group_advantages(torch.zeros(6), 2, eps=0.0), "eps", "eps-zero"),
    (lambda: rlcore.group_advantages(torch.zeros(6), 2, eps=-1e-6), "eps", "eps-negative"),
    (lambda: rlcore.group_advantages(torch.zeros(3, 2), 2), "rewards", "std-rank-2"),
    (lambda: rlcore.rloo_advantages(torch.zeros(3, 2), 2), "rewards", "rloo-rank-2"),
    (lambda: rlcore.group_advantages(torch.zeros(6, dtype=torch.int64), 2), "rewards", "std-int"),
    (lambda: rlcore.rloo_advantages(torch.zeros(6, dtype=torch.int64), 2), "rewards", "rloo-int"),
    (lambda: rlcore.group_advantages(torch.tensor([0.0, float("nan")]), 2), "rewards", "std-nan"),
    (lambda: rlcore.rloo_advantages(torch.tensor([0.0, float("inf")]), 2), "rewards", "rloo-inf"),
]


@pytest.mark.parametrize("bad_call, argname", [pytest.param(c, a, id=i) for c, a, i in GROUP_BAD])
def test_group_bad_input_raises_value_error_naming_the_argument(bad_call, argname):
    with pytest.raises(ValueError, match=rf"\b{argname}\b"):
        bad_call()
