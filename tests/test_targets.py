"""TD targets (DQN, Double DQN), losses and target-network updates."""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from duel_tutorial.model import MLPDuelingQNetwork
from duel_tutorial.replay import Batch, NStepBatch
from duel_tutorial.targets import dqn_loss, hard_update, polyak_update, td_loss, td_target

REWARD = torch.tensor([1.0, 1.0])
NOT_TERMINATED = torch.tensor([False, False])
NEXT_Q_TARGET = torch.tensor([[1.0, 5.0, 3.0], [2.0, 0.0, 4.0]])
NEXT_Q_ONLINE = torch.tensor([[9.0, 0.0, 0.0], [0.0, 9.0, 0.0]])


def test_dqn_target_bootstraps_from_the_max_of_the_target_network():
    y = td_target(REWARD, NOT_TERMINATED, NEXT_Q_TARGET, gamma=0.5)
    # r + γ max_a' Q_target(s', a') = 1 + 0.5 * (5, 4)
    torch.testing.assert_close(y, torch.tensor([3.5, 3.0]))


def test_double_dqn_target_values_the_online_argmax_with_the_target_network():
    y = td_target(REWARD, NOT_TERMINATED, NEXT_Q_TARGET, gamma=0.5, next_q_online=NEXT_Q_ONLINE)
    # online argmax: actions (0, 1); target values there: (1, 0)
    torch.testing.assert_close(y, torch.tensor([1.5, 1.0]))


def test_terminated_does_not_bootstrap_but_truncated_does():
    # A Batch whose two transitions are identical except: the first ended by termination
    # (the pole fell), the second by truncation (time limit). Only the first stops.
    online = nn.Linear(1, 2)
    target = copy.deepcopy(online)
    with torch.no_grad():
        target.weight.fill_(0.0)
        target.bias.copy_(torch.tensor([2.0, 4.0]))  # Q_target(s', .) = (2, 4) everywhere
    batch = Batch(obs=torch.zeros(2, 1), action=torch.zeros(2, dtype=torch.long),
                  reward=torch.ones(2), next_obs=torch.zeros(2, 1),
                  terminated=torch.tensor([True, False]), truncated=torch.tensor([False, True]))
    y = td_target(batch.reward, batch.terminated, target(batch.next_obs), gamma=0.9)
    torch.testing.assert_close(y, torch.tensor([1.0, 1.0 + 0.9 * 4.0]))
    # dqn_loss uses the same target: Q_online(s, 0) = bias[0] for obs 0
    with torch.no_grad():
        online.weight.fill_(0.0)
        online.bias.fill_(0.0)
    expected = td_loss(torch.zeros(2), y, "mse")
    torch.testing.assert_close(dqn_loss(online, target, batch, 0.9, loss="mse"), expected)


def test_an_n_step_batch_bootstraps_with_its_own_discount():
    # two n-step transitions: three rewards summed (discount 0.9^3), and one cut short by
    # a truncation after two (0.9^2); the batch's discount replaces gamma in the target
    online = nn.Linear(1, 2)
    target = copy.deepcopy(online)
    with torch.no_grad():
        for net in (online, target):
            net.weight.fill_(0.0)
            net.bias.copy_(torch.tensor([2.0, 4.0]))
    discount = torch.tensor([0.9**3, 0.9**2])
    batch = NStepBatch(obs=torch.zeros(2, 1), action=torch.zeros(2, dtype=torch.long),
                       reward=torch.tensor([2.71, 1.9]), next_obs=torch.zeros(2, 1),
                       terminated=torch.tensor([False, False]),
                       truncated=torch.tensor([False, True]), discount=discount)
    y = torch.tensor([2.71, 1.9]) + discount * 4.0
    expected = td_loss(torch.full((2,), 2.0), y, "mse")
    torch.testing.assert_close(dqn_loss(online, target, batch, 0.9, loss="mse"), expected)
    torch.testing.assert_close(dqn_loss(online, target, batch, 0.9, loss="mse", double=True),
                               expected)


def test_huber_is_half_squared_error_near_zero_and_linear_far_away():
    q = torch.zeros(2)
    torch.testing.assert_close(td_loss(q, torch.tensor([0.5, 0.5])), torch.tensor(0.125))
    torch.testing.assert_close(td_loss(q, torch.tensor([3.0, 3.0])), torch.tensor(2.5))
    torch.testing.assert_close(td_loss(q, torch.tensor([3.0, 3.0]), "mse"), torch.tensor(9.0))


def test_unknown_loss_is_a_clear_error():
    with pytest.raises(ValueError, match=r"loss must be one of \('huber', 'mse'\); got 'l1'"):
        td_loss(torch.zeros(2), torch.zeros(2), "l1")  # type: ignore[arg-type]


def test_td_target_rejects_a_next_q_without_action_axis():
    with pytest.raises(ValueError, match=r"next_q_target must have shape \(B, n_actions\)"):
        td_target(REWARD, NOT_TERMINATED, torch.zeros(2), gamma=0.9)


def test_gradient_flows_through_the_online_network_only():
    torch.manual_seed(0)
    online = MLPDuelingQNetwork(4, 2)
    target = copy.deepcopy(online)
    batch = Batch(obs=torch.randn(8, 4), action=torch.randint(0, 2, (8,)), reward=torch.ones(8),
                  next_obs=torch.randn(8, 4), terminated=torch.zeros(8, dtype=torch.bool),
                  truncated=torch.zeros(8, dtype=torch.bool))
    dqn_loss(online, target, batch, 0.99, double=True).backward()
    assert all(p.grad is not None for p in online.parameters())
    assert all(p.grad is None for p in target.parameters())


def test_hard_update_copies_the_online_weights():
    online, target = nn.Linear(3, 2), nn.Linear(3, 2)
    hard_update(target, online)
    for t, o in zip(target.parameters(), online.parameters(), strict=True):
        assert torch.equal(t, o)


@settings(max_examples=25, deadline=None)
@given(tau=st.floats(0.001, 1.0))
def test_polyak_update_moves_the_target_a_fraction_tau_of_the_way(tau):
    torch.manual_seed(0)
    online, target = nn.Linear(3, 2), nn.Linear(3, 2)
    before = [p.clone() for p in target.parameters()]
    polyak_update(target, online, tau)
    for new, old, o in zip(target.parameters(), before, online.parameters(), strict=True):
        # θ⁻ ← τ θ + (1 - τ) θ⁻
        torch.testing.assert_close(new, tau * o + (1 - tau) * old)


@pytest.mark.parametrize("tau", [0.0, -0.1, 1.5])
def test_polyak_update_rejects_tau_outside_0_1(tau):
    with pytest.raises(ValueError, match=r"tau must be in \(0, 1\]"):
        polyak_update(nn.Linear(1, 1), nn.Linear(1, 1), tau)
