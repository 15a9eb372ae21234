"""Exploration: how often to act at random (epsilon schedules) and epsilon-greedy actions.

Two schedules, both pure functions of a counter (so a checkpoint only needs the counter):

- :func:`linear_epsilon`: from ``start`` down to ``end`` over ``duration`` steps, then
  flat (Mnih et al., 2015: 1.0 -> 0.1 over the first million frames; SB3 and CleanRL
  express ``duration`` as a fraction of the run).
- :func:`exponential_epsilon`: multiply by ``decay`` after every episode, floored at
  ``end`` (the training sketch: 1.0, x0.995 per episode).

:func:`current_epsilon` picks the schedule a :class:`~duel_tutorial.config.DQNConfig` names.
:func:`epsilon_greedy` picks actions for a batch of observations: with probability
epsilon a uniformly random action, otherwise ``argmax_a Q(s, a)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
    from duel_tutorial.config import DQNConfig


def _check_probability(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1]; got {value!r}")


def linear_epsilon(step: int, start: float, end: float, duration: int) -> float:
    """ε(t) = start + (end - start) min(1, t / duration): linear decay, then constant."""
    _check_probability("start", start)
    _check_probability("end", end)
    if duration < 1:
        raise ValueError(f"duration must be a positive number of steps; got {duration!r}")
    fraction = min(1.0, step / duration)
    return start + (end - start) * fraction


def exponential_epsilon(episode: int, start: float, end: float, decay: float) -> float:
    """ε(k) = max(end, start · decay^k) after ``k`` finished episodes."""
    _check_probability("start", start)
    _check_probability("end", end)
    if not 0.0 < decay <= 1.0:
        raise ValueError(f"decay must be in (0, 1]; got {decay!r}")
    return max(end, start * decay**episode)


def current_epsilon(config: DQNConfig, step: int, episode: int,
                    horizon: int | None = None) -> float:
    """Epsilon after ``step`` environment steps and ``episode`` finished episodes.

    ``horizon``: the steps the linear schedule is laid over (default ``total_steps``; a
    resumed run passes the horizon of its first start, so extending it changes nothing).
    """
    if config.epsilon_schedule == "linear":
        horizon = config.total_steps if horizon is None else horizon
        duration = max(1, round(config.exploration_fraction * horizon))
        return linear_epsilon(step, config.epsilon_start, config.epsilon_end, duration)
    return exponential_epsilon(episode, config.epsilon_start, config.epsilon_end,
                               config.epsilon_decay)


def epsilon_greedy(
    network: nn.Module,
    obs: np.ndarray | torch.Tensor,
    epsilon: float,
    n_actions: int,
    rng: np.random.Generator,
    device: torch.device | None = None,
) -> np.ndarray:
    """Epsilon-greedy actions ``(B,)`` int64 for a batch of observations ``(B, *obs_shape)``.

    Each row independently: a random action in ``range(n_actions)`` with probability
    ``epsilon``, else the network's greedy action. ``rng`` draws the same number of
    numbers whatever the outcome, so runs stay reproducible. When every row explores,
    the network is not called at all. ``device`` is where the network lives (default:
    looked up from its parameters; pass it in a hot loop to skip the lookup).
    """
    _check_probability("epsilon", epsilon)
    n = len(obs)
    explore = rng.random(n) < epsilon  # (B,) bool
    random_actions = rng.integers(0, n_actions, size=n)  # (B,) int64
    if explore.all():
        return random_actions
    if device is None:
        device = next(network.parameters()).device
    with torch.no_grad():
        q = network(torch.as_tensor(obs, device=device))  # (B, n_actions)
        if q.dim() != 2 or q.shape[1] != n_actions:
            raise ValueError(f"network must return q of shape ({n}, {n_actions}); "
                             f"got {tuple(q.shape)}")
        # argmax_a Q(s, a)
        greedy = q.argmax(dim=1).cpu().numpy()
    return np.where(explore, random_actions, greedy)
