"""MinAtar through the package: channels-first grids, MinAtar's network in dueling and
single-stream form, the same input checks, and the training loop and CLI unchanged."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
import torch

from duel_tutorial.config import preset
from duel_tutorial.envs import MINATAR_GAMES, EnvStepper, make_env
from duel_tutorial.model import (
    MinAtarDuelingQNetwork,
    MinAtarQNetwork,
    make_network,
    scale_combined_gradient,
)
from duel_tutorial.train import chosen_preset, train

pytest.importorskip("minatar")

CHANNELS = {"Asterix": 4, "Breakout": 4, "Freeway": 7, "Seaquest": 10, "SpaceInvaders": 6}
ACTIONS = {"Asterix": 5, "Breakout": 3, "Freeway": 3, "Seaquest": 6, "SpaceInvaders": 4}
TINY = preset("minatar", total_steps=300, learning_starts=100, buffer_capacity=1_000,
              target_update_interval=50, eval_interval=0, checkpoint_interval=0, device="cpu")


@pytest.mark.parametrize("game", MINATAR_GAMES)
def test_every_game_gives_channels_first_boolean_grids(game):
    envs = make_env(f"MinAtar/{game}-v1", num_envs=2)
    obs, _ = envs.reset(seed=0)
    assert obs.shape == (2, CHANNELS[game], 10, 10) and obs.dtype == bool
    assert envs.single_observation_space.shape == (CHANNELS[game], 10, 10)
    assert envs.single_action_space.n == ACTIONS[game]
    raw = make_env(f"MinAtar/{game}-v1", num_envs=1).envs[0].unwrapped.game.state()
    assert raw.shape == (10, 10, CHANNELS[game])  # what MinAtar itself returns
    envs.close()


def test_the_channels_first_grid_is_minatars_grid_transposed():
    envs = make_env("MinAtar/Breakout-v1", num_envs=1)
    obs, _ = envs.reset(seed=3)
    state = envs.envs[0].unwrapped.game.state()
    assert np.array_equal(obs[0], np.moveaxis(state, -1, 0))


def test_minatar_networks_are_parameter_matched_to_a_tenth_of_a_percent():
    for game in MINATAR_GAMES:
        c, n = CHANNELS[game], ACTIONS[game]
        dueling, single = MinAtarDuelingQNetwork(n, c), MinAtarQNetwork(n, c)
        count = [sum(p.numel() for p in net.parameters()) for net in (dueling, single)]
        assert count[0] - count[1] == 129  # the value stream
        assert (count[0] - count[1]) / count[0] < 0.001
        grid = torch.zeros(5, c, 10, 10, dtype=torch.bool)
        assert dueling(grid).shape == single(grid).shape == (5, n)
        assert dueling(grid[0]).shape == (n,)


def test_minatar_inputs_are_checked_in_one_line():
    net = MinAtarDuelingQNetwork(3, 4)
    with pytest.raises(ValueError, match=re.escape(
            "got (2, 10, 10, 4) (channels-last: use obs.permute(0, 3, 1, 2))")):
        net(torch.zeros(2, 10, 10, 4))
    with pytest.raises(TypeError, match=r"must be a torch\.Tensor"):
        net(np.zeros((2, 4, 10, 10)))
    with pytest.raises(ValueError, match=re.escape("MinAtar grids (C, 10, 10); got shape "
                                                   "(10, 10, 4) (channels last?)")):
        make_network(TINY, (10, 10, 4), 3)


def test_make_network_picks_minatars_networks_with_the_papers_rescaling():
    dueling = make_network(TINY, (4, 10, 10), 3)
    single = make_network(dataclasses.replace(TINY, network="single"), (4, 10, 10), 3)
    assert isinstance(dueling, MinAtarDuelingQNetwork) and isinstance(single, MinAtarQNetwork)
    plain = MinAtarDuelingQNetwork(3, 4)
    plain.load_state_dict(dueling.state_dict())
    grids = torch.rand(8, 4, 10, 10) < 0.3
    for net in (dueling, plain):
        net(grids).square().mean().backward()
    ratio = dueling.lin.weight.grad.norm() / plain.lin.weight.grad.norm()
    assert abs(ratio.item() - 2**-0.5) < 1e-4
    with pytest.raises(ValueError, match="needs a DuelingQNetwork"):
        scale_combined_gradient(single, 0.5)


def test_minatar_trains_through_the_same_loop_and_cli():
    assert chosen_preset(["--env", "MinAtar/Seaquest-v1"]) == "minatar"
    for network in ("dueling", "single"):
        result = train(dataclasses.replace(TINY, network=network))
        assert result.steps == 300 and result.buffer.obs.dtype == bool
        assert all(torch.isfinite(p).all() for p in result.network.parameters())


def test_the_stepper_stores_minatars_true_last_grid():
    envs = EnvStepper(make_env("MinAtar/Breakout-v1", num_envs=1))
    envs.reset(seed=0)
    for _ in range(2_000):
        transition, obs, ended = envs.step(np.zeros(1, dtype=np.int64))
        if ended[0]:
            break
    assert ended[0] and transition.terminated[0]
    assert not np.array_equal(transition.next_obs[0], obs[0])  # the last grid, not the reset
