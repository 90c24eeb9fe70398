"""The code paths of the fast GAE: chunk boundaries, broken chunks, carries, cheap input checks.

``rlcore.scan`` solves the recurrence in chunks of ``K`` steps (a matrix product per chunk, the
plain recurrence for chunks with an episode end, a recursion over chunk carries). These tests
put lengths, dones and padding exactly where those paths meet, and compare with the per-step
loop ``rlcore.bench.gae_loop`` in float64.
"""

import math

import pytest
import torch

import rlcore
import reference as ref
from rlcore import _checks
from rlcore.bench import gae_loop
from rlcore.scan import _CHUNK as K
from rlcore.scan import discounted_reverse_scan, reverse_linear_scan

F64 = torch.float64

# Around one chunk, two chunks, one carry level (K·K) and two (K·K·K).
LENGTHS = [1, 2, K - 1, K, K + 1, 2 * K - 1, 2 * K, 2 * K + 1, 5 * K + 3, K * K - 1, K * K, K * K + 1,
           K * K * K + 5]
GAMMA_LAMS = [(0.99, 0.95), (1.0, 1.0), (1.0, 0.0), (0.0, 1.0), (0.5, 0.9), (1.0, 0.999)]


def make(B, T, *, seed=0, p_done=0.05, padded=True, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    rewards = torch.randn(B, T, generator=g, dtype=dtype)
    values = torch.randn(B, T, generator=g, dtype=dtype)
    dones = torch.rand(B, T, generator=g) < p_done
    lengths = torch.randint(max(T // 2, 1), T + 1, (B,), generator=g) if padded else torch.full((B,), T)
    mask = torch.arange(T)[None, :] < lengths[:, None]
    last_value = torch.randn(B, generator=g, dtype=dtype)
    return rewards, values, dict(dones=dones, mask=mask, last_value=last_value)


def check_gae(rewards, values, gamma, lam, atol=1e-10, **kw):
    adv, ret = rlcore.gae(rewards, values, gamma=gamma, lam=lam, **kw)
    ref_adv, ref_ret = gae_loop(rewards.to(F64), values.to(F64), gamma=gamma, lam=lam,
                                **{k: (v.to(F64) if k == "last_value" else v) for k, v in kw.items()})
    torch.testing.assert_close(adv.to(F64), ref_adv, rtol=0, atol=atol)
    torch.testing.assert_close(ret.to(F64), ref_ret, rtol=0, atol=atol)
    return adv, ret


@pytest.mark.parametrize("T", LENGTHS, ids=[f"T{T}" for T in LENGTHS])
@pytest.mark.parametrize("gamma,lam", GAMMA_LAMS, ids=[f"g{g}-l{l}" for g, l in GAMMA_LAMS])
def test_lengths_around_chunk_boundaries(T, gamma, lam):
    rewards, values, kw = make(3, T, seed=T)
    check_gae(rewards, values, gamma, lam, **kw)
    check_gae(rewards, values, gamma, lam)  # no dones, no mask: the unbroken path only


@pytest.mark.parametrize("gamma,lam", GAMMA_LAMS, ids=[f"g{g}-l{l}" for g, l in GAMMA_LAMS])
def test_dones_at_the_edges_of_chunks(gamma, lam):
    T = 4 * K + 3
    rewards, values, kw = make(6, T, seed=1, p_done=0.0, padded=False)
    dones = torch.zeros(6, T, dtype=torch.bool)
    dones[0, K - 1] = True  # last step of a chunk: the chunk carries nothing in
    dones[1, K] = True  # first step of a chunk
    dones[2, [K - 2, K - 1, K, K + 1]] = True  # a run of dones across a boundary
    dones[3, T - 1] = True  # done at the end: last_value is not used
    dones[4, ::K] = True  # one done in every chunk
    dones[5, K + 3: 2 * K - 2] = True  # many dones in one chunk
    kw.update(dones=dones)
    check_gae(rewards, values, gamma, lam, **kw)
    kw.update(mask=torch.arange(T)[None, :] < torch.tensor([K, K + 1, 2 * K, T, 1, 3 * K - 1])[:, None])
    check_gae(rewards, values, gamma, lam, **kw)


@pytest.mark.parametrize("T", [1, K, 3 * K + 1, K * K + 7], ids=lambda T: f"T{T}")
def test_all_dones_and_no_dones(T):
    rewards, values, kw = make(2, T, seed=2)
    for dones in (torch.ones(2, T, dtype=torch.bool), torch.zeros(2, T, dtype=torch.bool)):
        kw.update(dones=dones)
        check_gae(rewards, values, 0.9, 0.8, **kw)
    # all dones: every advantage is the TD residual, nothing is carried
    kw.update(dones=torch.ones(2, T, dtype=torch.bool))
    adv, _ = rlcore.gae(rewards, values, gamma=0.9, lam=0.8, **kw)
    torch.testing.assert_close(adv, rlcore.td_residuals(rewards, values, gamma=0.9, **kw))


def test_dones_only_in_padding_change_nothing():
    T = 3 * K + 5
    rewards, values, kw = make(4, T, seed=3, p_done=0.0)
    clean, _ = rlcore.gae(rewards, values, gamma=0.97, lam=0.9, **kw)
    kw.update(dones=~kw["mask"])
    padded_dones, _ = rlcore.gae(rewards, values, gamma=0.97, lam=0.9, **kw)
    torch.testing.assert_close(padded_dones, clean, rtol=0, atol=1e-12)  # other path, same sums


@pytest.mark.parametrize("rows", [1, 5, 64], ids=lambda b: f"B{b}")
def test_dense_and_sparse_dones_over_many_chunks(rows):
    T = 2 * K * K + 9  # two carry levels, broken and unbroken chunks side by side
    for p_done in (0.002, 0.05, 0.5):
        rewards, values, kw = make(rows, T, seed=int(p_done * 1000) + rows, p_done=p_done)
        check_gae(rewards, values, 0.99, 0.95, **kw)
        check_gae(rewards, values, 1.0, 1.0, **kw)


@pytest.mark.parametrize(
    "gamma,lam", [(0.99, 0.95), (1.0, 1.0), (0.999, 1.0)], ids=["g.99-l.95", "g1-l1", "g.999-l1"]
)
@pytest.mark.parametrize("T", [1024, 16384], ids=["T1024", "T16384"])
def test_float32_accuracy_on_long_rows(gamma, lam, T):
    # rewards, values ~ N(0, 1). In float32 the per-step loop itself drifts by ~1e-3 at γλ = 1
    # over 16k steps; the chunked scan stays within a few float32 ulps of the float64 answer.
    rewards, values, kw = make(4, T, seed=4, p_done=0.002)
    kw32 = dict(kw, last_value=kw["last_value"].float())
    adv, ret = rlcore.gae(rewards.float(), values.float(), gamma=gamma, lam=lam, **kw32)
    assert adv.dtype == ret.dtype == torch.float32
    ref_adv, ref_ret = gae_loop(rewards, values, gamma=gamma, lam=lam, **kw)
    scale = float(ref_adv.abs().max())
    tol = 1e-5 + 1e-6 * scale  # 1e-5 in the bench's regime (|A| ~ 10), ~4 ulps when |A| ~ 300
    assert float((adv.double() - ref_adv).abs().max()) <= tol
    assert float((ret.double() - ref_ret).abs().max()) <= tol
    if gamma * lam < 0.99:
        assert float((adv.double() - ref_adv).abs().max()) <= 1e-5


def test_float64_input_stays_float64_and_exact():
    rewards, values, kw = make(3, 5 * K + 1, seed=5)
    adv, ret = check_gae(rewards, values, 0.99, 0.95, atol=1e-12, **kw)
    assert adv.dtype == ret.dtype == F64


def test_mixed_precision_upcasts_to_the_widest():
    rewards, values, kw = make(2, 2 * K + 3, seed=6)
    adv, _ = rlcore.gae(rewards.float(), values, gamma=0.9, lam=0.9, **kw)
    assert adv.dtype == F64
    adv16, _ = rlcore.gae(rewards.half(), values.bfloat16(), gamma=0.9, lam=0.9,
                          **dict(kw, last_value=kw["last_value"].half()))
    assert adv16.dtype == torch.float32


def test_rewards_to_go_uses_the_same_paths():
    for T in (K - 1, K + 1, K * K + 3):
        rewards, _, kw = make(3, T, seed=T)
        out = rlcore.rewards_to_go(rewards, gamma=0.95, **kw)
        torch.testing.assert_close(out, ref.rewards_to_go(rewards, 0.95, **kw))


def test_non_contiguous_and_0_1_inputs():
    T = 3 * K + 2
    rewards, values, kw = make(4, T, seed=7)
    wide_r = torch.zeros(4, T + 4, dtype=F64)
    wide_r[:, 2:-2] = rewards
    wide_d = torch.zeros(4, T + 3, dtype=torch.bool)
    wide_d[:, 3:] = kw["dones"]
    args = dict(kw, dones=wide_d[:, 3:], mask=kw["mask"].to(torch.uint8))
    assert not args["dones"].is_contiguous()
    adv, _ = rlcore.gae(wide_r[:, 2:-2], values.T.contiguous().T, gamma=0.9, lam=0.7, **args)
    expected, _ = gae_loop(rewards, values, gamma=0.9, lam=0.7, **kw)
    torch.testing.assert_close(adv, expected)


# ----------------------------------------------------------------------------------------
# The scan functions themselves.
# ----------------------------------------------------------------------------------------


def loop_scan(a, c):
    out, nxt = torch.empty_like(a), torch.zeros_like(a.sum(-1))
    for t in reversed(range(a.shape[-1])):
        nxt = a[..., t] + c[..., t] * nxt
        out[..., t] = nxt
    return out


@pytest.mark.parametrize("T", [0, 1, K, K + 1, K * K + 1, 3 * K * K + 2], ids=lambda T: f"T{T}")
def test_discounted_reverse_scan_matches_the_loop(T):
    g = torch.Generator().manual_seed(T)
    a = torch.randn(2, 3, T, generator=g, dtype=F64)
    dones = torch.rand(2, 3, T, generator=g) < 0.1
    for rho in (0.0, 1e-30, 0.5, 0.97, 1.0):
        expected = loop_scan(a, rho * (~dones).to(F64))
        torch.testing.assert_close(discounted_reverse_scan(a, rho, dones=dones), expected)
        torch.testing.assert_close(discounted_reverse_scan(a, rho), loop_scan(a, torch.full_like(a, rho)))


def test_scans_do_not_modify_their_inputs():
    for T in (1, 4, K, 3 * K):
        a = torch.randn(1, T)
        dones = torch.rand(1, T) < 0.5
        before_a, before_d = a.clone(), dones.clone()
        discounted_reverse_scan(a, 0.9, dones=dones)
        reverse_linear_scan(a, torch.rand(1, T))
        assert torch.equal(a, before_a) and torch.equal(dones, before_d)


@pytest.mark.parametrize("T", [K - 1, 3 * K + 2, K * K + 5], ids=lambda T: f"T{T}")
def test_reverse_linear_scan_matches_the_loop_over_several_levels(T):
    g = torch.Generator().manual_seed(T)
    a = torch.randn(3, T, generator=g, dtype=F64)
    c = torch.rand(3, T, generator=g, dtype=F64) * (torch.rand(3, T, generator=g) > 0.1)
    torch.testing.assert_close(reverse_linear_scan(a, c), ref.reverse_linear_scan(a, c))


@pytest.mark.parametrize("T", [1, 2, 3, 5, 8, 64, 100, 1025], ids=lambda T: f"T{T}")
def test_doubling_scan_matches_the_loop(T):
    # the solver of densely cut chunk-head problems, on its own: any coefficients, zeros included
    from rlcore.scan import _doubling_scan

    g = torch.Generator().manual_seed(T)
    a = torch.randn(4, T, generator=g, dtype=F64)
    c = torch.rand(4, T, generator=g, dtype=F64) * (torch.rand(4, T, generator=g) > 0.15)
    c[0] = 1.0  # no decay and no cut: the longest sums
    before_a, before_c = a.clone(), c.clone()
    torch.testing.assert_close(_doubling_scan(a, c), loop_scan(a, c))
    assert torch.equal(a, before_a) and torch.equal(c, before_c)  # inputs untouched


@pytest.mark.parametrize("T", [K + 3, 2 * K * K + 1], ids=lambda T: f"T{T}")
def test_gradients_through_every_level(T):
    g = torch.Generator().manual_seed(T)
    a = torch.randn(2, T, generator=g, dtype=F64, requires_grad=True)
    dones = torch.rand(2, T, generator=g) < 0.05
    assert torch.autograd.gradcheck(lambda x: discounted_reverse_scan(x, 0.9, dones=dones), (a,))
    c = torch.rand(2, T, generator=g, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(reverse_linear_scan, (a, c))


def test_gae_gradcheck_over_several_chunks():
    rewards, values, kw = make(2, 2 * K + 5, seed=8)
    rewards.requires_grad_()
    values.requires_grad_()
    lv = kw.pop("last_value").requires_grad_()
    assert torch.autograd.gradcheck(
        lambda r, v, l: rlcore.gae(r, v, gamma=0.95, lam=0.9, last_value=l, **kw), (rewards, values, lv)
    )


# ----------------------------------------------------------------------------------------
# The cheap input checks give the same answers (and errors) as the direct ones.
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("T", [2, 3, K, 1000, 70_000], ids=lambda T: f"T{T}")
def test_trailing_mask_check_agrees_with_the_direct_test(T):
    g = torch.Generator().manual_seed(T)
    lengths = torch.randint(0, T + 1, (6,), generator=g)
    mask = torch.arange(T)[None, :] < lengths[:, None]
    _checks.check_trailing_mask(mask, "mask")
    for row, pos in ((0, 0), (3, T - 1), (5, T // 2)):
        bad = mask.clone()
        bad[row] = False
        bad[row, pos] = True  # one real step after padding (unless pos == 0)
        bad[row, : min(pos, 1)] = False
        direct = bool((bad[:, 1:] & ~bad[:, :-1]).any())
        if direct:
            with pytest.raises(ValueError, match=rf"mask.*rows \[{row}\]"):
                _checks.check_trailing_mask(bad, "mask")
        else:
            _checks.check_trailing_mask(bad, "mask")
    # a gap in the middle keeps the count of ones but not their positions
    bad = torch.ones(2, T, dtype=torch.bool)
    bad[1, (T - 1) // 2] = False
    with pytest.raises(ValueError, match="mask"):
        _checks.check_trailing_mask(bad, "mask")


def test_gae_rejects_a_non_trailing_mask_through_the_fast_check():
    rewards, values, kw = make(3, 4 * K, seed=9)
    mask = torch.ones(3, 4 * K, dtype=torch.bool)
    mask[2, K] = False
    with pytest.raises(ValueError, match="mask"):
        rlcore.gae(rewards, values, gamma=0.9, lam=0.9, mask=mask)
    with pytest.raises(ValueError, match="mask"):
        rlcore.gae(rewards.float(), values.float(), gamma=0.9, lam=0.9, mask=mask)


@pytest.mark.parametrize("name", ["rewards", "values", "last_value"])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
def test_non_finite_inputs_are_found_anywhere(name, bad):
    rewards, values, kw = make(2, 3 * K, seed=10)
    args = {"rewards": rewards, "values": values, "last_value": kw["last_value"]}
    target = args[name].clone()
    target.view(-1)[-1] = bad
    args[name] = target
    with pytest.raises(ValueError, match=name):
        rlcore.gae(args["rewards"], args["values"], gamma=0.9, lam=0.9, last_value=args["last_value"])


def test_huge_finite_inputs_are_accepted():
    # their sum overflows to inf, so the check falls back to looking at every element
    big = torch.full((2, 8), 3e38)
    assert not math.isfinite(big.sum().item())
    adv, _ = rlcore.gae(big, torch.zeros(2, 8), gamma=0.0, lam=0.0)
    assert torch.equal(adv, big)


# ----------------------------------------------------------------------------------------
# Branches inside the scan: how the dones are found, and how the carry is solved.
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("T", [5, 8, K, 3 * K + 7], ids=lambda T: f"T{T}")
def test_find_breaks_matches_any(T):
    from rlcore.scan import _find_breaks

    g = torch.Generator().manual_seed(T)
    dones = torch.rand(4, T + 3, generator=g) < 0.1
    for d in (dones[:, :T], dones[:, 3:], dones[:, :T].contiguous(), torch.zeros(4, T, dtype=torch.bool)):
        breaks = _find_breaks(d)
        k = min(K, T)
        n = -(-T // k)
        padded = torch.nn.functional.pad(d, (0, n * k - T)).reshape(-1, k)
        expected = padded.any(-1).nonzero().squeeze(1)
        if expected.numel() == 0:
            assert breaks is None
        else:
            assert torch.equal(breaks.chunks, expected)
            assert torch.equal(breaks.flags, padded[expected])


@pytest.mark.parametrize("layout", ["one-done-per-row", "every-chunk"])
def test_carry_with_few_and_with_many_broken_chunks(layout):
    # Few broken chunks: the carry is solved by the same matrix-product scan, one level up.
    # Many: by the recurrence on every chunk (the general blocked scan).
    T = 3 * K * K + 5
    g = torch.Generator().manual_seed(11)
    a = torch.randn(4, T, generator=g, dtype=F64)
    dones = torch.zeros(4, T, dtype=torch.bool)
    if layout == "one-done-per-row":
        dones[torch.arange(4), torch.tensor([3, K * K, 2 * K * K + 1, T - 1])] = True
    else:
        dones[:, 5::K] = True
    for rho in (0.9, 1.0):
        expected = loop_scan(a, rho * (~dones).to(F64))
        torch.testing.assert_close(discounted_reverse_scan(a, rho, dones=dones), expected)


def test_bench_runs_and_agrees():
    import io

    from rlcore import bench

    out = io.StringIO()
    rows = bench.bench_gae(shapes=((3, 40),), repeats=1, out=out)
    assert rows[0]["max_abs_diff"] < 1e-5
    assert rows[0]["scan_vs_lfilter_max_abs_diff"] < 1e-5  # like for like: the same numbers
    assert rows[0]["max_abs_diff_no_dones"] < 1e-5
    for contender in ("rlcore", "rlcore_no_dones", "loop", "lfilter", "scan", "copy"):
        assert rows[0][contender] > 0
    assert "rlcore.gae" in out.getvalue() and "thread" in out.getvalue()


def test_bench_threads_option(capsys):
    from rlcore import bench

    before = torch.get_num_threads()
    with pytest.raises(SystemExit):
        bench.main(["gae", "--threads", "0"])
    assert "--threads must be at least 1" in capsys.readouterr().err
    assert torch.get_num_threads() == before


def test_non_finite_inputs_still_win_over_later_errors():
    # gae checks finiteness of rewards and values from one sum over δ at the end; an error in a
    # later argument must still lose to a non-finite rewards or values, as in the argument order.
    rewards, values, kw = make(2, 2 * K, seed=12)
    bad_mask = torch.ones(2, 2 * K, dtype=torch.bool)
    bad_mask[0, 3] = False
    nan_rewards = rewards.clone()
    nan_rewards[1, 5] = math.nan
    inf_values = values.clone()
    inf_values[0, 0] = math.inf
    cases = [
        (dict(rewards=nan_rewards, values=values, mask=bad_mask), "rewards"),
        (dict(rewards=nan_rewards, values=values[:, :-1]), "rewards"),
        (dict(rewards=nan_rewards, values=values[0]), "rewards"),
        (dict(rewards=rewards, values=inf_values, mask=bad_mask), "values"),
        (dict(rewards=rewards, values=inf_values, dones=torch.full((2, 2 * K), 2.0)), "values"),
        (dict(rewards=rewards, values=inf_values, last_value=torch.zeros(3)), "values"),
        (dict(rewards=rewards, values=values, mask=bad_mask), "mask"),
        (dict(rewards=rewards, values=values[0]), "values"),
    ]
    for args, name in cases:
        with pytest.raises(ValueError, match=name):
            rlcore.gae(args.pop("rewards"), args.pop("values"), gamma=0.9, lam=0.9, **args)
    # a non-finite value hidden by padding or by a done is still an error
    mask = torch.arange(2 * K)[None, :] < torch.tensor([[K], [2 * K]])
    hidden = rewards.clone()
    hidden[0, K + 2] = math.inf
    with pytest.raises(ValueError, match="rewards"):
        rlcore.gae(hidden, values, gamma=0.9, lam=0.9, mask=mask)
    hidden_v = values.clone()
    hidden_v[0, K + 2] = -math.inf
    with pytest.raises(ValueError, match="values"):
        all_done = torch.ones(2, 2 * K, dtype=torch.bool)
        rlcore.gae(rewards, hidden_v, gamma=0.0, lam=0.0, mask=mask, dones=all_done)


def test_reduced_float32_matmul_precision_does_not_reduce_accuracy():
    # torch.set_float32_matmul_precision("medium") lets float32 products run in bf16; the chunk
    # products and the mask check must not follow.
    rewards, values, kw = make(3, 5 * K + 2, seed=13, dtype=torch.float32)
    before = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("medium")
        adv, _ = rlcore.gae(rewards, values, gamma=0.99, lam=0.95, **kw)
        bad = torch.ones(3, 5 * K + 2, dtype=torch.bool)
        bad[1, 4] = False
        with pytest.raises(ValueError, match="mask"):
            rlcore.gae(rewards, values, gamma=0.99, lam=0.95, mask=bad)
    finally:
        torch.set_float32_matmul_precision(before)
    expected, _ = gae_loop(rewards.double(), values.double(), gamma=0.99, lam=0.95,
                           **dict(kw, last_value=kw["last_value"].double()))
    torch.testing.assert_close(adv.double(), expected, rtol=0, atol=1e-5)
