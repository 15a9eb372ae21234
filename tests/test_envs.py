"""Tests for duel_tutorial.envs: the DQN Atari preprocessing, one env and the vector env.

The central test drives both pipelines with the same seed and the same actions and
compares them step by step: with ``noop_max=0`` (no random no-op starts) they are
bitwise equal, including across lost lives, game overs and resets. The one exception,
pinned by its own test, is the newest frame of the step that reaches the frame cap.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from duel_tutorial.envs import (
    EVAL_EPSILON,
    MAX_EPISODE_FRAMES,
    EnvStepper,
    EpisodicLife,
    FireReset,
    action_meanings,
    atari_game,
    atari_settings,
    check_env_id,
    make_atari_env,
    make_atari_vector_env,
    make_env,
)
from duel_tutorial.model import DuelingQNetwork

PONG_ACTIONS = ["NOOP", "FIRE", "RIGHT", "LEFT", "RIGHTFIRE", "LEFTFIRE"]
BREAKOUT_ACTIONS = ["NOOP", "FIRE", "RIGHT", "LEFT"]


def wrapper_types(env) -> list[type]:
    """The classes of every wrapper around the raw ALE env, outermost first."""
    types = []
    while hasattr(env, "env"):
        types.append(type(env))
        env = env.env
    return types


def run_both(env_id: str, n_steps: int, *, seed: int = 0, **settings):
    """Step the single env and a 1-env vector env with the same random actions.

    Returns one record per step: ``(obs_single, obs_vector, (reward, terminated,
    truncated, lives) single, same for vector)``. When the single env's episode ends it is
    reset; the vector env then either carries on (a lost life: its game goes on too) or
    spends its next step on its NEXT_STEP autoreset, whose action it ignores.
    """
    single = make_atari_env(env_id, noop_max=0, **settings)
    vector = make_atari_vector_env(env_id, 1, noop_max=0, **settings)
    obs_s, _ = single.reset(seed=seed)
    obs_v, _ = vector.reset(seed=seed)
    records = [(obs_s, obs_v[0], None, None)]
    rng = np.random.default_rng(seed)
    for _ in range(n_steps):
        action = int(rng.integers(single.action_space.n))
        obs_s, r_s, term_s, trunc_s, info_s = single.step(action)
        obs_v, r_v, term_v, trunc_v, info_v = vector.step(np.array([action]))
        records.append((
            obs_s, obs_v[0],
            (float(r_s), bool(term_s), bool(trunc_s), int(info_s["lives"])),
            (float(r_v[0]), bool(term_v[0]), bool(trunc_v[0]), int(info_v["lives"][0])),
        ))
        if term_s or trunc_s:
            game_over = trunc_s or not isinstance(single, EpisodicLife) or info_s["lives"] == 0
            obs_s, _ = single.reset()
            if game_over:
                obs_v, r_v, term_v, trunc_v, _ = vector.step(np.array([0]))
                assert (r_v[0], term_v[0], trunc_v[0]) == (0, False, False)
            records.append((obs_s, obs_v[0], None, None))
    single.close()
    vector.close()
    return records


# ---------------------------------------------------------------- shapes and spaces
# Loading a ROM takes a noticeable fraction of a second: these tests share two envs.


@pytest.fixture(scope="module")
def pong():
    env = make_atari_env("ALE/Pong-v5")
    yield env
    env.close()


@pytest.fixture(scope="module")
def pong_vector():
    env = make_atari_vector_env("ALE/Pong-v5", 2)
    yield env
    env.close()


def test_single_env_gives_4x84x84_uint8_channels_first(pong):
    obs, _ = pong.reset(seed=0)
    assert pong.observation_space.shape == (4, 84, 84)
    assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
    obs, _, terminated, truncated, info = pong.step(0)
    assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
    assert isinstance(terminated, bool) and isinstance(truncated, bool)
    assert "lives" in info


def test_vector_env_batches_the_same_observations(pong_vector):
    obs, info = pong_vector.reset(seed=0)
    assert pong_vector.single_observation_space.shape == (4, 84, 84)
    assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8
    obs, reward, terminated, truncated, info = pong_vector.step(np.zeros(2, dtype=np.int64))
    assert obs.shape == (2, 4, 84, 84)
    assert reward.shape == terminated.shape == truncated.shape == info["lives"].shape == (2,)
    assert terminated.dtype == truncated.dtype == np.bool_


def test_reset_stack_is_zero_padded_and_oldest_first(pong, pong_vector):
    obs, _ = pong.reset(seed=0)
    batch, _ = pong_vector.reset(seed=0)
    for first in (obs, batch[0]):
        assert (first[:3] == 0).all() and first[3].max() > 0  # [0, 0, 0, first frame]
    obs_next = pong.step(0)[0]
    batch_next = pong_vector.step(np.zeros(2, dtype=np.int64))[0]
    np.testing.assert_array_equal(obs_next[:3], obs[1:])  # shifted by one, newest last
    np.testing.assert_array_equal(batch_next[0, :3], batch[0, 1:])


def test_action_sets_agree_and_are_minimal(pong, pong_vector):
    assert action_meanings(pong) == action_meanings(pong_vector) == PONG_ACTIONS
    assert pong.action_space.n == pong_vector.single_action_space.n == 6
    breakout = make_atari_vector_env("ALE/Breakout-v5", 1)
    assert action_meanings(breakout) == BREAKOUT_ACTIONS  # DuelDQN's 4 actions


def test_pong_has_six_actions_so_the_agent_uses_the_general_dueling_class(pong, pong_vector):
    obs, _ = pong.reset(seed=0)
    net = DuelingQNetwork(n_actions=int(pong.action_space.n))
    assert net(torch.as_tensor(obs)).shape == (6,)
    batch, _ = pong_vector.reset(seed=0)
    assert net(torch.as_tensor(batch)).shape == (2, 6)


# ---------------------------------------------------------------- the two pipelines agree


def test_pipelines_agree_bitwise_on_pong():
    records = run_both("ALE/Pong-v5", 150)
    for obs_s, obs_v, step_s, step_v in records:
        np.testing.assert_array_equal(obs_s, obs_v)
        assert step_s == step_v


def test_pipelines_agree_across_lost_lives_and_game_over():
    records = run_both("ALE/Breakout-v5", 230)  # these actions lose all 5 lives by step 217
    steps = [(s, v) for _, _, s, v in records if s is not None]
    lives = [s[3] for s, _ in steps]
    assert min(lives) == 0 and lives[-1] == 5, "the run should cover a game over and a new game"
    assert sum(s[1] for s, _ in steps) == 5  # 4 lost lives + the game over, all terminated
    for obs_s, obs_v, step_s, step_v in records:
        np.testing.assert_array_equal(obs_s, obs_v)
        assert step_s == step_v


def test_pipelines_agree_at_the_frame_cap_except_its_newest_frame():
    # 400 frames = 100 steps. On the step that reaches the cap, ale-py stops before
    # grabbing the 4th frame, so the vector env's newest frame is max(frame 3, previous
    # pooled frame) instead of max(frame 3, frame 4); every other frame is equal.
    records = run_both("ALE/Breakout-v5", 120, train=False, max_episode_frames=400)
    capped = [i for i, (_, _, s, _) in enumerate(records) if s is not None and s[2]]
    assert capped == [100]  # records[0] is the reset
    for i, (obs_s, obs_v, step_s, step_v) in enumerate(records):
        assert step_s == step_v
        if i in capped:
            np.testing.assert_array_equal(obs_s[:3], obs_v[:3])
        else:
            np.testing.assert_array_equal(obs_s, obs_v)


# ---------------------------------------------------------------- each preprocessing step


def test_fire_reset_launches_the_ball_in_breakout():
    # Only NOOPs: the ball is in play (and lost) only if FIRE was pressed at reset.
    for fire_reset, lost in ((True, True), (False, False)):
        env = make_atari_env("ALE/Breakout-v5", train=False, noop_max=0, fire_reset=fire_reset)
        assert (FireReset in wrapper_types(env)) == fire_reset
        env.reset(seed=0)
        lives = [env.step(0)[4]["lives"] for _ in range(30)]
        assert (min(lives) < 5) == lost
        vector = make_atari_vector_env("ALE/Breakout-v5", 1, train=False, noop_max=0,
                                       fire_reset=fire_reset)
        vector.reset(seed=0)
        lives = [vector.step(np.zeros(1, dtype=np.int64))[4]["lives"][0] for _ in range(30)]
        assert (min(lives) < 5) == lost


def test_fire_reset_only_for_games_with_fire():
    assert FireReset in wrapper_types(make_atari_env("ALE/Pong-v5"))
    freeway = make_atari_env("ALE/Freeway-v5")  # actions: NOOP, UP, DOWN
    assert "FIRE" not in action_meanings(freeway)
    assert FireReset not in wrapper_types(freeway)


def test_rewards_are_clipped_only_when_training():
    # Boxing scores 1 or 2 points a punch; the same actions with and without clipping
    raw_rewards = {}
    for clip in (True, False):
        env = make_atari_env("ALE/Boxing-v5", noop_max=0, terminal_on_life_loss=False,
                             clip_rewards=clip)
        env.reset(seed=0)
        rng = np.random.default_rng(0)
        raw_rewards[clip] = np.array([env.step(int(rng.integers(18)))[1] for _ in range(40)])
    assert raw_rewards[False].max() > 1
    np.testing.assert_array_equal(raw_rewards[True], np.clip(raw_rewards[False], -1, 1))
    assert atari_settings(train=True).clip_rewards and not atari_settings(train=False).clip_rewards


def test_episodic_life_only_when_training():
    for train in (True, False):
        env = make_atari_env("ALE/Breakout-v5", train=train, noop_max=0)
        assert (EpisodicLife in wrapper_types(env)) == train
        env.reset(seed=0)
        for _ in range(30):  # NOOPs: the ball launched at reset is lost once
            obs, _, terminated, truncated, info = env.step(0)
            if info["lives"] < 5:
                break
        assert info["lives"] == 4 and terminated == train and not truncated
        if train:  # soft reset: same observation, same game
            soft_obs, _ = env.reset()
            np.testing.assert_array_equal(soft_obs, obs)
            assert env.step(0)[4]["lives"] == 4


def test_vector_env_marks_lost_lives_only_when_training():
    for train in (True, False):
        env = make_atari_vector_env("ALE/Breakout-v5", 1, train=train, noop_max=0)
        env.reset(seed=0)
        for _ in range(30):
            _, _, terminated, _, info = env.step(np.zeros(1, dtype=np.int64))
            if info["lives"][0] < 5:
                break
        assert info["lives"][0] == 4 and terminated[0] == train
        # the game goes on: the next step continues the same game
        assert env.step(np.zeros(1, dtype=np.int64))[4]["lives"][0] == 4


def test_noop_starts_vary_the_start_state():
    # episode_frame_number after reset = frames spent resetting: 1 FIRE + the no-ops
    single = make_atari_env("ALE/Breakout-v5")
    single.reset(seed=0)  # seeds the no-op draws of the resets that follow
    starts = [single.reset()[1]["episode_frame_number"] for _ in range(6)]
    assert all(2 <= f <= 31 for f in starts) and len(set(starts)) > 1  # 1..30 no-ops
    vector = make_atari_vector_env("ALE/Breakout-v5", 4)
    starts = vector.reset(seed=0)[1]["episode_frame_number"]
    assert all(1 <= f <= 30 for f in starts) and len(set(starts)) > 1
    no_noops = make_atari_env("ALE/Breakout-v5", noop_max=0)
    assert no_noops.reset(seed=0)[1]["episode_frame_number"] == 1  # the FIRE frame only


def test_sticky_actions_are_off_by_default_and_a_parameter():
    assert make_atari_env("ALE/Pong-v5").unwrapped.ale.getFloat("repeat_action_probability") == 0
    sticky = make_atari_env("ALE/Pong-v5", repeat_action_probability=0.25)
    assert sticky.unwrapped.ale.getFloat("repeat_action_probability") == pytest.approx(0.25)


# ---------------------------------------------------------------- settings and errors


def test_presets_differ_only_in_life_loss_and_clipping():
    train, evaluate = atari_settings(train=True), atari_settings(train=False)
    differ = {k for k in vars(train) if getattr(train, k) != getattr(evaluate, k)}
    assert differ == {"terminal_on_life_loss", "clip_rewards"}
    assert train.noop_max == 30 and train.frame_skip == 4 and train.frame_stack == 4
    assert train.repeat_action_probability == 0.0
    assert MAX_EPISODE_FRAMES // train.frame_skip == 27_000
    assert EVAL_EPSILON == 0.001


def test_env_ids_map_to_games():
    assert atari_game("ALE/Pong-v5") == "pong"
    assert atari_game("ALE/SpaceInvaders-v5") == "space_invaders"


@pytest.mark.parametrize("bad_id", ["Pong-v5", "ALE/Pongg-v5", "PongNoFrameskip-v4", "pong"])
def test_unknown_env_id_is_a_clear_error(bad_id):
    for make in (make_atari_env, lambda env_id: make_atari_vector_env(env_id, 1)):
        with pytest.raises(ValueError, match=r"ALE v5 id like 'ALE/Pong-v5'.*got"):
            make(bad_id)


@pytest.mark.parametrize("env_id", ["CartPole-v1", "ALE/Pong-v5", "MinAtar/Breakout-v1",
                                    "LunarLander-v3", "phys2d/CartPole-v1"])
def test_plain_env_ids_pass_the_check(env_id):
    assert check_env_id(env_id) == env_id


def test_every_registered_env_id_passes_the_check():
    for env_id in gym.registry:
        check_env_id(env_id)


@pytest.mark.parametrize("bad_id", ["evilmod:CartPole-v1", "os:system-v0", "ALE/Pong-v5\n",
                                    "../CartPole-v1", "a/b/CartPole-v1", "CartPole",
                                    "CartPole-v\u0661", "", 1])
def test_an_env_id_that_gymnasium_could_import_from_is_a_one_line_error(bad_id):
    with pytest.raises(ValueError, match=r"env_id must be a gymnasium id .*; got ") as info:
        check_env_id(bad_id)
    assert "\n" not in str(info.value)


def test_did_you_mean_suggests_the_nearest_id():
    with pytest.raises(ValueError, match=r"did you mean 'ALE/Pong-v5'"):
        atari_game("ALE/Pongg-v5")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"noop_max": -1}, "noop_max must be an int >= 0"),
        ({"frame_skip": 0}, "frame_skip must be an int >= 1"),
        ({"max_episode_frames": 402}, "multiple of frame_skip=4"),
        ({"repeat_action_probability": 1.5}, r"repeat_action_probability must be in \[0, 1\]"),
    ],
)
def test_bad_settings_are_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        atari_settings(**kwargs)


def test_bad_num_envs_is_a_clear_error():
    with pytest.raises(ValueError, match="num_envs must be an int >= 1; got 0"):
        make_atari_vector_env("ALE/Pong-v5", 0)


# --- EnvStepper: one form of transition whatever the autoreset mode ---------------------


def test_stepper_same_step_stores_the_true_last_observation():
    """gymnasium's SAME_STEP vector env: the transition at an episode's end holds the true
    last observation (info["final_obs"]), and the loop acts next on the new episode's first."""
    envs = EnvStepper(make_env("CartPole-v1", 2))
    single = [gym.make("CartPole-v1") for _ in range(2)]
    obs = envs.reset(seed=3)
    starts = [env.reset(seed=3 + i)[0] for i, env in enumerate(single)]
    assert np.array_equal(obs, np.stack(starts))
    ended_any = False
    for _ in range(60):
        actions = np.zeros(2, dtype=np.int64)  # always push left: the pole falls quickly
        transition, obs, ended = envs.step(actions)
        assert transition.valid.all()
        for i, env in enumerate(single):
            next_obs, _, terminated, truncated, _ = env.step(0)
            assert np.array_equal(transition.next_obs[i], next_obs)  # the real s'
            assert (transition.terminated[i], transition.truncated[i]) == (terminated, truncated)
            assert ended[i] == (terminated or truncated)
            if ended[i]:
                ended_any = True
                assert not np.array_equal(obs[i], next_obs)  # acting from a new episode
                env.reset()
    envs.close()
    assert ended_any


def test_stepper_next_step_marks_the_reset_step_and_ends_episodes_at_game_over():
    """ale-py's NEXT_STEP vector env in training: a lost life is terminated but not the
    end of an episode; a game over is, and the step after it is not a transition."""
    envs = EnvStepper(make_atari_vector_env("ALE/Breakout-v5", 2))
    envs.reset(seed=0)
    rng = np.random.default_rng(0)
    lives_lost = games = 0
    previous_ended = np.zeros(2, dtype=bool)
    for _ in range(600):
        transition, _, ended = envs.step(rng.integers(0, 4, 2))
        assert np.array_equal(transition.valid, ~previous_ended)
        lives_lost += int((transition.terminated & ~ended).sum())
        games += int(ended.sum())
        previous_ended = ended
    envs.close()
    assert lives_lost >= 4 * games > 0  # Breakout has 5 lives: 4 lost lives per game over
