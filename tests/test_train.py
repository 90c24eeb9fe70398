"""rlcore.train: the one loop. Each preset's first step equals the step of the loop it replaced,
written out as it was; bad configurations raise naming the field; every tensor the loop makes
is on the model's device; the update's options do what they say."""

from __future__ import annotations

import copy
import inspect
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch.overrides import TorchFunctionMode

import rlcore
from rlcore import presets
from rlcore.masked import aggregate
from rlcore.pairs import pair_logprobs, sample_pairs
from rlcore.policy import ValueModel, frozen_copy
from rlcore.reproducibility import step_seed
from rlcore.rollout import generate, response_logits, response_logprobs
from rlcore.tasks import verify_batch
from rlcore.tokens import token_logprobs
from rlcore.train import TrainConfig, check_config, train

SEED = 5


pytestmark = pytest.mark.usefixtures("one_thread")


def _one_step_of_train(fifth_grader, task, config):
    model, tokenizer = fifth_grader
    trained = copy.deepcopy(model)
    train(trained, tokenizer, task, replace(config, steps=1, eval_size=4, seed=SEED), progress=False)
    return trained


def _sample(model, tokenizer, task, config):
    problems = [p for p in next(task.stream(config.prompts_per_step, seed=SEED)) for _ in range(config.group_size)]
    ro = generate(model, tokenizer, [p.prompt for p in problems], temperature=config.temperature,
                  max_new_tokens=config.max_new_tokens, seed=SEED * 1_000_003 + 1, compute_logp=False)
    return ro, torch.tensor(verify_batch(ro.texts, problems, no_answer_penalty=config.no_answer_penalty))


# ---------------------------------------------------------------- the loops this one replaced

def test_reinforce_step_equals_the_old_reinforce_loop(fifth_grader, task):
    config = presets.reinforce("sign", prompts_per_step=8)
    model, tokenizer = fifth_grader
    old = copy.deepcopy(model)
    opt = torch.optim.Adam(old.parameters(), lr=config.lr)
    ro, rewards = _sample(old, tokenizer, task, config)
    weights = torch.where(rewards > 0.5, 1.0, -1.0)  # reinforce.py's _weights
    old.train()
    loss = aggregate(-weights[:, None] * response_logprobs(old, ro), ro.response_mask, "seq-mean-token-sum")
    opt.zero_grad()
    loss.backward()
    opt.step()
    new = _one_step_of_train(fifth_grader, task, config)
    assert all(torch.equal(a, b) for a, b in zip(old.parameters(), new.parameters()))


@pytest.mark.parametrize("overrides", [{}, {"beta": 0.04}], ids=["grpo", "grpo-kl"])
def test_grpo_step_equals_the_old_grpo_loop(fifth_grader, task, overrides):
    config = presets.grpo(prompts_per_step=4, group_size=4, **overrides)
    model, tokenizer = fifth_grader
    old, reference = copy.deepcopy(model), frozen_copy(model)
    opt = torch.optim.Adam(old.parameters(), lr=config.lr)
    ro, rewards = _sample(old, tokenizer, task, config)
    advantages = rlcore.group_advantages(rewards, config.group_size, scale="std")  # (N,) one per answer
    with torch.no_grad():
        old_logp, ref_logp = response_logprobs(old, ro), response_logprobs(reference, ro)
    old.train()
    for _ in range(config.epochs):  # grpo.py: minibatches in order, no gradient clipping
        for idx in torch.arange(len(ro)).chunk(config.minibatches):
            sub = ro.select(idx)
            logp = response_logprobs(old, sub)
            loss = rlcore.ppo_clip_loss(logp, old_logp[idx], advantages[idx], sub.response_mask,
                                        clip_eps=config.clip_eps, agg="seq-mean-token-mean").loss
            if config.beta > 0:
                kl = rlcore.kl_estimate(logp, ref_logp[idx], kind="k3")
                loss = loss + config.beta * aggregate(kl, sub.response_mask, "seq-mean-token-mean")
            opt.zero_grad()
            loss.backward()
            opt.step()
    new = _one_step_of_train(fifth_grader, task, config)
    assert all(torch.equal(a, b) for a, b in zip(old.parameters(), new.parameters()))


@pytest.mark.parametrize("loss_type", ["bnpo", "dapo"])
def test_bnpo_and_dapo_steps_equal_their_hand_loops(fifth_grader, task, loss_type):
    """TRL's bnpo divides each minibatch's token sum by its own tokens; dapo by the rollout's token
    count over the number of minibatches (every token of the batch weighs the same)."""
    config = presets.grpo(loss_type=loss_type, prompts_per_step=10, group_size=4, beta=0.04)
    model, tokenizer = fifth_grader
    old, reference = copy.deepcopy(model), frozen_copy(model)
    opt = torch.optim.Adam(old.parameters(), lr=config.lr)
    ro, rewards = _sample(old, tokenizer, task, config)
    advantages = rlcore.group_advantages(rewards, config.group_size, scale="std")
    assert advantages.abs().sum() > 0, "some group must carry a signal for the test to bite"
    with torch.no_grad():
        old_logp, ref_logp = response_logprobs(old, ro), response_logprobs(reference, ro)
    chunks = torch.arange(len(ro)).chunk(config.minibatches)
    counts = [int(ro.response_mask[idx].sum()) for idx in chunks]
    assert len(set(counts)) > 1, "the two minibatches should hold different token counts for the test to bite"
    old.train()
    for _ in range(config.epochs):
        for idx in chunks:
            sub = ro.select(idx)
            logp = response_logprobs(old, sub)
            ratio = torch.exp(logp - old_logp[idx])
            adv = advantages[idx][:, None]
            per_token = -torch.minimum(ratio * adv, ratio.clamp(1 - config.clip_eps, 1 + config.clip_eps) * adv)
            per_token = per_token + config.beta * rlcore.kl_estimate(logp, ref_logp[idx], kind="k3")
            total = (per_token * sub.response_mask).sum()
            divisor = sub.response_mask.sum() if loss_type == "bnpo" else ro.response_mask.sum() / len(chunks)
            opt.zero_grad()
            (total / divisor).backward()
            opt.step()
    new = _one_step_of_train(fifth_grader, task, config)
    for a, b in zip(old.parameters(), new.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    other = _one_step_of_train(fifth_grader, task, presets.grpo(loss_type="dapo" if loss_type == "bnpo" else "bnpo",
                                                                  prompts_per_step=10, group_size=4, beta=0.04))
    # Adam is nearly blind to a loss's scale, but not to the ratio of two minibatches' scales
    assert max((a - b).abs().max().item() for a, b in zip(new.parameters(), other.parameters())) > 0


def test_ppo_step_equals_the_old_ppo_loop(fifth_grader, task):
    config = presets.ppo(prompts_per_step=8)
    model, tokenizer = fifth_grader
    old, reference = copy.deepcopy(model), frozen_copy(model)
    critic = ValueModel.from_policy(old)
    opt = torch.optim.Adam(old.parameters(), lr=config.lr)
    critic_opt = torch.optim.Adam(critic.parameters(), lr=config.critic_lr)
    ro, marks = _sample(old, tokenizer, task, config)
    mask = ro.response_mask
    with torch.no_grad():  # ppo.py: shaped per-token rewards, GAE, whitening, all inline
        old_logp, ref_logp, old_values = response_logprobs(old, ro), response_logprobs(reference, ro), critic(ro)
        rewards = torch.zeros(mask.shape)
        rewards[torch.arange(len(ro)), mask.sum(1) - 1] = marks
        rewards = (rewards - config.beta * rlcore.kl_estimate(old_logp, ref_logp, kind="k1") * mask) * mask
        advantages, returns = rlcore.gae(rewards, old_values, gamma=config.gamma, lam=config.lam, mask=mask)
        advantages = rlcore.whiten(advantages, mask)
    gen = torch.Generator().manual_seed(SEED * 1_000_003 + 1)
    old.train()
    critic.train()
    for _ in range(config.epochs):  # shuffled minibatches, policy then critic, both gradients clipped
        for idx in torch.randperm(len(ro), generator=gen).chunk(config.minibatches):
            sub = ro.select(idx)
            logp = token_logprobs(response_logits(old, sub), sub.response_ids) * sub.response_mask
            loss = rlcore.ppo_clip_loss(logp, old_logp[idx], advantages[idx], sub.response_mask).loss
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(old.parameters(), 1.0)
            opt.step()
            vloss = rlcore.value_loss(critic(sub), old_values[idx], returns[idx], sub.response_mask)
            critic_opt.zero_grad()
            vloss.backward()
            torch.nn.utils.clip_grad_norm_(critic.parameters(), 1.0)
            critic_opt.step()
    new = _one_step_of_train(fifth_grader, task, config)
    assert all(torch.equal(a, b) for a, b in zip(old.parameters(), new.parameters()))


def test_dpo_step_equals_the_old_dpo_loop(fifth_grader, task):
    config = presets.dpo(prompts_per_step=8, group_size=4, pairs_per_step=4, kl_size=0, probe_prompts=0)
    model, tokenizer = fifth_grader
    old, reference = copy.deepcopy(model), frozen_copy(model)
    opt = torch.optim.Adam(old.parameters(), lr=config.lr)
    problems = task.stream(config.prompts_per_step, seed=SEED)
    pools, n, rounds = [], 0, 0
    while n < config.pairs_per_step:  # dpo.py: sampling rounds until there are enough pairs
        rounds += 1
        pairs, _ = sample_pairs(old, tokenizer, next(problems), reference=reference, samples_per_prompt=4,
                                seed=SEED * 1_000_003 + rounds)
        pools.append(pairs)
        n += len(pairs)
    pool = type(pools[0]).cat(pools)
    batch = pool.select(torch.randperm(len(pool), generator=torch.Generator().manual_seed(SEED))[:4])
    old.train()
    chosen, rejected = pair_logprobs(old, batch)
    loss = rlcore.dpo_loss(chosen, rejected, batch.ref_chosen_logps, batch.ref_rejected_logps, beta=0.1).losses.mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    new = _one_step_of_train(fifth_grader, task, config)
    assert all(torch.equal(a, b) for a, b in zip(old.parameters(), new.parameters()))


# ---------------------------------------------------------------- the configuration

@pytest.mark.parametrize("changes, field", [
    (dict(credit="vine"), "credit"),
    (dict(loss_agg_mode="mean"), "loss_agg_mode"),
    (dict(scale_rewards="std"), "scale_rewards"),
    (dict(kl_kind="k4"), "kl_kind"),
    (dict(dpo_loss_type="kto"), "dpo_loss_type"),
    (dict(steps=0), "steps"),
    (dict(minibatches=2.5), "minibatches"),
    (dict(lr=0.0), "lr"),
    (dict(beta=-0.1), "beta"),
    (dict(credit="rloo", group_size=1), "group_size"),
    (dict(credit="dpo", group_size=4, beta=0.0), "beta"),
    (dict(epochs=2), "clip_eps"),
    (dict(kl_in_reward=True), "kl_in_reward"),
    (dict(prompts_per_step=2, minibatches=4), "minibatches"),
])
def test_bad_configurations_raise_naming_the_field(changes, field):
    with pytest.raises(ValueError, match=field):
        check_config(replace(TrainConfig(), **changes))


def test_the_defaults_are_the_books():
    from rlcore import settings

    assert TrainConfig() == settings.CHAPTER1_REINFORCE == presets.reinforce()
    assert settings.CHAPTER7_PPO == presets.ppo() and settings.CHAPTER8_GRPO == presets.grpo()
    assert settings.CHAPTER9_DPO == presets.dpo()
    for config in (settings.CHAPTER1_REINFORCE, settings.CHAPTER7_PPO, settings.CHAPTER8_GRPO, settings.CHAPTER9_DPO,
                   *settings.HEAD_TO_HEAD.values()):
        check_config(config)
    assert presets.grpo(loss_type="dr_grpo").loss_agg_mode == "seq-mean-token-sum-norm"


def test_step_seed_is_the_one_formula():
    assert step_seed(3, 7) == 3 * 1_000_003 + 7
    root = Path(rlcore.__file__).parent
    users = [p.name for p in root.glob("*.py") if "1_000_003" in p.read_text()]
    assert users == ["reproducibility.py"]


# ---------------------------------------------------------------- devices

FACTORIES = {torch.tensor, torch.zeros, torch.ones, torch.full, torch.empty, torch.arange, torch.randn,
             torch.rand, torch.randint, torch.randperm, torch.as_tensor}
#: Index tensors that may stay on the CPU: they pick rows or shuffle them, and PyTorch indexes a
#: tensor on any device with them, so a run draws the same minibatches on every device.
CPU_INDICES = {("train.py", "torch.randperm"), ("train.py", "torch.arange"), ("train.py", "torch.zeros"),
               ("pairs.py", "torch.randperm")}


class _FactoryAudit(TorchFunctionMode):
    """Records every tensor factory that rlcore's own code calls without a ``device``."""

    def __init__(self):
        super().__init__()
        self.calls = set()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in FACTORIES and "device" not in kwargs:
            caller = inspect.stack(context=0)[1]
            if f"{Path(rlcore.__file__).parent}" in caller.filename:
                self.calls.add((Path(caller.filename).name, f"torch.{func.__name__}"))
        return func(*args, **kwargs)


@pytest.mark.parametrize("config", [presets.reinforce("rloo", prompts_per_step=4, group_size=2),
                                    presets.grpo(prompts_per_step=2, group_size=4, beta=0.04, shuffle=True),
                                    presets.ppo(prompts_per_step=4),
                                    presets.dpo(prompts_per_step=4, group_size=4, pairs_per_step=2, kl_size=4,
                                                probe_prompts=4)],
                         ids=["reinforce", "grpo", "ppo", "dpo"])
def test_every_tensor_the_loop_makes_is_on_the_models_device(fifth_grader, task, config):
    """On a CPU machine every device is the CPU, so the test looks at how tensors are made: each
    one rlcore creates names the model's device, except the listed row indices. (On a GPU the same
    run has been checked with ``--device cuda``.)"""
    model, tokenizer = fifth_grader
    audit = _FactoryAudit()
    with audit:
        result = train(copy.deepcopy(model), tokenizer, task, replace(config, steps=2, eval_size=4, eval_every=1),
                       progress=False)
    assert audit.calls <= CPU_INDICES, audit.calls - CPU_INDICES
    device = next(model.parameters()).device
    for network in (result["critic"], result["reference"]):
        if network is not None:
            assert all(p.device == device for p in network.parameters())


# ---------------------------------------------------------------- what the options do

def test_a_plain_step_and_a_clipped_on_policy_step_move_the_weights_alike(fifth_grader, task):
    """At the first update of a batch the ratio is exactly 1, so PPO's clipped surrogate has the
    plain policy gradient: one pass, one minibatch, with or without clip_eps, moves the same way."""
    plain = _one_step_of_train(fifth_grader, task, presets.reinforce("batch", prompts_per_step=8))
    clipped = _one_step_of_train(fifth_grader, task, presets.reinforce("batch", prompts_per_step=8, clip_eps=0.2))
    for a, b in zip(plain.parameters(), clipped.parameters()):
        assert torch.allclose(a, b, atol=1e-7)


class _Rows:
    """A batch of ``n`` rows, as :func:`rlcore.train.update` sees one (``len`` and ``select``)."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def select(self, idx):
        return idx


@pytest.mark.parametrize("shuffle", [False, True])
def test_update_makes_epochs_times_minibatches_steps_over_every_row(shuffle):
    from rlcore.train import update

    weight = torch.nn.Parameter(torch.zeros(3))
    seen = []

    def objective(idx):
        seen.append(idx.tolist())
        return (weight * 1.0).sum(), {"loss": 1.0}

    config = replace(TrainConfig(), epochs=3, minibatches=4, clip_eps=0.2, shuffle=shuffle)
    stats = update(torch.nn.Linear(1, 1), torch.optim.SGD([weight], lr=0.1), _Rows(10), objective, config,
                   generator=torch.Generator().manual_seed(0))
    assert len(seen) == 12 and stats == {"loss": 1.0, "grad_norm": 0.0}
    for epoch in range(3):  # each pass covers every row once, in minibatches of 3, 3, 3 and 1 rows
        rows = [r for chunk in seen[4 * epoch:4 * epoch + 4] for r in chunk]
        assert sorted(rows) == list(range(10)) and [len(c) for c in seen[4 * epoch:4 * epoch + 4]] == [3, 3, 3, 1]
        assert (rows != list(range(10))) == shuffle
    assert torch.allclose(weight, torch.full((3,), -0.1 * 12))  # one SGD step per minibatch


def test_update_clips_the_gradient_norm():
    from rlcore.train import update

    model = torch.nn.Module()
    model.weight = weight = torch.nn.Parameter(torch.zeros(4))
    objective = lambda idx: ((weight * torch.tensor([300.0, 400.0, 0.0, 0.0])).sum(), {})  # gradient norm 500
    config = replace(TrainConfig(), max_grad_norm=2.0)
    update(model, torch.optim.SGD(model.parameters(), lr=1.0), _Rows(4), objective, config)
    assert torch.allclose(weight, -torch.tensor([1.2, 1.6, 0.0, 0.0]))  # the step has norm 2, the same direction


def test_the_history_logs_what_a_reader_checks(fifth_grader, task):
    model, tokenizer = fifth_grader
    result = train(copy.deepcopy(model), tokenizer, task,
                   presets.grpo(steps=2, prompts_per_step=2, group_size=4, beta=0.04, eval_every=2, eval_size=8),
                   progress=False)
    entry = result["history"][-1]
    for key in ("reward", "zero_signal", "all_right", "response_length", "truncated", "kl_ref", "clip_frac",
                "approx_kl", "entropy", "loss", "policy_loss", "accuracy", "samples", "seconds"):
        assert key in entry and math.isfinite(entry[key]), key
    assert 0 <= entry["truncated"] <= 1 and entry["kl_ref"] >= 0


def test_ppo_without_a_kl_penalty_still_logs_its_kl_to_the_reference(fifth_grader, task):
    """Chapter 7's ablation compares the KL of runs with and without the penalty."""
    model, tokenizer = fifth_grader
    result = train(copy.deepcopy(model), tokenizer, task,
                   presets.ppo(steps=1, prompts_per_step=4, beta=0.0, eval_size=4), progress=False)
    assert result["reference"] is not None and result["history"][-1]["kl_ref"] >= 0


def test_monte_carlo_credit_counts_its_continuations_in_the_budget(fifth_grader, task):
    model, tokenizer = fifth_grader
    config = TrainConfig(credit="mc", mc_samples=2, prompts_per_step=3, steps=1, eval_size=4)
    result = train(copy.deepcopy(model), tokenizer, task, config, progress=False)
    entry = result["history"][-1]
    # three answers, and two continuations from every state of each (about ten states an answer)
    assert 3 + 2 * 3 * 5 <= result["samples"] == entry["samples"] <= 3 + 2 * 3 * 12
    assert math.isfinite(entry["loss"])


def test_the_step_verifiers_credit_trains_on_the_running_sum_task(fifth_grader):
    from rlcore.tasks import RunningSumTask

    model, tokenizer = fifth_grader
    task = RunningSumTask()
    config = TrainConfig(credit="oracle", prompts_per_step=4, steps=1, eval_size=4, max_new_tokens=task.max_new_tokens)
    trained = copy.deepcopy(model)
    result = train(trained, tokenizer, task, config, progress=False)
    assert result["samples"] == 4 and math.isfinite(result["history"][-1]["loss"])
    assert any(not torch.equal(a, b) for a, b in zip(trained.parameters(), model.parameters()))


def test_a_run_on_the_running_sum_task_uses_its_grader_and_budget():
    from rlcore.runs import run

    out = run("reinforce", presets.reinforce("batch", prompts_per_step=4, eval_size=50), seed=0, steps=1,
              task="running_sum", progress=False)
    assert out["history"][-1]["response_length"] > 20  # 27-token answers fit: the task's budget, not 12
    assert out["model"].config.max_position_embeddings == 64  # the running sums' own grader
    assert 0.0 < out["accuracy_before"] < 0.5


def test_kl_to_the_reference_is_measured_on_the_sampling_policy(fifth_grader, task):
    """REINFORCE with a KL term (no clip, no critic): kl_ref is logged from the policy that sampled,
    so at the first step, where that policy is the reference, it is exactly 0."""
    model, tokenizer = fifth_grader
    result = train(copy.deepcopy(model), tokenizer, task, presets.reinforce("batch", prompts_per_step=4, beta=0.1,
                                                                            steps=1, eval_size=4), progress=False)
    assert result["history"][-1]["kl_ref"] == 0.0


def test_the_loop_normalises_dr_grpo_by_the_generation_budget(monkeypatch):
    """Dr. GRPO's constant is max_new_tokens (TRL's max_completion_length), not the batch's width."""
    import rlcore.losses
    import rlcore.train as train_module
    from rlcore import presets
    from rlcore.masked import aggregate
    from rlcore.policy import load_policy
    from rlcore.settings import make_task

    seen = []

    def spy(per_token, mask, mode="token-mean", *, max_len=None, num_tokens=None):
        if mode == "seq-mean-token-sum-norm":
            seen.append(max_len)
        return aggregate(per_token, mask, mode, max_len=max_len, num_tokens=num_tokens)

    monkeypatch.setattr(train_module, "aggregate", spy)
    monkeypatch.setattr(rlcore.losses, "aggregate", spy)
    model, tokenizer = load_policy()
    config = presets.grpo(loss_type="dr_grpo", steps=1, prompts_per_step=2, group_size=4, eval_every=1, eval_size=4,
                          max_new_tokens=14)
    train_module.train(model, tokenizer, make_task(), config, progress=False)
    assert seen and set(seen) == {14}


def test_a_constant_reward_makes_the_loop_warn_with_the_cause(fifth_grader, task):
    """A run that cannot learn looks healthy from its loss: the loop says so, and why."""
    from rlcore.train import STALL_STEPS, LearningSignalWarning

    model, tokenizer = fifth_grader
    config = presets.reinforce("batch", prompts_per_step=4, steps=STALL_STEPS, eval_every=STALL_STEPS, eval_size=4)
    with pytest.warns(LearningSignalWarning) as caught:
        result = train(copy.deepcopy(model), tokenizer, task, config, progress=False,
                       grader=lambda ro, problems: torch.full((len(problems),), 0.5))
    messages = [str(w.message) for w in caught]
    assert any("no learning signal" in m for m in messages) and any("gradient norm was 0" in m for m in messages)
    steps = [h for h in result["history"] if h["step"] > 0]
    assert all(h["grad_norm"] == 0.0 for h in steps) and "truncated" in steps[0] and "zero_signal" not in steps[0]


def test_truncated_answers_make_the_loop_warn(fifth_grader, task):
    from rlcore.train import STALL_STEPS, LearningSignalWarning

    model, tokenizer = fifth_grader
    config = presets.grpo(prompts_per_step=2, group_size=4, steps=STALL_STEPS, eval_every=STALL_STEPS, eval_size=4,
                          max_new_tokens=3)  # no answer fits in 3 tokens
    with pytest.warns(LearningSignalWarning, match="max_new_tokens=3"):
        result = train(copy.deepcopy(model), tokenizer, task, config, progress=False)
    assert all(h["truncated"] == 1.0 for h in result["history"] if h["step"] > 0)


def test_a_healthy_run_does_not_warn(fifth_grader, task):
    import warnings as _warnings

    from rlcore.train import STALL_STEPS, LearningSignalWarning

    model, tokenizer = fifth_grader
    config = presets.grpo(prompts_per_step=8, group_size=4, steps=STALL_STEPS, eval_every=STALL_STEPS, eval_size=4)
    with _warnings.catch_warnings():
        _warnings.simplefilter("error", LearningSignalWarning)
        train(copy.deepcopy(model), tokenizer, task, config, progress=False)
