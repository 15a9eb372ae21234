"""The corridor of Wang et al. (2016), section 4.1: policy evaluation with many actions.

Three corridors joined end to end: a vertical one of 10 cells, a horizontal one of 50 and
a vertical one of 10, 70 cells in all. The agent starts at the bottom left and the largest
reward waits at the top right. Actions are up, down, left, right and no-op; the 10- and
20-action variants add duplicate no-ops. The paper then *evaluates* one fixed policy (not
controls): it learns ``Q^pi`` of the epsilon-greedy policy around ``Q*`` with the expected
TD target ``y = r + gamma * sum_a' pi(a'|s') Q(s', a'; theta)`` and scores the network by
the squared error against the exact ``Q^pi``, summed over states and actions.

What the paper leaves open and this module chooses (our choices, not the paper's):

- Geometry: cells are numbered along the path, 0 at the bottom left to 69 at the top
  right. Cell 0, the dead end below the start, pays a small reward of 1; cell 69 pays 10.
  Both end the episode. The agent starts in cell 1. A move into a wall leaves the agent
  where it is.
- Discount ``gamma = 0.9`` (:data:`GAMMA`). TD without a target network oscillated with
  0.99 in our runs. With 0.9 the goal is worth only ``10 * 0.9**67 < 0.01`` from the
  start, less than the small reward, so from cells 1-23 the greedy policy heads back to
  the small reward.
- Observation: the one-hot vector of the cell (70 inputs).
- Training data: ``(s, a)`` pairs drawn uniformly over the non-terminal states and all
  actions, in minibatches of 64; the TD target uses the current network with no gradient
  through it (no target network: the paper's target has ``theta_i``, not ``theta^-``).
- Optimizer: Adam, learning rate ``3e-4`` (:data:`LR`), 20,000 updates, by default;
  ``CorridorConfig(optimizer="sgd", lr=0.1)`` is the book's second sweep.

Everything here is tabular and exact: :class:`Corridor` holds the transition table,
:func:`optimal_q` and :func:`policy_q` solve for ``Q*`` and ``Q^pi`` by dynamic programming
in float64, and :func:`train_policy_evaluation` runs the paper's experiment for one
network and one seed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from duel_tutorial.aggregation import aggregate
from duel_tutorial.model import MLPQNetwork

ACTION_NAMES: tuple[str, ...] = ("up", "down", "left", "right", "no-op")
"""The five basic actions; actions 5, 6, ... of the larger variants are more no-ops."""
_MOVES: tuple[tuple[int, int], ...] = ((0, 1), (0, -1), (-1, 0), (1, 0), (0, 0))

NetworkKind = Literal["single", "dueling"]
NETWORK_KINDS: tuple[NetworkKind, ...] = ("single", "dueling")

GAMMA = 0.9
"""Our discount (the paper does not state one)."""
LR = 3e-4
"""Our Adam learning rate."""
UPDATES = 20_000
"""Our number of updates per run (the paper does not state its training length)."""


def corridor_cells(vertical: int = 10, horizontal: int = 50) -> list[tuple[int, int]]:
    """``(x, y)`` of every cell, in path order from the bottom left to the top right.

    Left section ``x = 0, y = 0 .. vertical-1``; horizontal section ``y = vertical,
    x = 0 .. horizontal-1``; right section ``x = horizontal-1, y = vertical+1 .. 2*vertical``.
    The three sections do not overlap: ``2 * vertical + horizontal`` cells.
    """
    left = [(0, y) for y in range(vertical)]
    middle = [(x, vertical) for x in range(horizontal)]
    right = [(horizontal - 1, y) for y in range(vertical + 1, 2 * vertical + 1)]
    return left + middle + right


@dataclass(frozen=True, eq=False)
class Corridor:
    """The corridor MDP as tables.

    Attributes (``S = 2 * vertical + horizontal`` cells, ``A = n_actions``):
        cells: ``(x, y)`` of each cell, in path order.
        next_state: ``(S, A)`` int, the cell an action leads to (terminal cells loop).
        reward: ``(S, A)`` float, the reward for that step.
        done: ``(S, A)`` bool, whether that step ends the episode.
        terminal: ``(S,)`` bool, the two reward cells.
        start: the start cell (1).
    """

    n_actions: int = 5
    vertical: int = 10
    horizontal: int = 50
    small_reward: float = 1.0
    large_reward: float = 10.0
    cells: list[tuple[int, int]] = field(init=False, repr=False)
    next_state: np.ndarray = field(init=False, repr=False)
    reward: np.ndarray = field(init=False, repr=False)
    done: np.ndarray = field(init=False, repr=False)
    terminal: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("n_actions", "vertical", "horizontal"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{name} must be an int; got {type(value).__name__}")
        if self.n_actions < len(ACTION_NAMES):
            raise ValueError(
                f"n_actions must be at least {len(ACTION_NAMES)} (up, down, left, right, "
                f"no-op); got {self.n_actions}"
            )
        if self.vertical < 2 or self.horizontal < 2:
            raise ValueError(
                "vertical and horizontal must be at least 2 cells; "
                f"got vertical={self.vertical}, horizontal={self.horizontal}"
            )
        cells = corridor_cells(self.vertical, self.horizontal)
        index = {cell: i for i, cell in enumerate(cells)}
        n_states = len(cells)
        terminal = np.zeros(n_states, dtype=bool)
        terminal[[0, n_states - 1]] = True
        payoff = np.zeros(n_states)
        payoff[0], payoff[-1] = self.small_reward, self.large_reward
        next_state = np.empty((n_states, self.n_actions), dtype=np.int64)
        for s, (x, y) in enumerate(cells):
            for a in range(self.n_actions):
                dx, dy = _MOVES[min(a, len(_MOVES) - 1)]  # actions 4, 5, ... are all no-ops
                # a move into a wall (or any move from a terminal cell) stays put
                target = index.get((x + dx, y + dy), s)
                next_state[s, a] = s if terminal[s] else target
        done = terminal[next_state] & ~terminal[:, None]
        reward = np.where(done, payoff[next_state], 0.0)
        for name, value in (("cells", cells), ("next_state", next_state), ("reward", reward),
                            ("done", done), ("terminal", terminal)):
            object.__setattr__(self, name, value)

    @property
    def n_states(self) -> int:
        """Number of cells, terminal ones included (70 for the paper's sizes)."""
        return len(self.cells)

    @property
    def start(self) -> int:
        """The start cell: the lowest cell of the left section that pays nothing."""
        return 1

    def observations(self) -> torch.Tensor:
        """One-hot observation of every cell: ``(S, S)`` float32, row ``s`` encodes cell ``s``."""
        return torch.eye(self.n_states)


def _as_corridor_table(name: str, table: np.ndarray, corridor: Corridor) -> np.ndarray:
    expected = (corridor.n_states, corridor.n_actions)
    table = np.asarray(table, dtype=np.float64)
    if table.shape != expected:
        raise ValueError(f"{name} must have shape {expected} (states, actions); got {table.shape}")
    return table


def optimal_q(corridor: Corridor, gamma: float = GAMMA, tol: float = 1e-12) -> np.ndarray:
    """``Q*`` by value iteration, ``(S, A)`` float64 (0 in terminal cells).

    ``Q(s, a) <- r(s, a) + gamma * (1 - done) * max_a' Q(s', a')`` until nothing moves by
    more than ``tol``.
    """
    _check_gamma(gamma)
    q = np.zeros((corridor.n_states, corridor.n_actions))
    for _ in range(100_000):
        # Q(s, a) = r + gamma * max_a' Q(s', a')
        new = corridor.reward + gamma * ~corridor.done * q.max(axis=1)[corridor.next_state]
        new[corridor.terminal] = 0.0
        if np.abs(new - q).max() <= tol:
            return new
        q = new
    raise RuntimeError("value iteration did not converge in 100000 sweeps")


def epsilon_greedy(q: np.ndarray, epsilon: float) -> np.ndarray:
    """The epsilon-greedy policy around ``q``: ``(S, A)`` probabilities, rows sum to 1.

    ``pi(a|s) = epsilon / |A| + (1 - epsilon) * [a = argmax_a' q(s, a')]``; ties go to the
    first maximiser, as ``argmax`` breaks them.
    """
    q = np.asarray(q, dtype=np.float64)
    if q.ndim != 2:
        raise ValueError(f"q must have shape (states, actions); got {q.shape}")
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"epsilon must be in [0, 1]; got {epsilon}")
    n_actions = q.shape[1]
    pi = np.full(q.shape, epsilon / n_actions)
    pi[np.arange(len(q)), q.argmax(axis=1)] += 1.0 - epsilon
    return pi


def policy_q(corridor: Corridor, pi: np.ndarray, gamma: float = GAMMA) -> np.ndarray:
    """``Q^pi`` exactly, ``(S, A)`` float64 (0 in terminal cells), by one linear solve.

    ``V = (I - gamma P_pi)^-1 r_pi`` over the cells, with ``P_pi(s, s') = sum_a pi(a|s)
    [s' = next(s, a), not done]`` and ``r_pi(s) = sum_a pi(a|s) r(s, a)``; then
    ``Q(s, a) = r(s, a) + gamma * (1 - done) * V(next(s, a))``.
    """
    _check_gamma(gamma)
    pi = _as_corridor_table("pi", pi, corridor)
    if not np.allclose(pi.sum(axis=1), 1.0):
        raise ValueError("pi must hold probabilities: every row must sum to 1")
    n = corridor.n_states
    p_pi = np.zeros((n, n))
    rows = np.repeat(np.arange(n), corridor.n_actions)
    np.add.at(p_pi, (rows, corridor.next_state.ravel()), (pi * ~corridor.done).ravel())
    p_pi[corridor.terminal] = 0.0
    r_pi = (pi * corridor.reward).sum(axis=1)
    # V = (I - gamma P_pi)^-1 r_pi
    v = np.linalg.solve(np.eye(n) - gamma * p_pi, r_pi)
    # Q(s, a) = r + gamma * (1 - done) * V(s')
    q = corridor.reward + gamma * ~corridor.done * v[corridor.next_state]
    q[corridor.terminal] = 0.0
    return q


def squared_error(q: np.ndarray | torch.Tensor, q_pi: np.ndarray, corridor: Corridor) -> float:
    """The paper's metric: ``SE = sum_{s, a} (Q(s, a; theta) - Q^pi(s, a))^2``.

    The sum runs over the non-terminal cells (68 of the paper's 70) and every action;
    terminal cells have no action to evaluate.
    """
    if isinstance(q, torch.Tensor):
        q = q.detach().cpu().double().numpy()
    q = _as_corridor_table("q", q, corridor)
    q_pi = _as_corridor_table("q_pi", q_pi, corridor)
    live = ~corridor.terminal
    return float(((q[live] - q_pi[live]) ** 2).sum())


def _check_gamma(gamma: float) -> None:
    if not 0.0 <= gamma < 1.0:
        raise ValueError(f"gamma must be in [0, 1); got {gamma}")


class CorridorEnv(gym.Env):
    """The corridor as a gymnasium environment (observation: the cell index).

    ``step`` returns ``(cell, reward, terminated, truncated, info)``; an episode terminates
    on either reward cell and is truncated after ``max_episode_steps`` steps if given.
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 (gymnasium's convention)

    def __init__(self, n_actions: int = 5, max_episode_steps: int | None = None) -> None:
        self.corridor = Corridor(n_actions=n_actions)
        self.observation_space = gym.spaces.Discrete(self.corridor.n_states)
        self.action_space = gym.spaces.Discrete(n_actions)
        self.max_episode_steps = max_episode_steps
        self._cell, self._steps = self.corridor.start, 0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[int, dict[str, Any]]:
        """Back to the start cell (the corridor is deterministic; ``seed`` seeds spaces)."""
        super().reset(seed=seed)
        self._cell, self._steps = self.corridor.start, 0
        return self._cell, {}

    def step(self, action: int) -> tuple[int, float, bool, bool, dict[str, Any]]:
        """Move one cell (or not), following the corridor's tables."""
        if not self.action_space.contains(action):
            raise ValueError(
                f"action must be an int in [0, {self.corridor.n_actions}); got {action!r}"
            )
        if self.corridor.terminal[self._cell]:
            raise RuntimeError("step() called on a finished episode; call reset() first")
        s = self._cell
        self._cell = int(self.corridor.next_state[s, action])
        self._steps += 1
        terminated = bool(self.corridor.done[s, action])
        truncated = (self.max_episode_steps is not None and self._steps >= self.max_episode_steps
                     and not terminated)
        return self._cell, float(self.corridor.reward[s, action]), terminated, truncated, {}


class CorridorDuelingNetwork(nn.Module):
    """The paper's dueling MLP for the corridor: one shared layer, then two streams.

    ``input_size -> 50`` (shared, ReLU), then value ``50 -> 25 -> 1`` and advantage
    ``50 -> 25 -> n_actions`` (ReLU inside each stream), combined by
    ``Q = V + (A - mean_a' A)``. Three layers of weights on every path, as the
    single-stream ``MLPQNetwork(input_size, n_actions, hidden=(50, 50))``.
    """

    def __init__(
        self, input_size: int, n_actions: int, hidden: int = 50, stream_hidden: int = 25
    ) -> None:
        super().__init__()
        for name, size in (("input_size", input_size), ("n_actions", n_actions),
                           ("hidden", hidden), ("stream_hidden", stream_hidden)):
            if not isinstance(size, int) or isinstance(size, bool) or size < 1:
                raise ValueError(f"{name} must be a positive int; got {size!r}")
        self.input_size, self.n_actions = input_size, n_actions
        self.shared = nn.Sequential(nn.Linear(input_size, hidden), nn.ReLU())
        self.value = nn.Sequential(
            nn.Linear(hidden, stream_hidden), nn.ReLU(), nn.Linear(stream_hidden, 1)
        )
        self.advantage = nn.Sequential(
            nn.Linear(hidden, stream_hidden), nn.ReLU(), nn.Linear(stream_hidden, n_actions)
        )

    def streams(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(value (B, 1), advantage (B, n_actions))`` for ``obs: (B, input_size)``."""
        if obs.dim() != 2 or obs.shape[1] != self.input_size:
            raise ValueError(
                f"obs must have shape (B, {self.input_size}); got {tuple(obs.shape)}"
            )
        h = self.shared(obs)  # (B, 50)
        return self.value(h), self.advantage(h)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Q-values ``q: (B, n_actions)``."""
        # Q = V + (A - 1/|A| sum_a' A)
        return aggregate(*self.streams(obs), method="mean")


def corridor_network(kind: NetworkKind, input_size: int, n_actions: int) -> nn.Module:
    """The paper's networks: ``"single"`` is ``input -> 50 -> 50 -> n_actions``;
    ``"dueling"`` is ``input -> 50 -> {25 -> 1, 25 -> n_actions}`` with mean-centring."""
    if kind == "single":
        return MLPQNetwork(input_size, n_actions, hidden=(50, 50))
    if kind == "dueling":
        return CorridorDuelingNetwork(input_size, n_actions)
    raise ValueError(f"kind must be one of {NETWORK_KINDS}; got {kind!r}")


def _doc(help: str, source: str) -> dict[str, str]:
    """Field metadata: a one-line help text (the script's CLI uses it) and its source."""
    return {"help": help, "source": source}


@dataclass(frozen=True)
class CorridorConfig:
    """Hyperparameters of the corridor experiment. The paper states the first four only."""

    n_actions: int = field(default=5, metadata=_doc(
        "actions: up, down, left, right, then no-ops (5, 10 or 20)", "paper sec. 4.1"))
    epsilon: float = field(default=0.001, metadata=_doc(
        "epsilon of the evaluated epsilon-greedy policy around Q*", "paper sec. 4.1"))
    vertical: int = field(default=10, metadata=_doc(
        "cells in each vertical section", "paper sec. 4.1"))
    horizontal: int = field(default=50, metadata=_doc(
        "cells in the horizontal section", "paper sec. 4.1"))
    gamma: float = field(default=GAMMA, metadata=_doc(
        "discount factor", "ours"))
    small_reward: float = field(default=1.0, metadata=_doc(
        "reward for entering cell 0, the dead end below the start", "ours"))
    large_reward: float = field(default=10.0, metadata=_doc(
        "reward for entering the last cell, at the far top right", "ours"))
    optimizer: Literal["adam", "sgd"] = field(default="adam", metadata=_doc(
        "'adam' or 'sgd'", "ours"))
    lr: float = field(default=LR, metadata=_doc(
        "learning rate", "ours"))
    batch_size: int = field(default=64, metadata=_doc(
        "(s, a) pairs per update, drawn uniformly over non-terminal cells and actions",
        "ours"))
    updates: int = field(default=UPDATES, metadata=_doc(
        "gradient updates per run", "ours"))

    def __post_init__(self) -> None:
        for name in ("n_actions", "vertical", "horizontal", "batch_size", "updates"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"CorridorConfig.{name} must be a positive int; got {value!r}")
        if self.n_actions < len(ACTION_NAMES):
            raise ValueError(f"CorridorConfig.n_actions must be >= {len(ACTION_NAMES)}; "
                             f"got {self.n_actions}")
        if not 0.0 <= self.epsilon <= 1.0:
            raise ValueError(f"CorridorConfig.epsilon must be in [0, 1]; got {self.epsilon!r}")
        if not 0.0 <= self.gamma < 1.0:
            raise ValueError(f"CorridorConfig.gamma must be in [0, 1); got {self.gamma!r}")
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"CorridorConfig.optimizer must be 'adam' or 'sgd'; "
                             f"got {self.optimizer!r}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"CorridorConfig.lr must be a finite number > 0; got {self.lr!r}")

    def corridor(self) -> Corridor:
        """The corridor these settings describe."""
        return Corridor(n_actions=self.n_actions, vertical=self.vertical,
                        horizontal=self.horizontal, small_reward=self.small_reward,
                        large_reward=self.large_reward)

    def to_dict(self) -> dict[str, Any]:
        """Every field, for a provenance record."""
        return asdict(self)


def expected_td_targets(
    q: torch.Tensor, corridor: Corridor, pi: torch.Tensor, gamma: float
) -> torch.Tensor:
    """The paper's target for every ``(s, a)``: ``(S, A)``, no gradient through it.

    ``y(s, a) = r(s, a) + gamma * (1 - done) * sum_a' pi(a'|s') Q(s', a')`` with
    ``s' = next(s, a)``: the expected-SARSA target, exact because the corridor is
    deterministic and ``pi`` is known.
    """
    expected = (corridor.n_states, corridor.n_actions)
    if tuple(q.shape) != expected or tuple(pi.shape) != expected:
        raise ValueError(f"q and pi must have shape {expected}; got {tuple(q.shape)} "
                         f"and {tuple(pi.shape)}")
    q = q.detach()
    next_state = torch.as_tensor(corridor.next_state, device=q.device)
    reward = torch.as_tensor(corridor.reward, dtype=q.dtype, device=q.device)
    not_done = torch.as_tensor(~corridor.done, dtype=q.dtype, device=q.device)
    # E_{a' ~ pi(s')} Q(s', a'), one number per cell
    v = (pi.to(q) * q).sum(dim=1)
    # y = r + gamma * (1 - done) * E_{a' ~ pi(s')} Q(s', a')
    return reward + gamma * not_done * v[next_state]


def log_spaced_steps(last: int, points: int = 25) -> list[int]:
    """Distinct update counts from 1 to ``last``, about evenly spaced on a log axis."""
    if last < 1 or points < 2:
        raise ValueError(f"need last >= 1 and points >= 2; got last={last}, points={points}")
    grid = np.unique(np.round(np.logspace(0, math.log10(last), points)).astype(int))
    return [int(step) for step in grid]


def train_policy_evaluation(
    kind: NetworkKind,
    config: CorridorConfig,
    seed: int,
    record_at: Sequence[int],
) -> list[tuple[int, float]]:
    """Learn ``Q^pi`` by TD with expected-SARSA targets; ``(updates, SE)`` at ``record_at``.

    One update draws ``batch_size`` pairs ``(s, a)`` uniformly over the non-terminal
    cells and all actions and takes one optimizer step on the mean of
    ``(Q(s, a; theta) - y(s, a))^2``, ``y`` from :func:`expected_td_targets` with the
    current network (no target network). Step 0 is the untrained network.
    Deterministic for a given seed and machine: ``torch.manual_seed(seed)`` builds the
    network and a generator seeded with ``seed`` draws the pairs, so the single-stream
    and the dueling network of one seed see the same pairs. Runs on one CPU thread
    (restoring torch's setting afterwards) and on the CPU.
    """
    record = sorted({int(step) for step in record_at})
    if not record or record[0] < 0 or record[-1] > config.updates:
        raise ValueError(f"record_at must lie in [0, {config.updates}] (updates); "
                         f"got {list(record_at)}")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny networks: one thread is fastest by far, and reproducible
    try:
        return _train(kind, config, seed, record)
    finally:
        torch.set_num_threads(threads)


def _train(
    kind: NetworkKind, config: CorridorConfig, seed: int, record: list[int]
) -> list[tuple[int, float]]:
    corridor = config.corridor()
    pi_np = epsilon_greedy(optimal_q(corridor, config.gamma), config.epsilon)
    q_pi = policy_q(corridor, pi_np, config.gamma)
    pi = torch.as_tensor(pi_np, dtype=torch.float32)

    torch.manual_seed(seed)
    net = corridor_network(kind, corridor.n_states, corridor.n_actions)
    if config.optimizer == "adam":
        optimizer: torch.optim.Optimizer = torch.optim.Adam(net.parameters(), lr=config.lr)
    else:
        optimizer = torch.optim.SGD(net.parameters(), lr=config.lr)
    generator = torch.Generator().manual_seed(seed)
    obs = corridor.observations()  # (S, S) one-hot
    live = torch.as_tensor(np.flatnonzero(~corridor.terminal))  # non-terminal cells
    n_pairs = len(live) * corridor.n_actions

    results: list[tuple[int, float]] = []
    for step in range(record[-1] + 1):
        q = net(obs)  # (S, A): every cell at once, 70 rows are cheap
        if step == record[len(results)]:
            results.append((step, squared_error(q, q_pi, corridor)))
            if step == record[-1]:
                break
        y = expected_td_targets(q, corridor, pi, config.gamma)  # (S, A), detached
        pair = torch.randint(n_pairs, (config.batch_size,), generator=generator)
        s, a = live[pair // corridor.n_actions], pair % corridor.n_actions
        # L(theta) = mean over the batch of (Q(s, a; theta) - y)^2
        loss = ((q[s, a] - y[s, a]) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return results
