"""A learned outcome reward model: a grader that can be fooled (chapter 13).

The book's verifier is exact. A reward model is what RLHF uses when no verifier exists: a network
trained to agree with judgements on a finite set of answers, and wrong, in places, on the answers a
policy will write next. This module builds one for the arithmetic task so that the failure can be
measured against the exact verifier:

* :class:`RewardModel`: the tiny policy's trunk with a scalar head read at an answer's last token
  (``<eos>``), ``r_φ(x, y)``;
* :func:`bradley_terry_loss`: ``−log σ(r_φ(x, y_w) − r_φ(x, y_l))`` on pairs where the verifier
  preferred ``y_w`` (Bradley and Terry 1952; Ouyang et al. 2022);
* :func:`train_reward_model`: fits it on ``n_pairs`` verifier-labelled pairs of the fifth grader's
  own answers (a finite, controllable amount of data that leaves it imperfect: with 4,096 pairs it
  ranks about 82% of held-out pairs right, with 16,384, the book's, about 92%);
* :func:`pair_accuracy` with a Wilson interval, :func:`save_reward_model` / :func:`load_reward_model`
  (safetensors in the package), and :func:`reward_grader`, the reward model as the grader of
  :func:`rlcore.train.train`.

References: Bradley and Terry, "Rank analysis of incomplete block designs", 1952; Ouyang et al.,
"Training language models to follow instructions with human feedback", 2022 (section 3.5); Gao,
Schulman and Hilton, "Scaling Laws for Reward Model Overoptimization", 2023.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F

from .pairs import PreferencePairs, sample_pairs
from .policy import ASSETS, ValueModel
from .reproducibility import step_seed
from .rollout import Rollout, generate
from .tasks import Problem, verify_batch

__all__ = ["REWARD_MODEL_DIR", "RewardModelConfig", "RewardModel", "bradley_terry_loss", "collect_pairs",
           "train_reward_model", "pair_accuracy", "wilson_interval", "save_reward_model", "load_reward_model",
           "reward_grader", "sampled_evaluation", "score_texts"]

#: Where the shipped reward model lives (``python -m rlcore.experiments rm`` rebuilds it).
REWARD_MODEL_DIR = ASSETS / "reward_model"


@dataclass(frozen=True)
class RewardModelConfig:
    """How the book's reward model is trained (:func:`train_reward_model`)."""

    n_pairs: int = 16384  # verifier-labelled training pairs: enough to rank about 9 in 10 held-out pairs
    prompts_per_round: int = 64  # problems per sampling round (8 answers each) while collecting pairs
    samples_per_prompt: int = 8
    epochs: int = 4  # passes over the pairs
    batch_size: int = 32
    lr: float = 3e-4
    max_new_tokens: int = 12
    seed: int = 0


class RewardModel(ValueModel):
    r"""``r_φ(x, y)``: a causal transformer trunk and a linear head read at the answer's last real
    token, one score per answer.

    A :class:`~rlcore.policy.ValueModel` read once per answer: ``from_policy`` copies the
    policy's trunk (``policy.model``) and adds a zero-initialised head,
    so every answer starts at score 0; the trunk already "reads" arithmetic, which is what lets a few
    hundred pairs train it at all (InstructGPT's reward model starts from the SFT model too).
    """

    def forward(self, rollout: Rollout) -> torch.Tensor:
        """The score of every answer of ``rollout``, ``[B]``: the head on the hidden state of its last
        real response token (``<eos>`` when it has one), which has seen the prompt and the whole answer."""
        hidden = self.hidden_states(rollout)  # (B, P + R, H)
        last = rollout.prompt_ids.shape[1] + rollout.response_mask.sum(1) - 1  # (B,) index of the last token
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        return self.head(hidden[rows, last]).squeeze(-1)  # (B,)


def bradley_terry_loss(chosen_scores: torch.Tensor, rejected_scores: torch.Tensor) -> torch.Tensor:
    r"""The reward model's loss on ``K`` pairs, averaged:

    .. math::

        \mathcal{L}(\phi) = -\frac{1}{K}\sum_k \log\sigma\big(r_\phi(x_k, y_{w,k}) - r_\phi(x_k, y_{l,k})\big),

    the negative log-likelihood of the preferences under Bradley–Terry, where
    :math:`P(y_w \succ y_l) = \sigma(r(y_w) - r(y_l))`. Only differences of scores matter: adding a
    constant to every score leaves it unchanged.

    Args:
      chosen_scores: ``[K]`` scores of the preferred answers.
      rejected_scores: ``[K]`` scores of the other answers.

    Reference: Bradley and Terry 1952; Ouyang et al. 2022, eq. 1.
    """
    from ._checks import check_same_shape, float_tensor

    float_tensor(chosen_scores, "chosen_scores", ndim=1)
    float_tensor(rejected_scores, "rejected_scores", ndim=1)
    check_same_shape(rejected_scores, "rejected_scores", chosen_scores, "chosen_scores")
    if chosen_scores.numel() == 0:
        raise ValueError("chosen_scores must hold at least one pair")
    return -F.logsigmoid(chosen_scores - rejected_scores).mean()


def collect_pairs(policy, tokenizer, problems_stream, n_pairs: int, config: RewardModelConfig, *,
                  seed_offset: int = 0) -> PreferencePairs:
    """At least ``n_pairs`` verifier-labelled pairs (a right answer preferred to a wrong one to the
    same problem) of ``policy``'s own answers, in rounds of ``config.prompts_per_round`` problems from
    ``problems_stream``; exactly the first ``n_pairs`` are returned."""
    parts, found, rounds = [], 0, 0
    while found < n_pairs:
        rounds += 1
        if rounds > 200:
            raise RuntimeError(f"found only {found} of {n_pairs} pairs in 200 sampling rounds")
        pairs, _ = sample_pairs(policy, tokenizer, next(problems_stream), reference=policy,
                                samples_per_prompt=config.samples_per_prompt, max_new_tokens=config.max_new_tokens,
                                seed=step_seed(config.seed, 10_000 + seed_offset + rounds))
        parts.append(pairs)
        found += len(pairs)
    return PreferencePairs.cat(parts).select(torch.arange(n_pairs))


def train_reward_model(policy, tokenizer, task, config: RewardModelConfig = RewardModelConfig(), *,
                       eval_pairs: int = 400, progress: bool = True) -> dict:
    """Fit a :class:`RewardModel` (from ``policy``'s trunk) to ``config.n_pairs`` verifier-labelled
    pairs of ``policy``'s answers to training problems of ``task``, by Bradley–Terry; measure its
    accuracy on ``eval_pairs`` pairs of answers to held-out problems.

    Returns:
      ``reward_model``, ``train_accuracy``, ``heldout_accuracy`` with its Wilson 95% interval
      ``heldout_interval``, ``history`` (loss per epoch), ``config`` and ``wall_seconds``.
    """
    from tqdm.auto import tqdm

    start = time.perf_counter()
    torch.manual_seed(config.seed)
    train_pairs = collect_pairs(policy, tokenizer, iter(task.stream(config.prompts_per_round, seed=config.seed)),
                                config.n_pairs, config)
    test_pairs = collect_pairs(policy, tokenizer, _rounds(list(task.heldout), config.prompts_per_round),
                               eval_pairs, config, seed_offset=5_000)
    rm = RewardModel.from_policy(policy)
    optimizer = torch.optim.Adam(rm.parameters(), lr=config.lr)
    gen = torch.Generator().manual_seed(config.seed)
    history = []
    for epoch in tqdm(range(config.epochs), desc="reward model", disable=not progress):
        rm.train()
        losses = []
        for idx in torch.randperm(len(train_pairs), generator=gen).split(config.batch_size):
            batch = train_pairs.select(idx)
            loss = bradley_terry_loss(rm(batch.chosen), rm(batch.rejected))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        history.append({"epoch": epoch + 1, "loss": sum(losses) / len(losses)})
    rm.eval()
    acc_test = pair_accuracy(rm, test_pairs)
    return {"reward_model": rm, "train_accuracy": pair_accuracy(rm, train_pairs), "heldout_accuracy": acc_test,
            "heldout_interval": wilson_interval(round(acc_test * len(test_pairs)), len(test_pairs)),
            "heldout_pairs": len(test_pairs), "history": history, "config": asdict(config),
            "wall_seconds": time.perf_counter() - start}


def _rounds(items, size):
    while True:  # rounds over the held-out problems, again and again (new answers each round: the seeds differ)
        for i in range(0, len(items), size):
            yield items[i:i + size]


@torch.no_grad()
def pair_accuracy(reward_model, pairs: PreferencePairs, batch_size: int = 512) -> float:
    """The share of ``pairs`` whose preferred answer the reward model scores higher (ties count half)."""
    if not len(pairs):
        raise ValueError("pairs must hold at least one pair")
    right = 0.0
    for idx in torch.arange(len(pairs)).split(batch_size):
        batch = pairs.select(idx)
        diff = reward_model(batch.chosen) - reward_model(batch.rejected)
        right += (diff > 0).float().sum().item() + 0.5 * (diff == 0).float().sum().item()
    return right / len(pairs)


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    r"""Wilson's 95% score interval for a proportion ``successes / n``:

    .. math::

        \frac{\hat p + \frac{z^2}{2n} \pm z\sqrt{\frac{\hat p(1-\hat p)}{n} + \frac{z^2}{4n^2}}}{1 + \frac{z^2}{n}}.

    Reference: Wilson, "Probable inference, the law of succession, and statistical inference", 1927.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if isinstance(successes, bool) or not isinstance(successes, int) or not 0 <= successes <= n:
        raise ValueError(f"successes must be an int in [0, n={n}], got {successes!r}")
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def save_reward_model(reward_model: RewardModel, path: Union[str, Path] = REWARD_MODEL_DIR, *,
                      metadata: Optional[dict] = None) -> None:
    """Save the trunk's config, the weights (safetensors) and ``metadata`` (JSON) in ``path``."""
    from safetensors.torch import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    reward_model.trunk.config.to_json_file(str(path / "config.json"))
    state = {k: v.detach().cpu().contiguous() for k, v in reward_model.state_dict().items()}
    save_file(state, str(path / "model.safetensors"))
    (path / "metadata.json").write_text(json.dumps(metadata or {}, indent=1) + "\n")


def load_reward_model(path: Union[str, Path] = REWARD_MODEL_DIR, *, device: Union[str, torch.device] = "cpu"):
    """The reward model saved in ``path`` (by default the shipped one), in eval mode, and its metadata."""
    from safetensors.torch import load_file
    from transformers import LlamaConfig, LlamaModel

    path = Path(path)
    if not (path / "model.safetensors").exists():
        raise FileNotFoundError(f"no model.safetensors in {path}; build it with `python -m rlcore.experiments rm`")
    config = LlamaConfig.from_json_file(str(path / "config.json"))
    rm = RewardModel(LlamaModel(config), config.hidden_size)
    rm.load_state_dict(load_file(str(path / "model.safetensors")))
    meta = json.loads((path / "metadata.json").read_text()) if (path / "metadata.json").exists() else {}
    return rm.to(device).eval().requires_grad_(False), meta


@torch.no_grad()
def score_texts(reward_model, tokenizer, problems: Sequence[Problem], responses: Sequence[str]) -> torch.Tensor:
    """Scores ``[B]`` of written answers (strings, without ``<eos>``) to ``problems``."""
    if len(problems) != len(responses):
        raise ValueError(f"problems ({len(problems)}) and responses ({len(responses)}) differ in length")
    enc = tokenizer([p.prompt for p in problems], return_tensors="pt", padding=True)
    body = [tokenizer(r, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for r in responses]
    R = max(len(b) for b in body)
    ids = torch.full((len(body), R), tokenizer.pad_token_id)
    mask = torch.zeros(len(body), R, dtype=torch.bool)
    for i, b in enumerate(body):
        ids[i, :len(b)], mask[i, :len(b)] = torch.tensor(b), True
    ro = Rollout(enc["input_ids"], enc["attention_mask"].bool(), ids, mask, torch.ones(len(body), dtype=torch.bool),
                 torch.zeros(ids.shape), list(responses), 1.0)
    return reward_model(ro)


def sampled_evaluation(reward_model, reference, tokenizer, problems: Sequence[Problem], *, max_new_tokens: int = 12,
                       seed: int = 0):
    r"""An ``extra_eval`` for :func:`rlcore.train.train`: one answer per problem sampled from the
    policy (temperature 1, the same seed at every evaluation), and on those answers

    * ``proxy``: the mean reward-model score, what the policy is trained to raise;
    * ``true``: the share the verifier marks right, what we want;
    * ``kl``: :math:`\frac1n\sum_i \log\pi(y_i|x_i) - \log\pi_\text{ref}(y_i|x_i)`, an unbiased
      estimate of the sequence-level KL(π ‖ π_ref) (Gao et al. plot against its square root).
    """
    from .pairs import sequence_logprobs
    from .rollout import response_logprobs

    problems = list(problems)

    @torch.no_grad()
    def evaluate(model) -> dict:
        was_training = model.training
        ro = generate(model, tokenizer, [p.prompt for p in problems], max_new_tokens=max_new_tokens, seed=seed,
                      compute_logp=False)
        proxy = reward_model(ro).mean().item()
        true = sum(m == 1.0 for m in verify_batch(ro.texts, problems)) / len(problems)
        logp = sequence_logprobs(response_logprobs(model, ro, temperature=1.0), ro.response_mask)
        ref = sequence_logprobs(response_logprobs(reference, ro, temperature=1.0), ro.response_mask)
        model.train(was_training)
        return {"proxy": proxy, "true": true, "kl": (logp - ref).mean().item()}

    return evaluate


def reward_grader(reward_model):
    """The reward model as a grader for :func:`rlcore.train.train` (``grader=``): the marks of a
    rollout are its answers' scores ``r_φ(x, y)``, computed without gradient."""

    @torch.no_grad()
    def grade(rollout: Rollout, problems: Sequence[Problem]) -> torch.Tensor:
        return reward_model(rollout).float()

    return grade
