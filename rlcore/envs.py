"""Small environments whose expected return and policy gradient are known exactly.

The theory chapters check estimators against the *truth*, not against another estimate. That
needs environments small enough to sum over every possible outcome:

* :class:`Bandit` — one step, ``K`` arms with Gaussian rewards; for a softmax policy
  ``J(θ) = Σ_k π_k μ_k`` and ``∇J = π ⊙ (μ − J)`` in closed form.
* :class:`TabularMDP` — a finite-horizon MDP with a handful of states and actions and a
  reward at every step. Its ``S^H · A^H`` trajectories can be enumerated, so ``J(θ)`` is an
  exact finite sum and ``∇J(θ)`` follows from it by autograd.

Both use a tabular softmax policy: ``π(a | s) = softmax(θ[s])[a]``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import NamedTuple, Optional

import torch

__all__ = ["Bandit", "TabularMDP", "Trajectories", "RandomWalk", "Segments", "softmax_policy"]


def softmax_policy(theta: torch.Tensor) -> torch.Tensor:
    """Action probabilities of a tabular softmax policy: ``softmax(theta, dim=-1)``."""
    return torch.softmax(theta, dim=-1)


def _generator(seed: Optional[int], generator: Optional[torch.Generator]) -> torch.Generator:
    if generator is not None:
        return generator
    g = torch.Generator()
    g.manual_seed(0 if seed is None else seed)
    return g


@dataclass
class Bandit:
    """A ``K``-armed bandit with Gaussian rewards ``r ~ N(means[k], noise_std²)``.

    Args:
      means: ``[K]`` expected reward of each arm.
      noise_std: standard deviation of the reward noise (≥ 0).
    """

    means: torch.Tensor
    noise_std: float = 1.0

    def __post_init__(self):
        self.means = torch.as_tensor(self.means, dtype=torch.float64)
        if self.means.dim() != 1 or self.means.numel() < 2:
            raise ValueError(f"means must be a 1-D tensor of >= 2 arms, got shape {tuple(self.means.shape)}")
        if not self.noise_std >= 0:
            raise ValueError(f"noise_std must be >= 0, got {self.noise_std}")

    @property
    def num_arms(self) -> int:
        return self.means.numel()

    def sample(self, logits: torch.Tensor, n: int, *, seed: Optional[int] = None,
               generator: Optional[torch.Generator] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Pull ``n`` arms from ``softmax(logits)``. Returns ``(actions [n], rewards [n])``."""
        g = _generator(seed, generator)
        probs = softmax_policy(logits.detach().to(torch.float64))
        actions = torch.multinomial(probs, n, replacement=True, generator=g)  # (n,)
        noise = torch.randn(n, generator=g, dtype=torch.float64) * self.noise_std
        return actions, self.means[actions] + noise

    def expected_return(self, logits: torch.Tensor) -> torch.Tensor:
        """Exact ``J(θ) = Σ_k π_k μ_k`` (differentiable in ``logits``)."""
        return (softmax_policy(logits.to(torch.float64)) * self.means).sum()

    def exact_gradient(self, logits: torch.Tensor) -> torch.Tensor:
        """Closed form ``∇_θ J = π ⊙ (μ − J)`` for the softmax policy, ``[K]``."""
        probs = softmax_policy(logits.detach().to(torch.float64))
        return probs * (self.means - (probs * self.means).sum())


class Trajectories(NamedTuple):
    """A batch of ``N`` trajectories of ``H`` steps: ``s_t``, ``a_t``, ``r_t`` for t < H."""

    states: torch.Tensor  # (N, H) long
    actions: torch.Tensor  # (N, H) long
    rewards: torch.Tensor  # (N, H) float64


class TabularMDP:
    """A finite-horizon MDP with ``S`` states, ``A`` actions and horizon ``H``.

    An episode starts in ``s_0 ~ init``; at each step ``t < H`` the agent picks
    ``a_t ~ π(· | s_t)``, receives ``r_t = reward[s_t, a_t]`` (plus optional zero-mean
    Gaussian noise, which changes the variance of estimates but not ``J``), and moves to
    ``s_{t+1} ~ transitions[s_t, a_t]``. The episode ends after ``H`` actions.

    Args:
      init: ``[S]`` initial-state distribution.
      transitions: ``[S, A, S]`` transition probabilities ``p(s' | s, a)``.
      reward: ``[S, A]`` expected reward of each state–action pair.
      horizon: number of actions per episode ``H``.
      reward_noise: standard deviation of the zero-mean reward noise.
    """

    def __init__(self, init, transitions, reward, horizon: int, reward_noise: float = 0.0):
        self.init = torch.as_tensor(init, dtype=torch.float64)
        self.transitions = torch.as_tensor(transitions, dtype=torch.float64)
        self.reward = torch.as_tensor(reward, dtype=torch.float64)
        S, A = self.reward.shape
        if self.init.shape != (S,):
            raise ValueError(f"init must have shape ({S},), got {tuple(self.init.shape)}")
        if self.transitions.shape != (S, A, S):
            raise ValueError(f"transitions must have shape ({S}, {A}, {S}), got {tuple(self.transitions.shape)}")
        if not torch.allclose(self.transitions.sum(-1), torch.ones(S, A, dtype=torch.float64)):
            raise ValueError("transitions must sum to 1 over next states")
        if not torch.isclose(self.init.sum(), torch.tensor(1.0, dtype=torch.float64)):
            raise ValueError("init must sum to 1")
        if not (isinstance(horizon, int) and horizon >= 1):
            raise ValueError(f"horizon must be an int >= 1, got {horizon!r}")
        if not reward_noise >= 0:
            raise ValueError(f"reward_noise must be >= 0, got {reward_noise}")
        self.num_states, self.num_actions, self.horizon = S, A, horizon
        self.reward_noise = float(reward_noise)

    @classmethod
    def random(cls, num_states: int = 3, num_actions: int = 2, horizon: int = 4, *,
               seed: int = 0, reward_noise: float = 0.0) -> "TabularMDP":
        """A random MDP: Dirichlet(1) transitions, uniform-in-[-1, 1] rewards."""
        g = torch.Generator().manual_seed(seed)
        S, A = num_states, num_actions
        # Dirichlet(1) rows: normalised Exp(1) draws, taken from our own generator.
        transitions = -torch.log(torch.rand(S, A, S, generator=g, dtype=torch.float64))
        transitions = transitions / transitions.sum(-1, keepdim=True)
        reward = 2 * torch.rand(S, A, generator=g, dtype=torch.float64) - 1
        init = torch.full((S,), 1.0 / S, dtype=torch.float64)
        return cls(init, transitions, reward, horizon, reward_noise)

    # ----------------------------------------------------------------------------- sampling
    def sample(self, theta: torch.Tensor, n: int, *, seed: Optional[int] = None,
               generator: Optional[torch.Generator] = None) -> Trajectories:
        """Roll out ``n`` episodes with the softmax policy ``θ`` (``[S, A]``), vectorised over ``n``."""
        g = _generator(seed, generator)
        probs = softmax_policy(theta.detach().to(torch.float64))  # (S, A)
        H = self.horizon
        states = torch.empty(n, H, dtype=torch.long)
        actions = torch.empty(n, H, dtype=torch.long)
        s = torch.multinomial(self.init, n, replacement=True, generator=g)  # (n,)
        for t in range(H):
            a = torch.multinomial(probs[s], 1, generator=g).squeeze(1)  # (n,)
            states[:, t], actions[:, t] = s, a
            s = torch.multinomial(self.transitions[s, a], 1, generator=g).squeeze(1)
        rewards = self.reward[states, actions]  # (n, H)
        if self.reward_noise > 0:
            rewards = rewards + self.reward_noise * torch.randn(n, H, generator=g, dtype=torch.float64)
        return Trajectories(states, actions, rewards)

    # -------------------------------------------------------------------------- enumeration
    def enumerate(self) -> tuple[Trajectories, torch.Tensor]:
        """Every trajectory (``S^H · A^H`` of them) with its expected rewards, and the log-probability
        of its states under the environment alone, ``log p(s_0) + Σ_t log p(s_{t+1} | s_t, a_t)``
        (``-inf`` where impossible). Returns ``(trajectories, env_logp [M])``."""
        S, A, H = self.num_states, self.num_actions, self.horizon
        combos = torch.tensor(list(itertools.product(range(S), repeat=H)), dtype=torch.long)  # (S^H, H)
        acts = torch.tensor(list(itertools.product(range(A), repeat=H)), dtype=torch.long)  # (A^H, H)
        states = combos.repeat_interleave(len(acts), dim=0)  # (M, H)
        actions = acts.repeat(len(combos), 1)  # (M, H)
        env_logp = torch.log(self.init[states[:, 0]])
        if H > 1:
            step_p = self.transitions[states[:, :-1], actions[:, :-1], states[:, 1:]]  # (M, H-1)
            env_logp = env_logp + torch.log(step_p).sum(1)
        rewards = self.reward[states, actions]  # (M, H)
        return Trajectories(states, actions, rewards), env_logp

    def policy_logp(self, theta: torch.Tensor, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """``log π_θ(a_t | s_t)`` for every step, ``[N, H]`` (differentiable in ``θ``)."""
        logp = torch.log_softmax(theta.to(torch.float64), dim=-1)  # (S, A)
        return logp[states, actions]

    def expected_return(self, theta: torch.Tensor, gamma: float = 1.0) -> torch.Tensor:
        """Exact ``J(θ) = Σ_τ p_θ(τ) R(τ)`` by summing over every trajectory (differentiable)."""
        trajs, env_logp = self.enumerate()
        logp = env_logp + self.policy_logp(theta, trajs.states, trajs.actions).sum(1)  # (M,)
        discounts = gamma ** torch.arange(self.horizon, dtype=torch.float64)
        returns = (trajs.rewards * discounts).sum(1)  # (M,)
        return (torch.exp(logp) * returns).sum()

    def exact_gradient(self, theta: torch.Tensor, gamma: float = 1.0) -> torch.Tensor:
        """Exact ``∇_θ J(θ)``, ``[S, A]``: autograd through the exact finite sum."""
        theta = theta.detach().to(torch.float64).requires_grad_(True)
        (grad,) = torch.autograd.grad(self.expected_return(theta, gamma), theta)
        return grad

    def values(self, theta: torch.Tensor, gamma: float = 1.0) -> torch.Tensor:
        """Exact state values ``V_t(s)`` for ``t = 0..H`` by backward induction, ``[H + 1, S]``
        (``V_H = 0``). The expected return is ``init · V_0``."""
        probs = softmax_policy(theta.detach().to(torch.float64))  # (S, A)
        V = torch.zeros(self.horizon + 1, self.num_states, dtype=torch.float64)
        for t in range(self.horizon - 1, -1, -1):
            Q = self.reward + gamma * self.transitions @ V[t + 1]  # (S, A)
            V[t] = (probs * Q).sum(-1)
        return V


class Segments(NamedTuple):
    """A batch of fixed-length rollouts with automatic resets (as PPO collects them).

    ``dones[b, t]`` is True when the episode ended after step t (a new one starts at t + 1).
    ``last_states[b]`` is the state after the last column, to bootstrap rows cut by the time limit.
    """

    states: torch.Tensor  # (B, T) long
    actions: torch.Tensor  # (B, T) long, 0 = left, 1 = right
    rewards: torch.Tensor  # (B, T) float64
    dones: torch.Tensor  # (B, T) bool
    last_states: torch.Tensor  # (B,) long


class RandomWalk:
    """A random walk on a chain: the classic testbed for TD(λ), with values known exactly.

    Non-terminal states are ``0 … n−1``; the walk starts in the middle. Action 1 moves right,
    action 0 left; the policy moves right with probability ``p_right``. Stepping off the left
    end ends the episode with reward ``left_reward``, off the right end with ``right_reward``;
    every other step gives ``step_reward``. Exact ``V``, ``Q`` and ``A = Q − V`` come from one
    linear solve.

    Args:
      num_states: number of non-terminal states ``n`` (≥ 2).
      p_right: probability that the policy moves right.
      left_reward, right_reward, step_reward: rewards as described.
      start: start state (default the middle, ``n // 2``).
    """

    def __init__(self, num_states: int = 9, p_right: float = 0.5, *, left_reward: float = -1.0,
                 right_reward: float = 1.0, step_reward: float = 0.0, start: Optional[int] = None):
        if not (isinstance(num_states, int) and num_states >= 2):
            raise ValueError(f"num_states must be an int >= 2, got {num_states!r}")
        if not 0.0 <= p_right <= 1.0:
            raise ValueError(f"p_right must lie in [0, 1], got {p_right}")
        self.num_states = num_states
        self.p_right = float(p_right)
        self.left_reward, self.right_reward = float(left_reward), float(right_reward)
        self.step_reward = float(step_reward)
        self.start = num_states // 2 if start is None else int(start)
        if not 0 <= self.start < num_states:
            raise ValueError(f"start must lie in [0, {num_states}), got {self.start}")

    def _step_table(self):
        """next_state [n, 2] (−1 = terminal), reward [n, 2], terminal [n, 2]."""
        n = self.num_states
        s = torch.arange(n)
        nxt = torch.stack([s - 1, s + 1], dim=1)  # (n, 2)
        terminal = (nxt < 0) | (nxt >= n)
        reward = torch.full((n, 2), self.step_reward, dtype=torch.float64)
        reward[0, 0] = self.left_reward
        reward[n - 1, 1] = self.right_reward
        return nxt.clamp(0, n - 1), reward, terminal

    def values(self, gamma: float = 1.0) -> torch.Tensor:
        """Exact ``V(s)`` for the walk's policy, ``[n]``: solves ``V = r_π + γ P_π V``."""
        n = self.num_states
        nxt, reward, terminal = self._step_table()
        probs = torch.tensor([1 - self.p_right, self.p_right], dtype=torch.float64)
        P = torch.zeros(n, n, dtype=torch.float64)
        for a in range(2):
            live = ~terminal[:, a]
            P[torch.arange(n)[live], nxt[live, a]] += probs[a]
        r = (reward * probs).sum(1)
        return torch.linalg.solve(torch.eye(n, dtype=torch.float64) - gamma * P, r)

    def q_values(self, gamma: float = 1.0) -> torch.Tensor:
        """Exact ``Q(s, a) = r(s, a) + γ V(s')`` (0 after a terminal step), ``[n, 2]``."""
        nxt, reward, terminal = self._step_table()
        V = self.values(gamma)
        return reward + gamma * V[nxt] * (~terminal)

    def advantages(self, gamma: float = 1.0) -> torch.Tensor:
        """Exact ``A(s, a) = Q(s, a) − V(s)``, ``[n, 2]``."""
        return self.q_values(gamma) - self.values(gamma)[:, None]

    def rollout(self, num_rows: int, T: int, *, seed: Optional[int] = None,
                generator: Optional[torch.Generator] = None) -> Segments:
        """``num_rows`` rows of ``T`` steps each, resetting to ``start`` after every episode."""
        g = _generator(seed, generator)
        nxt, reward, terminal = self._step_table()
        states = torch.empty(num_rows, T, dtype=torch.long)
        actions = torch.empty(num_rows, T, dtype=torch.long)
        s = torch.full((num_rows,), self.start, dtype=torch.long)
        for t in range(T):
            a = (torch.rand(num_rows, generator=g, dtype=torch.float64) < self.p_right).long()
            states[:, t], actions[:, t] = s, a
            done = terminal[s, a]
            s = torch.where(done, torch.full_like(s, self.start), nxt[s, a])
        rewards = reward[states, actions]
        dones = terminal[states, actions]
        return Segments(states, actions, rewards, dones, s)
