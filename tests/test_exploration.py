"""Epsilon schedules and epsilon-greedy action selection."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from duel_tutorial.exploration import epsilon_greedy, exponential_epsilon, linear_epsilon


class FixedQ(nn.Module):
    """Q-values given by a fixed table: row i of the batch gets ``table[i]``; counts calls."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.table = nn.Parameter(table, requires_grad=False)
        self.calls = 0

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.table[: len(obs)]


def test_linear_schedule_goes_from_start_to_end_then_stays():
    assert linear_epsilon(0, 1.0, 0.1, 100) == 1.0
    assert linear_epsilon(50, 1.0, 0.1, 100) == pytest.approx(0.55)
    assert linear_epsilon(100, 1.0, 0.1, 100) == pytest.approx(0.1)
    assert linear_epsilon(10_000, 1.0, 0.1, 100) == pytest.approx(0.1)


@settings(max_examples=50, deadline=None)
@given(step=st.integers(0, 1000), start=st.floats(0.0, 1.0), end=st.floats(0.0, 1.0),
       duration=st.integers(1, 500))
def test_linear_schedule_stays_between_end_and_start(step, start, end, duration):
    epsilon = linear_epsilon(step, start, end, duration)
    assert min(start, end) - 1e-12 <= epsilon <= max(start, end) + 1e-12


def test_exponential_schedule_multiplies_by_decay_per_episode_with_a_floor():
    assert exponential_epsilon(0, 1.0, 0.01, 0.995) == 1.0
    assert exponential_epsilon(100, 1.0, 0.01, 0.995) == pytest.approx(0.995**100)
    assert exponential_epsilon(10_000, 1.0, 0.01, 0.995) == 0.01


@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_epsilon_outside_0_1_is_a_clear_error(bad):
    with pytest.raises(ValueError, match=r"must be in \[0, 1\]"):
        linear_epsilon(0, bad, 0.1, 10)
    net = FixedQ(torch.zeros(1, 2))
    with pytest.raises(ValueError, match=r"epsilon must be in \[0, 1\]"):
        epsilon_greedy(net, np.zeros((1, 4), np.float32), bad, 2, np.random.default_rng(0))


def test_epsilon_zero_picks_the_argmax_of_each_row():
    table = torch.tensor([[0.0, 1.0, 0.0], [5.0, 1.0, 0.0], [0.0, 1.0, 2.0]])
    actions = epsilon_greedy(FixedQ(table), np.zeros((3, 4), np.float32), 0.0, 3,
                             np.random.default_rng(0))
    assert actions.tolist() == [1, 0, 2]
    assert actions.dtype == np.int64


def test_epsilon_one_is_uniform_and_never_calls_the_network():
    net = FixedQ(torch.zeros(1000, 4))
    actions = epsilon_greedy(net, np.zeros((1000, 4), np.float32), 1.0, 4,
                             np.random.default_rng(0))
    assert net.calls == 0
    counts = np.bincount(actions, minlength=4)
    assert counts.min() > 200  # ~250 each


def test_epsilon_greedy_explores_a_fraction_epsilon_of_rows():
    table = torch.tensor([[0.0, 1.0]]).repeat(10_000, 1)  # greedy action is always 1
    actions = epsilon_greedy(FixedQ(table), np.zeros((10_000, 4), np.float32), 0.2, 2,
                             np.random.default_rng(0))
    # random rows pick action 0 half the time: P(action 0) = ε / 2
    assert (actions == 0).mean() == pytest.approx(0.1, abs=0.01)


def test_same_seed_same_actions():
    table = torch.randn(64, 3, generator=torch.Generator().manual_seed(0))
    obs = np.zeros((64, 4), np.float32)
    a = epsilon_greedy(FixedQ(table), obs, 0.5, 3, np.random.default_rng(1))
    b = epsilon_greedy(FixedQ(table), obs, 0.5, 3, np.random.default_rng(1))
    np.testing.assert_array_equal(a, b)
