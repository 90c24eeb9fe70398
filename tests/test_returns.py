"""Tests for rlcore.returns: discounted_return, rewards_to_go, td_residuals, n_step_returns."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import rlcore
import reference as ref

F64 = torch.float64

# Lengths: T = 1, odd and even, around the scan's loop cutoff (8) and powers of two, up to 300.
LENGTHS = [1, 2, 3, 5, 8, 9, 16, 17, 31, 64, 100, 257, 300]
GAMMAS = [0.0, 0.5, 0.9, 0.99, 1.0]


def t(*rows, dtype=F64):
    """A [B, T] tensor from rows of numbers (float64 unless told)."""
    return torch.tensor(rows, dtype=dtype)


def cases(seeds_per_length=2):
    """(seed, T) pairs with readable ids, covering every length in LENGTHS."""
    out = []
    for T in LENGTHS:
        for k in range(seeds_per_length):
            seed = 1000 * T + k
            out.append(pytest.param(seed, T, id=f"T{T}-seed{seed}"))
    return out


def gamma_for(seed):
    return GAMMAS[seed % len(GAMMAS)]


OPTION_SETS = {
    "plain": (),
    "dones": ("dones",),
    "mask": ("mask",),
    "last_value": ("last_value",),
    "dones+mask+last_value": ("dones", "mask", "last_value"),
}


def options(batch, which):
    """The subset of {dones, mask, last_value} named by ``which`` as keyword arguments."""
    return {name: batch.kwargs[name] for name in OPTION_SETS[which]}


# ----------------------------------------------------------------------------------------
# (1) Hand-computed values on a tiny batch.
# ----------------------------------------------------------------------------------------


class TestHandComputed:
    # Row used throughout: rewards [1, 2, 3, 4], values [1, 2, 3, 4], gamma = 0.5.

    def test_discounted_return(self):
        rewards = t([1, 2, 3, 4], [1, 2, 3, 4], [1, 2, 3, 4])
        mask = t([1, 1, 1, 1], [1, 1, 0, 0], [0, 0, 0, 0]).bool()
        # full row: 1 + 0.5*2 + 0.25*3 + 0.125*4 = 1 + 1 + 0.75 + 0.5 = 3.25
        # first two steps only: 1 + 0.5*2 = 2;   no real step: 0
        out = rlcore.discounted_return(rewards, gamma=0.5, mask=mask)
        torch.testing.assert_close(out, torch.tensor([3.25, 2.0, 0.0], dtype=F64))

    def test_discounted_return_gamma_one_is_the_plain_sum(self):
        out = rlcore.discounted_return(t([1, 2, 3, 4]))
        torch.testing.assert_close(out, torch.tensor([10.0], dtype=F64))

    def test_rewards_to_go(self):
        # G3 = 4, G2 = 3 + 0.5*4 = 5, G1 = 2 + 0.5*5 = 4.5, G0 = 1 + 0.5*4.5 = 3.25
        out = rlcore.rewards_to_go(t([1, 2, 3, 4]), gamma=0.5)
        torch.testing.assert_close(out, t([3.25, 4.5, 5.0, 4.0]))

    def test_rewards_to_go_stops_at_done(self):
        # done after t=1: G1 = 2, G0 = 1 + 0.5*2 = 2; a new episode: G3 = 4, G2 = 3 + 2 = 5
        dones = t([0, 1, 0, 0]).bool()
        out = rlcore.rewards_to_go(t([1, 2, 3, 4]), gamma=0.5, dones=dones)
        torch.testing.assert_close(out, t([2.0, 2.0, 5.0, 4.0]))

    def test_rewards_to_go_bootstraps_with_last_value(self):
        # G3 = 4 + 0.5*8 = 8, G2 = 3 + 4 = 7, G1 = 2 + 3.5 = 5.5, G0 = 1 + 2.75 = 3.75
        out = rlcore.rewards_to_go(t([1, 2, 3, 4]), gamma=0.5, last_value=torch.tensor([8.0], dtype=F64))
        torch.testing.assert_close(out, t([3.75, 5.5, 7.0, 8.0]))

    def test_rewards_to_go_padding_is_terminal_and_zero(self):
        # step 3 is padding: step 2 is the last real step, so last_value is not used.
        # G2 = 3, G1 = 2 + 1.5 = 3.5, G0 = 1 + 1.75 = 2.75, G3 = 0 (padded)
        out = rlcore.rewards_to_go(
            t([1, 2, 3, 4]), gamma=0.5, mask=t([1, 1, 1, 0]).bool(),
            last_value=torch.tensor([8.0], dtype=F64),
        )
        torch.testing.assert_close(out, t([2.75, 3.5, 3.0, 0.0]))

    def test_rewards_to_go_done_at_the_end_ignores_last_value(self):
        # done at T-1: G3 = 4, exactly as without last_value
        out = rlcore.rewards_to_go(
            t([1, 2, 3, 4]), gamma=0.5, dones=t([0, 0, 0, 1]).bool(),
            last_value=torch.tensor([8.0], dtype=F64),
        )
        torch.testing.assert_close(out, t([3.25, 4.5, 5.0, 4.0]))

    def test_td_residuals(self):
        # δ_t = r_t + 0.5 V_{t+1} − V_t with V = [1, 2, 3, 4], V_4 = last_value = 2:
        # δ0 = 1 + 1 − 1 = 1, δ1 = 2 + 1.5 − 2 = 1.5, δ2 = 3 + 2 − 3 = 2, δ3 = 4 + 1 − 4 = 1
        out = rlcore.td_residuals(
            t([1, 2, 3, 4]), t([1, 2, 3, 4]), gamma=0.5, last_value=torch.tensor([2.0], dtype=F64)
        )
        torch.testing.assert_close(out, t([1.0, 1.5, 2.0, 1.0]))

    def test_td_residuals_without_bootstrap_and_with_done(self):
        # no last_value: δ3 = 4 − 4 = 0; done after t=1: δ1 = 2 − 2 = 0
        out = rlcore.td_residuals(
            t([1, 2, 3, 4]), t([1, 2, 3, 4]), gamma=0.5, dones=t([0, 1, 0, 0]).bool()
        )
        torch.testing.assert_close(out, t([1.0, 0.0, 2.0, 0.0]))

    def test_n_step_returns(self):
        # n = 2, gamma = 0.5, V = [1, 2, 3, 4], last_value = 2:
        # G0 = 1 + 0.5*2 + 0.25*V2 = 1 + 1 + 0.75 = 2.75
        # G1 = 2 + 0.5*3 + 0.25*V3 = 2 + 1.5 + 1 = 4.5
        # G2 = 3 + 0.5*4 + 0.25*last_value = 3 + 2 + 0.5 = 5.5
        # G3 = 4 + 0.5*last_value = 5          (the row ends after one reward)
        out = rlcore.n_step_returns(
            t([1, 2, 3, 4]), t([1, 2, 3, 4]), n=2, gamma=0.5, last_value=torch.tensor([2.0], dtype=F64)
        )
        torch.testing.assert_close(out, t([2.75, 4.5, 5.5, 5.0]))

    def test_n_step_returns_stop_at_done(self):
        # done after t=1: G0 = 1 + 0.5*2 = 2 (no bootstrap), G1 = 2; the rest as above
        out = rlcore.n_step_returns(
            t([1, 2, 3, 4]), t([1, 2, 3, 4]), n=2, gamma=0.5, dones=t([0, 1, 0, 0]).bool(),
            last_value=torch.tensor([2.0], dtype=F64),
        )
        torch.testing.assert_close(out, t([2.0, 2.0, 5.5, 5.0]))


# ----------------------------------------------------------------------------------------
# (2) Vectorised against the loop reference on random shapes, seeds, masks and dones.
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", list(OPTION_SETS))
@pytest.mark.parametrize("seed, T", cases())
def test_rewards_to_go_matches_reference(seed, T, which):
    batch, gamma = ref.random_batch(seed, T=T), gamma_for(seed)
    kw = options(batch, which)
    out = rlcore.rewards_to_go(batch.rewards, gamma=gamma, **kw)
    torch.testing.assert_close(out, ref.rewards_to_go(batch.rewards, gamma, **kw))


@pytest.mark.parametrize("which", list(OPTION_SETS))
@pytest.mark.parametrize("seed, T", cases())
def test_td_residuals_matches_reference(seed, T, which):
    batch, gamma = ref.random_batch(seed, T=T), gamma_for(seed)
    kw = options(batch, which)
    out = rlcore.td_residuals(batch.rewards, batch.values, gamma=gamma, **kw)
    torch.testing.assert_close(out, ref.td_residuals(batch.rewards, batch.values, gamma, **kw))


@pytest.mark.parametrize("n", [1, 2, 3, 7, 50])
@pytest.mark.parametrize("seed, T", cases(seeds_per_length=1))
def test_n_step_returns_matches_reference(seed, T, n):
    batch, gamma = ref.random_batch(seed, T=T), gamma_for(seed)
    out = rlcore.n_step_returns(batch.rewards, batch.values, n=n, gamma=gamma, **batch.kwargs)
    expected = ref.n_step_returns(batch.rewards, batch.values, n, gamma, **batch.kwargs)
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("seed, T", cases(seeds_per_length=1))
def test_discounted_return_matches_reference(seed, T):
    batch, gamma = ref.random_batch(seed, T=T), gamma_for(seed)
    out = rlcore.discounted_return(batch.rewards, gamma=gamma, mask=batch.mask)
    torch.testing.assert_close(out, ref.discounted_return(batch.rewards, gamma, mask=batch.mask))


@pytest.mark.parametrize("seed, T", cases(seeds_per_length=1))
def test_float32_inputs_match_reference(seed, T):
    batch = ref.random_batch(seed, T=T, dtype=torch.float32)
    gamma = 0.99
    out = rlcore.rewards_to_go(batch.rewards, gamma=gamma, **batch.kwargs)
    assert out.dtype == torch.float32
    expected = ref.rewards_to_go(batch.rewards, gamma, **batch.kwargs).float()
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-4)
    out = rlcore.n_step_returns(batch.rewards, batch.values, n=5, gamma=gamma, **batch.kwargs)
    expected = ref.n_step_returns(batch.rewards, batch.values, 5, gamma, **batch.kwargs).float()
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-4)


# ----------------------------------------------------------------------------------------
# (3) Identities.
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed, T", cases(seeds_per_length=1))
def test_n_step_with_n_at_least_T_is_rewards_to_go(seed, T):
    batch, gamma = ref.random_batch(seed, T=T), gamma_for(seed)
    expected = rlcore.rewards_to_go(batch.rewards, gamma=gamma, **batch.kwargs)
    for n in (T, T + 1, 10 * T):
        out = rlcore.n_step_returns(batch.rewards, batch.values, n=n, gamma=gamma, **batch.kwargs)
        torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("seed, T", cases(seeds_per_length=1))
def test_one_step_return_is_td_residual_plus_value(seed, T):
    batch, gamma = ref.random_batch(seed, T=T), gamma_for(seed)
    out = rlcore.n_step_returns(batch.rewards, batch.values, n=1, gamma=gamma, **batch.kwargs)
    delta = rlcore.td_residuals(batch.rewards, batch.values, gamma=gamma, **batch.kwargs)
    torch.testing.assert_close(out, delta + batch.values * batch.mask)


@pytest.mark.parametrize("seed, T", cases(seeds_per_length=1))
def test_discounted_return_is_first_reward_to_go(seed, T):
    batch, gamma = ref.random_batch(seed, T=T), gamma_for(seed)
    out = rlcore.discounted_return(batch.rewards, gamma=gamma, mask=batch.mask)
    torch.testing.assert_close(out, rlcore.rewards_to_go(batch.rewards, gamma=gamma, mask=batch.mask)[:, 0])


@pytest.mark.parametrize("name", ["rewards_to_go", "td_residuals", "n_step_returns"])
def test_batched_call_equals_per_row_calls(name):
    batch = ref.random_batch(7, B=5, T=23)
    fn = getattr(rlcore, name)
    args = (batch.rewards,) if name == "rewards_to_go" else (batch.rewards, batch.values)
    extra = dict(gamma=0.9, n=3) if name == "n_step_returns" else dict(gamma=0.9)
    whole = fn(*args, **extra, **batch.kwargs)
    for b in range(5):
        row = fn(
            *(x[b : b + 1] for x in args), **extra,
            dones=batch.dones[b : b + 1], mask=batch.mask[b : b + 1], last_value=batch.last_value[b : b + 1],
        )
        torch.testing.assert_close(whole[b : b + 1], row)


def test_gamma_zero_reward_to_go_is_the_reward():
    batch = ref.random_batch(3, T=12)
    out = rlcore.rewards_to_go(batch.rewards, gamma=0.0, **batch.kwargs)
    torch.testing.assert_close(out, batch.rewards * batch.mask)


# ----------------------------------------------------------------------------------------
# (4) Properties (hypothesis).
# ----------------------------------------------------------------------------------------


@st.composite
def small_batches(draw):
    """Random small [B, T] rewards/values with dones, a trailing mask and last values."""
    B = draw(st.integers(1, 4))
    T = draw(st.integers(1, 12))
    num = st.floats(-10, 10, allow_nan=False, width=64)
    rewards = torch.tensor(draw(st.lists(st.lists(num, min_size=T, max_size=T), min_size=B, max_size=B)), dtype=F64)
    values = torch.tensor(draw(st.lists(st.lists(num, min_size=T, max_size=T), min_size=B, max_size=B)), dtype=F64)
    dones = torch.tensor(draw(st.lists(st.lists(st.booleans(), min_size=T, max_size=T), min_size=B, max_size=B)))
    lengths = torch.tensor(draw(st.lists(st.integers(0, T), min_size=B, max_size=B)))
    mask = torch.arange(T)[None, :] < lengths[:, None]
    last_value = torch.tensor(draw(st.lists(num, min_size=B, max_size=B)), dtype=F64)
    gamma = draw(st.sampled_from([0.0, 0.3, 0.9, 1.0]))
    return rewards, values, dict(dones=dones, mask=mask, last_value=last_value), gamma


@settings(max_examples=50, deadline=None)
@given(small_batches(), st.integers(1, 14))
def test_property_n_step_matches_reference(data, n):
    rewards, values, kw, gamma = data
    out = rlcore.n_step_returns(rewards, values, n=n, gamma=gamma, **kw)
    torch.testing.assert_close(out, ref.n_step_returns(rewards, values, n, gamma, **kw))


@settings(max_examples=50, deadline=None)
@given(small_batches())
def test_property_reward_to_go_recursion(data):
    # G_t − r_t = γ G_{t+1} wherever step t continues into a real step t+1
    rewards, _, kw, gamma = data
    G = rlcore.rewards_to_go(rewards, gamma=gamma, **kw)
    mask, dones = kw["mask"], kw["dones"]
    continues = mask[:, :-1] & mask[:, 1:] & ~dones[:, :-1]
    lhs = (G[:, :-1] - rewards[:, :-1])[continues]
    torch.testing.assert_close(lhs, (gamma * G[:, 1:])[continues])
    assert bool((G[~mask] == 0).all())


# ----------------------------------------------------------------------------------------
# (5) Gradients.
# ----------------------------------------------------------------------------------------


def test_gradcheck_rewards_to_go_and_n_step():
    batch = ref.random_batch(11, B=3, T=13)
    rewards = batch.rewards.clone().requires_grad_()
    values = batch.values.clone().requires_grad_()
    assert torch.autograd.gradcheck(
        lambda r: rlcore.rewards_to_go(r, gamma=0.9, **batch.kwargs), (rewards,)
    )
    assert torch.autograd.gradcheck(
        lambda r, v: rlcore.n_step_returns(r, v, n=3, gamma=0.9, **batch.kwargs), (rewards, values)
    )
    assert torch.autograd.gradcheck(
        lambda r, v: rlcore.td_residuals(r, v, gamma=0.9, **batch.kwargs), (rewards, values)
    )


# ----------------------------------------------------------------------------------------
# (6) Bad inputs raise ValueError naming the argument.
# ----------------------------------------------------------------------------------------


def good_args(B=2, T=5):
    return dict(
        rewards=torch.zeros(B, T), values=torch.zeros(B, T), dones=torch.zeros(B, T, dtype=torch.bool),
        mask=torch.ones(B, T, dtype=torch.bool), last_value=torch.zeros(B),
    )


def call(name, **overrides):
    """Call a returns function with good arguments, some replaced by ``overrides``."""
    a = {**good_args(), **overrides}
    kw = dict(dones=a["dones"], mask=a["mask"], last_value=a["last_value"])
    gamma = a.get("gamma", 0.9)
    if name == "discounted_return":
        return rlcore.discounted_return(a["rewards"], gamma=gamma, mask=a["mask"])
    if name == "rewards_to_go":
        return rlcore.rewards_to_go(a["rewards"], gamma=gamma, **kw)
    if name == "td_residuals":
        return rlcore.td_residuals(a["rewards"], a["values"], gamma=gamma, **kw)
    if name == "n_step_returns":
        return rlcore.n_step_returns(a["rewards"], a["values"], n=a.get("n", 2), gamma=gamma, **kw)
    if name == "gae":
        return rlcore.gae(a["rewards"], a["values"], gamma=gamma, lam=a.get("lam", 0.95), **kw)
    raise AssertionError(name)


ALL = ["discounted_return", "rewards_to_go", "td_residuals", "n_step_returns", "gae"]
WITH_VALUES = ["td_residuals", "n_step_returns", "gae"]
WITH_DONES = ["rewards_to_go", "td_residuals", "n_step_returns", "gae"]

NON_TRAILING = torch.tensor([[1, 0, 1, 1, 1], [1, 1, 1, 1, 1]], dtype=torch.bool)

BAD_INPUTS = [
    # (functions, argument overrides, the name the message must contain, id)
    (ALL, dict(rewards=torch.zeros(2, 5, 1)), "rewards", "rewards-rank-3"),
    (ALL, dict(rewards=torch.zeros(5)), "rewards", "rewards-rank-1"),
    (ALL, dict(rewards=torch.zeros(2, 5, dtype=torch.int64)), "rewards", "rewards-int"),
    (ALL, dict(rewards=torch.tensor([[0.0, 1, float("nan"), 0, 0], [0.0] * 5])), "rewards", "rewards-nan"),
    (ALL, dict(rewards=torch.tensor([[0.0, 1, float("inf"), 0, 0], [0.0] * 5])), "rewards", "rewards-inf"),
    (ALL, dict(mask=torch.ones(2, 4, dtype=torch.bool)), "mask", "mask-shape"),
    (ALL, dict(mask=NON_TRAILING), "mask", "mask-not-trailing"),
    (ALL, dict(mask=torch.full((2, 5), 0.5)), "mask", "mask-not-0-1"),
    (ALL, dict(gamma=-0.1), "gamma", "gamma-negative"),
    (ALL, dict(gamma=1.5), "gamma", "gamma-above-one"),
    (ALL, dict(gamma=float("nan")), "gamma", "gamma-nan"),
    (WITH_DONES, dict(dones=torch.zeros(2, 6, dtype=torch.bool)), "dones", "dones-shape"),
    (WITH_DONES, dict(dones=torch.zeros(5, dtype=torch.bool)), "dones", "dones-rank"),
    (WITH_DONES, dict(last_value=torch.zeros(3)), "last_value", "last_value-shape"),
    (WITH_DONES, dict(last_value=torch.zeros(2, 1)), "last_value", "last_value-rank"),
    (WITH_DONES, dict(last_value=torch.tensor([0.0, float("nan")])), "last_value", "last_value-nan"),
    (WITH_DONES, dict(last_value=torch.zeros(2, dtype=torch.int32)), "last_value", "last_value-int"),
    (WITH_VALUES, dict(values=torch.zeros(2, 4)), "values", "values-shape"),
    (WITH_VALUES, dict(values=torch.zeros(2, 5, 1)), "values", "values-rank"),
    (WITH_VALUES, dict(values=torch.zeros(2, 5, dtype=torch.int64)), "values", "values-int"),
    (WITH_VALUES, dict(values=torch.tensor([[0.0, float("inf"), 0, 0, 0], [0.0] * 5])), "values", "values-inf"),
    (["n_step_returns"], dict(n=0), "n", "n-zero"),
    (["n_step_returns"], dict(n=2.0), "n", "n-float"),
    (["gae"], dict(lam=-0.1), "lam", "lam-negative"),
    (["gae"], dict(lam=1.5), "lam", "lam-above-one"),
    (["gae"], dict(lam=float("nan")), "lam", "lam-nan"),
]


@pytest.mark.parametrize(
    "name, overrides, argname",
    [
        pytest.param(name, overrides, argname, id=f"{name}-{case_id}")
        for names, overrides, argname, case_id in BAD_INPUTS
        for name in names
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(name, overrides, argname):
    with pytest.raises(ValueError, match=rf"\b{argname}\b"):
        call(name, **overrides)


@pytest.mark.parametrize("name", ALL)
def test_good_args_do_not_raise(name):
    call(name)  # the bad-input cases above differ from this call in one argument only


# ----------------------------------------------------------------------------------------
# (7) Degenerate inputs and dtypes.
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["rewards_to_go", "td_residuals", "n_step_returns"])
def test_T_equals_one(name):
    # one step: G = r + γ·last_value; δ = r + γ·last_value − V; the 1-step return is G
    rewards, values = t([2.0], [3.0]), t([1.0], [5.0])
    last_value = torch.tensor([4.0, 4.0], dtype=F64)
    dones = t([0], [1]).bool()  # the second row ends: no bootstrap
    fn = getattr(rlcore, name)
    args = (rewards,) if name == "rewards_to_go" else (rewards, values)
    extra = dict(n=1) if name == "n_step_returns" else {}
    out = fn(*args, gamma=0.5, dones=dones, last_value=last_value, **extra)
    expected = {"rewards_to_go": t([4.0], [3.0]), "td_residuals": t([3.0], [-2.0]), "n_step_returns": t([4.0], [3.0])}
    torch.testing.assert_close(out, expected[name])


@pytest.mark.parametrize("name", ["rewards_to_go", "td_residuals", "n_step_returns", "discounted_return"])
def test_fully_masked_row_is_all_zeros(name):
    batch = ref.random_batch(5, B=3, T=10)
    mask = batch.mask.clone()
    mask[1] = False
    a = dict(rewards=batch.rewards, values=batch.values, dones=batch.dones, mask=mask, last_value=batch.last_value)
    out = call(name, **a)
    assert torch.isfinite(out).all()
    assert bool((out[1] == 0).all())


@pytest.mark.parametrize("low", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("name", ["discounted_return", "rewards_to_go", "td_residuals", "n_step_returns"])
def test_half_precision_is_upcast(name, low):
    batch = ref.random_batch(9, B=3, T=20)
    low_args = dict(rewards=batch.rewards.to(low), values=batch.values.to(low), last_value=batch.last_value.to(low),
                    dones=batch.dones, mask=batch.mask)
    same_in_f32 = {k: (v.float() if v.is_floating_point() else v) for k, v in low_args.items()}
    out = call(name, **low_args)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, call(name, **same_in_f32))


@pytest.mark.parametrize("name", ["discounted_return", "rewards_to_go", "td_residuals", "n_step_returns"])
def test_float64_stays_float64(name):
    batch = ref.random_batch(9, B=3, T=20)
    out = call(name, rewards=batch.rewards, values=batch.values, **batch.kwargs)
    assert out.dtype == F64


def test_long_row_with_gamma_one_has_no_cancellation():
    # 300 rewards of 1 with gamma = 1: G_t = 300 − t exactly
    out = rlcore.rewards_to_go(torch.ones(1, 300))
    torch.testing.assert_close(out, torch.arange(300, 0, -1, dtype=torch.float32)[None], rtol=0, atol=0)
    # n-step with n = 10 and V = 0: min(10, 300 − t)
    out = rlcore.n_step_returns(torch.ones(1, 300), torch.zeros(1, 300), n=10, gamma=1.0)
    expected = torch.clamp(torch.arange(300, 0, -1, dtype=torch.float32), max=10)[None]
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_tiny_gamma_powers_do_not_underflow_into_nan():
    # γ^t underflows to 0 for large t; the answer is just the first few rewards, never NaN
    out = rlcore.rewards_to_go(torch.ones(1, 300, dtype=F64), gamma=0.01)
    assert torch.isfinite(out).all()
    # far from the end G_t = 1 + 0.01 + 0.01² + … = 1 / 0.99; then 1.0101, 1.01, 1
    torch.testing.assert_close(out[0, :-3], torch.full((297,), 1 / 0.99, dtype=F64))
    torch.testing.assert_close(out[0, -3:], torch.tensor([1.0101, 1.01, 1.0], dtype=F64))
