"""The corridor of Wang et al. (2016), sec. 4.1: geometry, dynamics, exact Q^pi, networks, SE."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from duel_tutorial.corridor import (
    ACTION_NAMES,
    Corridor,
    CorridorConfig,
    CorridorDuelingNetwork,
    CorridorEnv,
    corridor_cells,
    corridor_network,
    epsilon_greedy,
    expected_td_targets,
    log_spaced_steps,
    optimal_q,
    policy_q,
    squared_error,
    train_policy_evaluation,
)

UP, DOWN, LEFT, RIGHT, NOOP = range(5)
GAMMA = 0.9


@pytest.fixture(scope="module")
def corridor() -> Corridor:
    return Corridor(n_actions=10)


def test_three_sections_of_10_50_10_cells_do_not_overlap():
    cells = corridor_cells(10, 50)
    assert len(cells) == len(set(cells)) == 10 + 50 + 10
    assert cells[0] == (0, 0) and cells[-1] == (49, 20)
    # consecutive cells along the path are neighbours: one connected corridor
    steps = {abs(x1 - x0) + abs(y1 - y0) for (x0, y0), (x1, y1) in itertools.pairwise(cells)}
    assert steps == {1}


def test_up_right_up_walks_the_path_from_the_start_to_the_goal(corridor):
    env = CorridorEnv(n_actions=5)
    cell, _ = env.reset(seed=0)
    assert cell == corridor.start == 1
    route = [UP] * 9 + [RIGHT] * 49 + [UP] * 10  # 68 steps: the path through every cell
    total = 0.0
    for i, action in enumerate(route):
        cell, reward, terminated, truncated, _ = env.step(action)
        total += reward
        assert terminated == (i == len(route) - 1) and not truncated
    assert cell == corridor.n_states - 1 and total == 10.0


def test_down_from_the_start_ends_the_episode_with_the_small_reward():
    env = CorridorEnv()
    env.reset()
    cell, reward, terminated, _, _ = env.step(DOWN)
    assert (cell, reward, terminated) == (0, 1.0, True)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(UP)


def test_walls_and_no_ops_leave_the_agent_in_place(corridor):
    stay = corridor.next_state == np.arange(corridor.n_states)[:, None]
    # every no-op, duplicates included, stays put
    assert stay[:, NOOP:].all()
    # left from the start cell is a wall; right in the left section too
    assert corridor.next_state[1, LEFT] == 1 and corridor.next_state[1, RIGHT] == 1
    # the horizontal section (cells 10..59) has walls above and below, except at the corners
    assert corridor.next_state[30, UP] == 30 and corridor.next_state[30, DOWN] == 30
    assert corridor.next_state[9, UP] == 10 and corridor.next_state[59, UP] == 60


def test_duplicate_no_ops_are_identical_to_the_first_no_op(corridor):
    for table in (corridor.next_state, corridor.reward, corridor.done):
        assert (table[:, NOOP:] == table[:, [NOOP]]).all()
    assert ACTION_NAMES[NOOP] == "no-op" and corridor.n_actions == 10


def test_only_the_two_end_cells_are_terminal_and_pay(corridor):
    assert np.flatnonzero(corridor.terminal).tolist() == [0, corridor.n_states - 1]
    assert sorted(corridor.reward[corridor.done].tolist()) == [1.0, 10.0]
    assert (corridor.reward[~corridor.done] == 0).all()


def test_optimal_q_satisfies_the_bellman_optimality_equation(corridor):
    q = optimal_q(corridor, GAMMA)
    target = corridor.reward + GAMMA * ~corridor.done * q.max(axis=1)[corridor.next_state]
    live = ~corridor.terminal
    np.testing.assert_allclose(q[live], target[live], atol=1e-10)
    # one step from the goal, up is worth the large reward
    assert q[corridor.n_states - 2, UP] == pytest.approx(10.0)


def test_epsilon_greedy_puts_1_minus_epsilon_plus_epsilon_over_n_on_the_argmax():
    pi = epsilon_greedy(np.array([[0.0, 2.0, 1.0, 0.0, 0.0]]), 0.001)
    np.testing.assert_allclose(pi, [[0.0002, 0.9992, 0.0002, 0.0002, 0.0002]])
    with pytest.raises(ValueError, match="epsilon"):
        epsilon_greedy(np.zeros((2, 5)), 1.5)


@pytest.mark.parametrize("n_actions", [5, 20])
def test_policy_q_satisfies_the_bellman_equation_for_epsilon_greedy(n_actions):
    corridor = Corridor(n_actions=n_actions)
    pi = epsilon_greedy(optimal_q(corridor, GAMMA), 0.001)
    q = policy_q(corridor, pi, GAMMA)
    # Q(s, a) = r + gamma * (1 - done) * sum_a' pi(a'|s') Q(s', a')
    v = (pi * q).sum(axis=1)
    target = corridor.reward + GAMMA * ~corridor.done * v[corridor.next_state]
    live = ~corridor.terminal
    np.testing.assert_allclose(q[live], target[live], atol=1e-10)
    assert (q[corridor.terminal] == 0).all()
    # the expected TD target in torch has Q^pi as its fixed point too
    y = expected_td_targets(torch.as_tensor(q), corridor, torch.as_tensor(pi), GAMMA)
    np.testing.assert_allclose(y.numpy()[live], q[live], atol=1e-10)


def test_policy_q_of_the_greedy_policy_is_q_star(corridor):
    q_star = optimal_q(corridor, GAMMA)
    np.testing.assert_allclose(policy_q(corridor, epsilon_greedy(q_star, 0.0), GAMMA), q_star,
                               atol=1e-10)


def test_squared_error_sums_over_non_terminal_states_and_all_actions(corridor):
    q_pi = policy_q(corridor, epsilon_greedy(optimal_q(corridor, GAMMA), 0.001), GAMMA)
    assert squared_error(q_pi, q_pi, corridor) == 0.0
    off_by_one = q_pi + 1.0  # terminal rows are off too, but they do not count
    assert squared_error(torch.as_tensor(off_by_one), q_pi, corridor) == pytest.approx(68 * 10)
    with pytest.raises(ValueError, match=r"\(70, 10\)"):
        squared_error(q_pi[:, :5], q_pi, corridor)


@pytest.mark.parametrize(("kind", "n_actions", "params"), [
    ("single", 5, 70 * 50 + 50 + 50 * 50 + 50 + 50 * 5 + 5),
    ("single", 20, 70 * 50 + 50 + 50 * 50 + 50 + 50 * 20 + 20),
    ("dueling", 5, 70 * 50 + 50 + (50 * 25 + 25 + 25 + 1) + (50 * 25 + 25 + 25 * 5 + 5)),
    ("dueling", 20, 70 * 50 + 50 + (50 * 25 + 25 + 25 + 1) + (50 * 25 + 25 + 25 * 20 + 20)),
])
def test_networks_have_the_papers_layer_sizes(kind, n_actions, params):
    net = corridor_network(kind, 70, n_actions)
    assert sum(p.numel() for p in net.parameters()) == params
    assert net(torch.eye(70)[:3]).shape == (3, n_actions)


def test_dueling_network_mean_centres_its_advantages():
    torch.manual_seed(0)
    net = CorridorDuelingNetwork(70, 20)
    obs = torch.eye(70)[:4]
    value, advantage = net.streams(obs)
    assert value.shape == (4, 1) and advantage.shape == (4, 20)
    # Q = V + (A - mean A): the mean over actions of Q is V
    torch.testing.assert_close(net(obs).mean(dim=1, keepdim=True), value)
    with pytest.raises(ValueError, match=r"\(B, 70\)"):
        net(torch.zeros(4, 2))


def test_bad_arguments_raise_one_line_errors():
    with pytest.raises(ValueError, match="n_actions must be at least 5"):
        Corridor(n_actions=4)
    with pytest.raises(ValueError, match="kind must be one of"):
        corridor_network("triple", 70, 5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="gamma"):
        CorridorConfig(gamma=1.0)
    with pytest.raises(ValueError, match="record_at"):
        train_policy_evaluation("single", CorridorConfig(updates=10), 0, [0, 11])


def test_log_spaced_steps_are_distinct_and_span_1_to_last():
    steps = log_spaced_steps(20_000, 25)
    assert steps[0] == 1 and steps[-1] == 20_000 and steps == sorted(set(steps))


def test_a_short_run_lowers_the_squared_error_and_is_deterministic():
    config = CorridorConfig(n_actions=5, updates=300)
    first = train_policy_evaluation("dueling", config, seed=0, record_at=[0, 300])
    again = train_policy_evaluation("dueling", config, seed=0, record_at=[0, 300])
    assert first == again
    assert first[1][1] < first[0][1]
