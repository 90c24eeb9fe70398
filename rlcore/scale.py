"""Scale out: the book's runs as Hugging Face TRL trainers (chapter 12).

The book's loop (:func:`rlcore.train.train`) is small enough to read in one sitting; TRL's
``GRPOTrainer`` and ``RLOOTrainer`` run the same algorithms on one GPU or many (through
``accelerate``: DDP, DeepSpeed, FSDP), with vLLM generation, PEFT adapters, gradient
checkpointing and logging. This module writes a book configuration as TRL's:

* :func:`trl_loss_type` and :func:`grpo_args`: a :class:`~rlcore.train.TrainConfig` as a
  ``GRPOConfig`` or ``RLOOConfig`` (the option table is :data:`OPTION_MAP`);
* :func:`verifier_reward` and :func:`gsm8k_reward`: the book's verifier, and a GSM8K-style one,
  as TRL reward functions;
* :func:`prompt_dataset` and :func:`gsm8k_dataset`: the prompts as a ``datasets.Dataset``;
* :func:`build_trainer`: the trainer for a book method (``credit="group"``: GRPO;
  ``credit="rloo"``: RLOO), with :class:`HeldOutAccuracy` recording the held-out accuracy the
  book's loop records, on the same answer axis;
* :func:`run_trl` (``python -m rlcore.experiments trl-grpo``): a whole run, on the shipped fifth
  grader by default, or on a hub model (``--model``) with GSM8K (``--use-vllm`` on a GPU).

Steps: one book step samples ``prompts_per_step × group_size`` answers and takes
``epochs × minibatches`` Adam steps on them; TRL counts the Adam steps (``max_steps``), so a book
run of ``steps`` steps is ``steps × epochs × minibatches`` TRL steps, with
``steps_per_generation = minibatches`` and ``num_iterations = epochs``.

Reference: von Werra et al., "TRL: Transformer Reinforcement Learning",
https://github.com/huggingface/trl (``GRPOTrainer``, ``RLOOTrainer``).
"""

from __future__ import annotations

import math
import os
import re
import time
import warnings
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch

from ._checks import check_choice
from .evaluation import accuracy
from .policy import ASSETS
from .tasks import verify
from .train import TrainConfig

__all__ = [
    "RESULTS_PATH", "load_results", "HUB_MODEL_OPTIONS", "OPTION_MAP", "TRL_LOSS_TYPES", "trl_loss_type", "per_device_batch", "trl_grpo_loss", "trl_dpo_loss", "grpo_args", "verifier_reward", "gsm8k_reward",
    "args_eps", "final_number", "prompt_dataset", "gsm8k_dataset", "HeldOutAccuracy", "build_trainer", "run_trl",
]

#: Where ``python -m rlcore.bench trl --out`` saved chapter 12's runs (five seeds of the book's GRPO on
#: its own loop and on TRL, every curve, the CPU time per answer of each).
RESULTS_PATH = ASSETS / "results" / "trl_grpo.json"


def load_results(path=RESULTS_PATH) -> dict:
    """The saved comparison of the book's loop and TRL (``python -m rlcore.bench trl``'s result)."""
    import json

    with open(path) as f:
        return json.load(f)


#: ``(loss_agg_mode, token_mean_over)`` of a :class:`~rlcore.train.TrainConfig` and the TRL
#: ``loss_type`` that aggregates the same way (:func:`rlcore.aggregate`).
TRL_LOSS_TYPES = {
    ("seq-mean-token-mean", "minibatch"): "grpo",
    ("seq-mean-token-mean", "rollout"): "grpo",
    ("token-mean", "minibatch"): "bnpo",
    ("token-mean", "rollout"): "dapo",
    ("seq-mean-token-sum-norm", "minibatch"): "dr_grpo",
    ("seq-mean-token-sum-norm", "rollout"): "dr_grpo",
}

#: Every option of the book's GRPO/RLOO runs, its TRL name and its verl name (chapter 12's table).
#: A row is ``(rlcore, TRL, verl, note)``.
OPTION_MAP = (
    ("prompts_per_step × group_size", "generation_batch_size", "data.train_batch_size × rollout.n",
     "answers sampled per step"),
    ("group_size", "num_generations", "actor_rollout_ref.rollout.n", "answers per prompt"),
    ("epochs", "num_iterations", "actor.ppo_epochs", "passes over each batch"),
    ("minibatches", "steps_per_generation", "train_batch_size / ppo_mini_batch_size",
     "Adam steps per pass"),
    ("clip_eps", "epsilon", "actor.clip_ratio_low", "lower clip range"),
    ("clip_eps_high", "epsilon_high", "actor.clip_ratio_high", "DAPO's clip-higher"),
    ("loss_agg_mode (+ token_mean_over)", "loss_type", "actor.loss_agg_mode", "grpo / bnpo / dapo / dr_grpo"),
    ("scale_rewards", "scale_rewards", "algorithm.norm_adv_by_std_in_grpo", "group / batch / none (verl: std or not)"),
    ("beta", "beta", "actor.kl_loss_coef (use_kl_loss)", "k3 KL in the loss"),
    ("lr", "learning_rate", "actor.optim.lr", "constant, no warm-up"),
    ("max_grad_norm", "max_grad_norm", "actor.grad_clip", "None / 0: no clipping"),
    ("max_new_tokens", "max_completion_length", "data.max_response_length", "the generation budget"),
    ("temperature", "temperature", "rollout.temperature", "sampling temperature"),
    ("credit=\"rloo\"", "RLOOTrainer", "algorithm.adv_estimator=rloo", "leave-one-out baseline"),
    ("credit=\"group\"", "GRPOTrainer", "algorithm.adv_estimator=grpo", "group baseline"),
    ("seed", "seed", "(data.seed)", "sampling and shuffling"),
)


class _OneProcess:
    """What TRL's loss code asks of ``accelerate`` on a single process."""

    num_processes = 1
    device = torch.device("cpu")
    sync_gradients = True

    def gather(self, x):
        return x

    gather_for_metrics = gather

    def reduce(self, x, reduction="sum"):
        return x


def trl_grpo_loss(logp: torch.Tensor, old_logp: torch.Tensor, ref_logp: torch.Tensor, advantages: torch.Tensor,
                  mask, *, loss_type: str = "dapo", beta: float = 0.0, epsilon: float = 0.2,
                  epsilon_high: Optional[float] = None, max_completion_length: int = 512,
                  num_items_in_batch: Optional[float] = None, steps_per_generation: int = 1,
                  use_bias_correction_kl: bool = False) -> tuple[torch.Tensor, dict]:
    """TRL's own GRPO loss on given tensors: ``GRPOTrainer._compute_loss`` run on a stand-in
    trainer that holds only what the method reads, its forward pass replaced by ``logp``.

    For checking an implementation against TRL number for number (``tests/test_trl_parity.py``,
    chapter 12); one process, no gradient accumulation, token-level ratios, no entropy terms.

    Args:
      logp: ``[B, T]`` log π of the completion tokens (may carry a gradient).
      old_logp, ref_logp: ``[B, T]`` under the sampling policy and the reference.
      advantages: ``[B]`` one per completion.
      mask: ``[B, T]`` the completion mask.
      loss_type, beta, epsilon, epsilon_high: TRL's ``GRPOConfig`` options of those names.
      max_completion_length, steps_per_generation: likewise (``"dr_grpo"``, ``"dapo"``).
      num_items_in_batch: the generation batch's token count (``"dapo"``); default ``mask``'s.
      use_bias_correction_kl: TRL's option; True weighs the k3 term by the importance ratio.

    Returns:
      ``(loss, metrics)``: the scalar loss and the metrics TRL logged (``"kl"``, clip ratios).
    """
    from collections import defaultdict
    from types import SimpleNamespace

    from trl import GRPOTrainer

    B, T = logp.shape
    me = SimpleNamespace(
        loss_type=loss_type, beta=beta, epsilon_low=epsilon, epsilon_high=epsilon if epsilon_high is None else epsilon_high,
        importance_sampling_level="token", off_policy_mask_threshold=None, top_entropy_quantile=1.0,
        use_vllm=False, vllm_importance_sampling_correction=False, max_completion_length=max_completion_length,
        current_gradient_accumulation_steps=1, accelerator=_OneProcess(), model=SimpleNamespace(training=True),
        args=SimpleNamespace(delta=None, use_bias_correction_kl=use_bias_correction_kl,
                             steps_per_generation=steps_per_generation),
        _entropy_bonus_enabled=False, aux_loss_enabled=False, _metrics={"train": defaultdict(list)},
        _get_per_token_logps_and_entropies=lambda *a, **k: (logp, torch.zeros_like(logp), None),
    )
    mask = torch.as_tensor(mask)
    items = float(mask.sum()) if num_items_in_batch is None else float(num_items_in_batch)
    inputs = {
        "prompt_ids": torch.zeros(B, 1, dtype=torch.long), "prompt_mask": torch.ones(B, 1, dtype=torch.long),
        "completion_ids": torch.zeros(B, T, dtype=torch.long), "completion_mask": mask.long(),
        "advantages": advantages, "old_per_token_logps": old_logp, "ref_per_token_logps": ref_logp,
        "num_items_in_batch": torch.tensor(items),
    }
    loss = GRPOTrainer._compute_loss(me, None, inputs)
    return loss, dict(me._metrics["train"])


def trl_dpo_loss(per_token_logps: torch.Tensor, completion_mask, ref_chosen_logps: torch.Tensor,
                 ref_rejected_logps: torch.Tensor, *, loss_type: str = "sigmoid", beta: float = 0.1,
                 label_smoothing: float = 0.0) -> tuple[torch.Tensor, dict]:
    """TRL's own DPO loss on given tensors: ``DPOTrainer._compute_loss`` on a stand-in trainer and a
    stand-in model that returns ``per_token_logps`` as TRL's fused LM head would.

    Args:
      per_token_logps: ``[2K, T]`` log π of each completion token, the ``K`` chosen rows first, 0 off
        the completion (as the fused head returns them).
      completion_mask: ``[2K, T + 1]`` TRL's completion mask over the input ids (its first column
        is the prompt's last token).
      ref_chosen_logps, ref_rejected_logps: ``[K]`` sequence log-probs under the reference.
      loss_type, beta, label_smoothing: TRL's ``DPOConfig`` options of those names.

    Returns:
      ``(loss, metrics)``: the mean loss and the metrics TRL logged (``"rewards/chosen"``, ...).
    """
    from collections import defaultdict
    from types import SimpleNamespace

    from trl import DPOTrainer

    n, T = per_token_logps.shape
    me = SimpleNamespace(
        model=SimpleNamespace(training=True), accelerator=_OneProcess(), aux_loss_enabled=False, ld_alpha=None,
        precompute_ref_logps=True, f_divergence_type="reverse_kl", loss_types=[loss_type], loss_weights=[1.0],
        beta=beta, label_smoothing=label_smoothing, use_weighting=False, _metrics={"train": defaultdict(list)},
        _total_train_tokens=0, _tp_size=1,
    )
    zeros = torch.zeros(n, T, dtype=per_token_logps.dtype)

    def model(**kwargs):
        return SimpleNamespace(log_probs=per_token_logps, entropy=zeros, mean_logits=zeros,
                               is_top1=torch.zeros(n, T, dtype=torch.bool))

    inputs = {"input_ids": torch.zeros(n, T + 1, dtype=torch.long), "attention_mask": torch.ones(n, T + 1),
              "completion_mask": torch.as_tensor(completion_mask), "ref_chosen_logps": ref_chosen_logps,
              "ref_rejected_logps": ref_rejected_logps}
    loss = DPOTrainer._compute_loss(me, model, inputs, return_outputs=False)
    return loss, dict(me._metrics["train"])


def trl_loss_type(config: TrainConfig) -> str:
    """TRL's ``loss_type`` for ``config``'s aggregation (:data:`TRL_LOSS_TYPES`). Raises
    ``ValueError`` for ``"seq-mean-token-sum"`` (the book's REINFORCE), which TRL does not offer."""
    key = (config.loss_agg_mode, config.token_mean_over)
    if key not in TRL_LOSS_TYPES:
        raise ValueError(f"loss_agg_mode={config.loss_agg_mode!r} has no TRL loss_type; use one of "
                         f"{sorted({k[0] for k in TRL_LOSS_TYPES})}")
    return TRL_LOSS_TYPES[key]


def per_device_batch(config: TrainConfig, processes: int = 1) -> int:
    """TRL's ``per_device_train_batch_size`` for ``config`` on ``processes`` processes: a step's
    ``prompts_per_step × group_size`` answers split into ``minibatches`` and between the processes,
    so that the algorithm's batch does not change with the number of GPUs."""
    answers = config.prompts_per_step * config.group_size
    if processes < 1 or answers % (config.minibatches * processes):
        raise ValueError(f"config.minibatches={config.minibatches} times {processes} process(es) must divide the "
                         f"{answers} answers per step")
    return answers // (config.minibatches * processes)


def grpo_args(config: TrainConfig, *, output_dir, steps: Optional[int] = None, use_vllm: bool = False,
              use_cpu: Optional[bool] = None, bf16: bool = False, gradient_checkpointing: bool = False,
              **overrides):
    """``config`` as TRL's ``GRPOConfig`` (``credit="group"``) or ``RLOOConfig`` (``"rloo"``).

    The names that mean the same are mapped as :data:`OPTION_MAP` says; TRL's defaults that the
    book's loop does not have are switched off: bf16, gradient checkpointing, the learning-rate
    schedule (constant, no warm-up), weight decay, gradient clipping unless ``max_grad_norm`` is
    set, the importance-sampling correction of the KL term (``use_bias_correction_kl``), and
    logging to any tracker. ``overrides`` are passed to the config last.

    Args:
      config: a book configuration with ``credit`` ``"group"`` or ``"rloo"`` and a clip.
      output_dir: where TRL writes (nothing is saved unless ``overrides`` ask for it).
      steps: book steps (default ``config.steps``); TRL's ``max_steps`` is ``steps × epochs × minibatches``.
      use_vllm: generate with vLLM (colocated on the training GPUs).
      use_cpu: train on the CPU (default: when no GPU is present).

    Under ``accelerate launch`` (``WORLD_SIZE`` processes) a step's answers are split between the
    processes, so the algorithm's batch is the same on one process or many.
    """
    from trl import GRPOConfig, RLOOConfig

    check_choice(config.credit, "config.credit", ("group", "rloo"))
    if config.clip_eps is None and (config.epochs > 1 or config.minibatches > 1):
        raise ValueError("config.clip_eps must be set when a batch is reused (epochs or minibatches > 1): "
                         "TRL's trainers always use the clipped surrogate")
    if config.kl_in_reward:
        raise ValueError("config.kl_in_reward is PPO's; TRL's GRPO and RLOO put the KL term in the loss")
    steps = config.steps if steps is None else steps
    per_device = per_device_batch(config, int(os.environ.get("WORLD_SIZE", "1")))
    args = dict(
        output_dir=str(output_dir),
        num_generations=config.group_size,
        per_device_train_batch_size=per_device,
        gradient_accumulation_steps=1,
        steps_per_generation=config.minibatches,
        num_iterations=config.epochs,
        max_steps=steps * config.epochs * config.minibatches,
        max_completion_length=config.max_new_tokens,
        temperature=config.temperature,
        learning_rate=config.lr,
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=0.0,
        adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8,  # torch.optim.Adam's, as the book's loop
        max_grad_norm=config.max_grad_norm or 0.0,
        epsilon=args_eps(config),
        epsilon_high=config.clip_eps_high if config.clip_eps_high is not None else args_eps(config),
        beta=config.beta,
        seed=config.seed,
        data_seed=config.seed,
        use_cpu=(not torch.cuda.is_available()) if use_cpu is None else use_cpu,
        bf16=bf16,
        gradient_checkpointing=gradient_checkpointing,
        use_vllm=use_vllm,
        report_to="none",
        save_strategy="no",
        logging_steps=config.epochs * config.minibatches,
        disable_tqdm=True,
    )
    if config.credit == "group":
        args.update(loss_type=trl_loss_type(config), scale_rewards=config.scale_rewards,
                    use_bias_correction_kl=False)
        cls = GRPOConfig
    else:  # RLOO: the leave-one-out baseline, not whitened (TRL's default), as in the book
        if config.loss_agg_mode != "seq-mean-token-sum":
            raise ValueError("TRL's RLOOTrainer sums each answer's token log-probs (one ratio per answer): use "
                             "loss_agg_mode='seq-mean-token-sum' for an RLOO run that matches it")
        if config.beta:
            raise ValueError("config.beta: TRL's RLOOTrainer puts a k1 KL penalty in the reward, the book's "
                             "RLOO a k3 term in the loss; run RLOO with beta=0 to compare them")
        args.update(normalize_advantages=False)
        cls = RLOOConfig
    args.update(overrides)
    with _quiet():
        return cls(**args)


def args_eps(config: TrainConfig) -> float:
    """TRL's ``epsilon`` for ``config``: its ``clip_eps``, or TRL's 0.2 for an on-policy run (one
    pass, one minibatch), where every ratio is 1 and the clip never binds."""
    return 0.2 if config.clip_eps is None else config.clip_eps


def verifier_reward(no_answer_penalty: float = 0.1) -> Callable:
    """The book's verifier (:func:`rlcore.tasks.verify`) as a TRL reward function: ``+1`` for the
    right number after the marker, 0 for another number, ``-no_answer_penalty`` for none. TRL
    calls it with the decoded completions and the dataset's ``answer`` column."""

    def verifier(completions, answer, **kwargs) -> list[float]:
        return [verify(_text(c), int(a), no_answer_penalty=no_answer_penalty) for c, a in zip(completions, answer)]

    return verifier


_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def final_number(text: str) -> Optional[float]:
    """The number a GSM8K-style answer ends on: the one after the last ``####`` if there is one,
    else the last number in ``text`` (commas dropped); ``None`` when there is no number."""
    tail = text.rsplit("####", 1)[1] if "####" in text else text
    found = _NUMBER.findall(tail)
    if not found:
        return None
    try:
        return float(found[-1].replace(",", ""))
    except ValueError:  # pragma: no cover - the pattern admits only digits, commas and one dot
        return None


def gsm8k_reward(completions, answer, **kwargs) -> list[float]:
    """A GSM8K-style verifier as a TRL reward function: 1.0 when the completion's final number
    (:func:`final_number`) equals the reference answer's, else 0.0. Completions may be strings or
    chat messages."""
    out = []
    for c, a in zip(completions, answer):
        got, want = final_number(_text(c)), final_number(str(a))
        out.append(1.0 if got is not None and want is not None and math.isclose(got, want) else 0.0)
    return out


def _text(completion) -> str:
    if isinstance(completion, str):
        return completion
    return "".join(m.get("content", "") for m in completion)  # a conversational completion


def prompt_dataset(task, n_prompts: int, seed: int):
    """``n_prompts`` training problems of ``task`` (its seeded stream, never the held-out set) as a
    ``datasets.Dataset`` with TRL's ``prompt`` column and the ``answer`` the verifier reads."""
    from datasets import Dataset

    problems = next(iter(task.stream(n_prompts, seed=seed)))
    return Dataset.from_dict({"prompt": [p.prompt for p in problems], "answer": [p.answer for p in problems]})


GSM8K_INSTRUCTION = "Solve the problem step by step, then write the final answer after ####."


def gsm8k_dataset(name: str = "openai/gsm8k", split: str = "train", *, limit: Optional[int] = None):
    """GSM8K (or any dataset with ``question`` and ``answer`` columns, a hub id or a local
    JSON-lines file) as conversational TRL prompts with the reference ``answer`` kept."""
    from datasets import load_dataset

    if Path(name).is_file():
        data = load_dataset("json", data_files=name, split="train")
    else:
        data = load_dataset(name, "main", split=split)
    if limit is not None:
        data = data.select(range(min(limit, len(data))))
    return data.map(lambda row: {
        "prompt": [{"role": "user", "content": f"{row['question']}\n{GSM8K_INSTRUCTION}"}],
        "answer": row["answer"].rsplit("####", 1)[-1].strip(),
    }, remove_columns=[c for c in data.column_names if c not in ("answer",)])


class HeldOutAccuracy:
    """A ``transformers`` callback that records, every ``eval_every`` book steps (and before the
    first), the held-out greedy accuracy the book's loop records (:func:`rlcore.evaluation.accuracy`),
    with the answers sampled so far: ``history`` holds ``{"step", "samples", "accuracy", "seconds"}``
    rows, ``seconds`` the training time (evaluation excluded)."""

    def __new__(cls, *args, **kwargs):
        from transformers import TrainerCallback

        class _Callback(TrainerCallback):
            def __init__(self, tokenizer, problems, config: TrainConfig, eval_every: int, progress: bool,
                         desc: str = "TRL"):
                self.tokenizer, self.problems, self.config = tokenizer, list(problems), config
                self.eval_every, self.history = eval_every, []
                self.updates_per_step = config.epochs * config.minibatches
                self.bar, self.progress, self._train_seconds, self._t0 = None, progress, 0.0, None
                self.desc = desc

            def _evaluate(self, model, step):
                acc = accuracy(model, self.tokenizer, self.problems, max_new_tokens=self.config.max_new_tokens)
                model.train()
                self.history.append({"step": step, "samples": step * self.config.answers_per_step,
                                     "accuracy": acc, "seconds": self._train_seconds})
                if self.bar is not None:
                    self.bar.set_postfix(acc=f"{acc:.3f}")

            def on_train_begin(self, args, state, control, model=None, **kwargs):
                if self.progress:
                    from tqdm.auto import tqdm

                    self.bar = tqdm(total=state.max_steps // self.updates_per_step, desc=self.desc, unit="step")
                self._evaluate(model, 0)
                self._t0 = time.perf_counter()

            def on_step_end(self, args, state, control, model=None, **kwargs):
                if state.global_step % self.updates_per_step:
                    return
                step = state.global_step // self.updates_per_step
                self._train_seconds += time.perf_counter() - self._t0
                if self.bar is not None:
                    self.bar.update(1)
                if step % self.eval_every == 0 or state.global_step >= state.max_steps:
                    self._evaluate(model, step)
                self._t0 = time.perf_counter()

            def on_train_end(self, args, state, control, **kwargs):
                if self.bar is not None:
                    self.bar.close()

        return _Callback(*args, **kwargs)


def build_trainer(config: TrainConfig, model, tokenizer, task=None, *, output_dir, steps: Optional[int] = None,
                  reward_funcs: Optional[Sequence[Callable]] = None, train_dataset=None, use_vllm: bool = False,
                  eval_every: Optional[int] = None, eval_problems=None, progress: bool = False, **overrides):
    """The TRL trainer for a book method: ``GRPOTrainer`` for ``credit="group"``, ``RLOOTrainer``
    for ``credit="rloo"``, its config from :func:`grpo_args`.

    With a ``task`` (the book's), the prompts are ``steps × prompts_per_step`` problems of its
    seeded stream and the reward is its verifier; otherwise pass ``train_dataset`` and
    ``reward_funcs``. With ``eval_every`` a :class:`HeldOutAccuracy` callback evaluates
    ``eval_problems`` (default the task's first ``config.eval_size`` held-out problems); it is
    ``trainer.held_out``.

    Returns:
      The trainer, ready for ``trainer.train()``.
    """
    from transformers import PrinterCallback
    from trl import GRPOTrainer, RLOOTrainer

    steps = config.steps if steps is None else steps
    args = grpo_args(config, output_dir=output_dir, steps=steps, use_vllm=use_vllm, **overrides)
    if train_dataset is None:
        if task is None:
            raise ValueError("task or train_dataset must be given")
        train_dataset = prompt_dataset(task, steps * config.prompts_per_step, seed=config.seed)
    if reward_funcs is None:
        if task is None:
            raise ValueError("task or reward_funcs must be given")
        reward_funcs = [verifier_reward(config.no_answer_penalty)]
    callbacks = []
    if eval_every is not None and eval_problems is None:
        if task is None:
            raise ValueError("eval_every needs eval_problems or a task")
        eval_problems = task.heldout[: config.eval_size]
    cls = GRPOTrainer if config.credit == "group" else RLOOTrainer
    if eval_every is not None:
        callbacks.append(HeldOutAccuracy(tokenizer, eval_problems, config, eval_every, progress, cls.__name__))
    with _quiet():
        trainer = cls(model=model, reward_funcs=list(reward_funcs), args=args, train_dataset=train_dataset,
                      processing_class=tokenizer, callbacks=callbacks)
    trainer.remove_callback(PrinterCallback)  # the logs stay in trainer.state.log_history
    trainer.held_out = callbacks[0] if callbacks else None
    return trainer


@contextmanager
def _quiet():
    """transformers 5 warns that ``gradient_checkpointing`` is deprecated whenever TRL's config sets
    it; the warning is about a name, not about this run."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*gradient_checkpointing.*", category=FutureWarning)
        yield


#: What changes for a pre-trained hub model (``run_trl(model_id=...)``): room for a worked solution,
#: and a learning rate for fine-tuning half a billion parameters rather than a tiny model.
HUB_MODEL_OPTIONS = {"max_new_tokens": 512, "lr": 1e-6}


def run_trl(config: TrainConfig, *, seed: Optional[int] = None, steps: Optional[int] = None,
            model_id: Optional[str] = None, dataset: str = "openai/gsm8k", use_vllm: bool = False,
            output_dir=None, progress: bool = True, **overrides) -> dict:
    """A whole run on TRL. Without ``model_id``: the shipped fifth grader on the book's addition
    task, with the held-out accuracy every ``config.eval_every`` steps (the summary has the keys
    of :func:`rlcore.runs.run`). With ``model_id`` (a hub causal LM): that model on ``dataset``
    (GSM8K-style) with :func:`gsm8k_reward`, the mean training reward reported, ``config``'s
    ``max_new_tokens`` and ``lr`` raised to / set from :data:`HUB_MODEL_OPTIONS` unless the caller
    changed them from the book's, and bf16 on a GPU."""
    import tempfile

    from .policy import load_policy
    from .reproducibility import book_seed
    from .settings import make_task

    seed = book_seed() if seed is None else seed
    config = replace(config, seed=seed)
    steps = config.steps if steps is None else steps
    output_dir = output_dir or tempfile.mkdtemp(prefix="rlcore-trl-")
    start = time.perf_counter()
    if model_id is None:
        task = make_task()
        model, tokenizer = load_policy()
        trainer = build_trainer(config, model, tokenizer, task, output_dir=output_dir, steps=steps,
                                use_vllm=use_vllm, eval_every=config.eval_every, progress=progress, **overrides)
    else:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        book = TrainConfig()
        config = replace(config, **{k: v for k, v in HUB_MODEL_OPTIONS.items() if getattr(config, k) == getattr(book, k)})
        tokenizer = AutoTokenizer.from_pretrained(model_id, padding_side="left")
        model = AutoModelForCausalLM.from_pretrained(model_id, dtype="auto")
        data = gsm8k_dataset(dataset, limit=steps * config.prompts_per_step)
        trainer = build_trainer(config, model, tokenizer, output_dir=output_dir, steps=steps, use_vllm=use_vllm,
                                train_dataset=data, reward_funcs=[gsm8k_reward],
                                **{"bf16": torch.cuda.is_available(), **overrides})
    with _quiet():
        trainer.train()
    logs = [h for h in trainer.state.log_history if "reward" in h]
    result = {"experiment": "trl-grpo" if config.credit == "group" else "trl-rloo", "seed": seed, "trl_steps": trainer.state.global_step,
              "samples": steps * config.answers_per_step, "wall_seconds": time.perf_counter() - start,
              "rewards": [h["reward"] for h in logs], "model": trainer.model}
    if trainer.held_out is not None:
        history = trainer.held_out.history
        result.update(accuracy_before=history[0]["accuracy"], accuracy_after=history[-1]["accuracy"],
                      history=history)
    return result
