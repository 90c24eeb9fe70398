"""rlcore.scale: the book's configurations as TRL trainers, and the trl-grpo / trl-rloo commands
(their CPU path, two steps on the shipped fifth grader)."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout
from dataclasses import replace

import pytest

pytest.importorskip("trl", reason="TRL is a test dependency (requirements.txt)")

from rlcore import presets, scale  # noqa: E402
from rlcore.settings import CHAPTER8_GRPO, HEAD_TO_HEAD  # noqa: E402


@pytest.mark.parametrize("loss_type", sorted(presets.LOSS_TYPES))
def test_every_grpo_preset_maps_to_the_trl_loss_type_of_its_name(loss_type):
    assert scale.trl_loss_type(presets.grpo(loss_type=loss_type)) == loss_type


def test_a_book_aggregation_trl_lacks_raises():
    with pytest.raises(ValueError, match="loss_agg_mode"):
        scale.trl_loss_type(presets.reinforce("batch"))  # "seq-mean-token-sum"


def test_chapter_8s_grpo_as_a_grpo_config(tmp_path):
    args = scale.grpo_args(CHAPTER8_GRPO, output_dir=tmp_path, steps=100)
    assert type(args).__name__ == "GRPOConfig"
    assert args.num_generations == 8 and args.generation_batch_size == 128  # 16 prompts x 8 answers
    assert args.per_device_train_batch_size == 64 and args.steps_per_generation == 2  # 2 minibatches
    assert args.num_iterations == 2 and args.max_steps == 100 * 2 * 2
    assert (args.loss_type, args.scale_rewards, args.beta, args.epsilon) == ("grpo", "group", 0.0, 0.2)
    assert args.epsilon_high == 0.2  # TRL fills epsilon_high with epsilon, as rlcore does
    assert args.learning_rate == CHAPTER8_GRPO.lr and args.lr_scheduler_type == "constant"
    assert args.max_completion_length == CHAPTER8_GRPO.max_new_tokens and args.temperature == 1.0
    assert not args.bf16 and not args.gradient_checkpointing and not args.use_bias_correction_kl
    assert args.max_grad_norm == 0.0 and args.weight_decay == 0.0 and args.report_to == []


def test_head_to_head_grpo_keeps_its_clipping_and_dapo_its_name(tmp_path):
    args = scale.grpo_args(HEAD_TO_HEAD["grpo"], output_dir=tmp_path)
    assert args.max_grad_norm == 1.0 and args.generation_batch_size == 64
    dapo = scale.grpo_args(presets.grpo(loss_type="dapo", clip_eps_high=0.28), output_dir=tmp_path)
    assert dapo.loss_type == "dapo" and dapo.epsilon_high == 0.28


def test_on_policy_rloo_as_an_rloo_config(tmp_path):
    args = scale.grpo_args(presets.reinforce("rloo", prompts_per_step=16, group_size=4), output_dir=tmp_path)
    assert type(args).__name__ == "RLOOConfig"
    assert args.num_generations == 4 and args.num_iterations == 1 and args.steps_per_generation == 1
    assert not args.normalize_advantages and args.beta == 0.0


@pytest.mark.parametrize("config, match", [
    (presets.ppo(), "config.credit"),
    (replace(CHAPTER8_GRPO, clip_eps=None), "clip_eps"),
    (replace(CHAPTER8_GRPO, minibatches=3), "minibatches"),
    (HEAD_TO_HEAD["rloo"], "loss_agg_mode"),  # the head-to-head RLOO averages tokens; TRL's sums them
    (presets.reinforce("rloo", group_size=4, beta=0.04), "beta"),
    (replace(presets.reinforce("batch"), credit="group", clip_eps=0.2, loss_agg_mode="seq-mean-token-sum"),
     "loss_agg_mode"),
], ids=["ppo", "no-clip", "uneven-minibatches", "rloo-token-mean", "rloo-kl", "token-sum"])
def test_configs_trl_cannot_run_as_the_book_does_raise(tmp_path, config, match):
    with pytest.raises(ValueError, match=match):
        scale.grpo_args(config, output_dir=tmp_path)


def test_the_verifier_as_a_reward_function():
    reward = scale.verifier_reward(no_answer_penalty=0.1)
    got = reward(completions=["2310#132", "2310#133", "2310", "#0132"], answer=[132, 132, 132, 132],
                 prompts=["047+085="] * 4)
    assert got == [1.0, 0.0, -0.1, 1.0]


@pytest.mark.parametrize("text, number", [
    ("so she has 12 apples.\n#### 18", 18.0),
    ("The answer is 1,234.", 1234.0),
    ("#### -3.5 dollars", -3.5),
    ("42 then 7", 7.0),
    ("no number here", None),
    ("#### none", None),
])
def test_final_number(text, number):
    assert scale.final_number(text) == number


def test_gsm8k_reward_reads_strings_and_chat_messages():
    got = scale.gsm8k_reward(completions=["... #### 18", [{"role": "assistant", "content": "it is 17"}], "none"],
                             answer=["18", "18", "18"])
    assert got == [1.0, 0.0, 0.0]


def test_gsm8k_dataset_from_a_local_file(tmp_path):
    path = tmp_path / "gsm.jsonl"
    rows = [{"question": "Tom has 3 apples and buys 4. How many?", "answer": "3 + 4 = 7\n#### 7"},
            {"question": "Half of 10?", "answer": "10 / 2 = 5\n#### 5"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = scale.gsm8k_dataset(str(path))
    assert data.column_names == ["answer", "prompt"] or set(data.column_names) == {"answer", "prompt"}
    assert data[0]["answer"] == "7" and data[1]["prompt"][0]["role"] == "user"
    assert "####" in data[0]["prompt"][0]["content"] and rows[0]["question"] in data[0]["prompt"][0]["content"]


def test_the_prompts_are_the_tasks_seeded_stream_and_never_held_out():
    from rlcore.settings import make_task

    task = make_task()
    data = scale.prompt_dataset(task, 32, seed=3)
    assert len(data) == 32 and data["prompt"] == scale.prompt_dataset(task, 32, seed=3)["prompt"]
    held_out = {p.prompt for p in task.heldout}
    assert not held_out & set(data["prompt"])
    assert all(sum(int(x) for x in p.rstrip("=").split("+")) == a for p, a in zip(data["prompt"], data["answer"]))


@pytest.mark.parametrize("name, updates, answers", [("trl-grpo", 8, 256), ("trl-rloo", 2, 128)])
def test_the_trl_commands_cpu_path_runs_two_steps(name, updates, answers):
    from rlcore.experiments import main

    out = io.StringIO()
    with redirect_stdout(out):
        assert main([name, "--steps", "2", "--seed", "1"]) == 0
    result = json.loads(out.getvalue().strip().splitlines()[-1])
    assert result["experiment"] == name and result["seed"] == 1
    assert result["trl_steps"] == updates and result["samples"] == answers
    assert [h["samples"] for h in result["history"]] == [0, answers]
    assert 0.0 <= result["accuracy_after"] <= 1.0 and len(result["rewards"]) == 2
    # the held-out accuracy before training is the book's evaluation of the shipped fifth grader
    from rlcore.evaluation import accuracy
    from rlcore.policy import load_policy
    from rlcore.settings import make_task

    model, tokenizer = load_policy()
    task = make_task()
    assert result["accuracy_before"] == accuracy(model, tokenizer, task.heldout[:CHAPTER8_GRPO.eval_size])


def test_under_several_processes_a_steps_answers_are_split():
    assert scale.per_device_batch(CHAPTER8_GRPO, 1) == 64
    assert scale.per_device_batch(CHAPTER8_GRPO, 4) == 16  # 128 answers / (2 minibatches x 4 processes)
    for bad in (3, 0):
        with pytest.raises(ValueError, match="process"):
            scale.per_device_batch(CHAPTER8_GRPO, bad)
