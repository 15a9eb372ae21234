"""The replay buffer: ring storage, dtypes, seeded sampling, clear errors."""

from __future__ import annotations

import re
from collections import deque

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from duel_tutorial.envs import EnvStepper, make_atari_vector_env
from duel_tutorial.replay import Batch, FrameReplayBuffer, NStepBatch, ReplayBuffer


def _fill(buffer: ReplayBuffer, n: int, start: int = 0) -> None:
    """Add ``n`` transitions numbered ``start, start + 1, ...`` one at a time."""
    for i in range(start, start + n):
        obs = np.full(buffer.obs_shape, i, dtype=buffer.obs_dtype)
        buffer.add(obs, i % 3, float(i), obs + 1, i % 5 == 0, i % 7 == 0)


def test_sample_returns_a_batch_of_tensors_with_the_stored_dtypes():
    buffer = ReplayBuffer(100, (4,), np.float32, seed=0)
    _fill(buffer, 10)
    batch = buffer.sample(8)
    assert isinstance(batch, Batch)
    assert batch.obs.shape == batch.next_obs.shape == (8, 4)
    assert batch.obs.dtype == torch.float32
    assert batch.action.dtype == torch.int64 and batch.action.shape == (8,)
    assert batch.reward.dtype == torch.float32 and batch.reward.shape == (8,)
    assert batch.terminated.dtype == batch.truncated.dtype == torch.bool


def test_uint8_frames_stay_uint8():
    buffer = ReplayBuffer(10, (4, 84, 84), np.uint8, seed=0)
    _fill(buffer, 3)
    assert buffer.obs.dtype == np.uint8
    assert buffer.sample(2).obs.dtype == torch.uint8


def test_sample_keeps_fields_of_one_transition_together():
    buffer = ReplayBuffer(50, (2,), np.float32, seed=1)
    _fill(buffer, 30)
    batch = buffer.sample(30)
    i = batch.reward.long()  # transition number
    torch.testing.assert_close(batch.obs[:, 0], i.float())
    torch.testing.assert_close(batch.next_obs[:, 0], i.float() + 1)
    assert torch.equal(batch.action, i % 3)
    assert torch.equal(batch.terminated, i % 5 == 0)
    assert torch.equal(batch.truncated, i % 7 == 0)


def test_terminated_and_truncated_are_stored_separately():
    buffer = ReplayBuffer(4, (1,), np.float32, seed=0)
    buffer.add(np.zeros(1), 0, 1.0, np.ones(1), terminated=True, truncated=False)
    buffer.add(np.zeros(1), 0, 1.0, np.ones(1), terminated=False, truncated=True)
    assert buffer.terminated[:2].tolist() == [True, False]
    assert buffer.truncated[:2].tolist() == [False, True]


def test_ring_buffer_overwrites_the_oldest_transition():
    buffer = ReplayBuffer(5, (1,), np.float32, seed=0)
    _fill(buffer, 8)
    assert len(buffer) == 5
    assert sorted(buffer.reward.tolist()) == [3.0, 4.0, 5.0, 6.0, 7.0]


@settings(max_examples=40, deadline=None)
@given(capacity=st.integers(1, 12), sizes=st.lists(st.integers(1, 5), min_size=1, max_size=12))
def test_batched_adds_keep_exactly_the_last_capacity_transitions(capacity, sizes):
    buffer = ReplayBuffer(capacity, (1,), np.float32, seed=0)
    reference: deque[float] = deque(maxlen=capacity)
    count = 0
    for n in sizes:
        n = min(n, capacity)
        values = np.arange(count, count + n, dtype=np.float32)
        buffer.add(values[:, None], np.zeros(n, np.int64), values, values[:, None],
                   np.zeros(n, bool), np.zeros(n, bool))
        reference.extend(values.tolist())
        count += n
    assert len(buffer) == len(reference)
    assert buffer.state_dict()["reward"].tolist() == list(reference)  # oldest first


def test_sampling_more_than_stored_is_a_clear_error():
    buffer = ReplayBuffer(100, (4,), np.float32, seed=0)
    _fill(buffer, 10)
    with pytest.raises(ValueError, match="cannot sample 64 transitions: the buffer holds 10"):
        buffer.sample(64)


def test_wrong_observation_shape_is_a_clear_error():
    buffer = ReplayBuffer(10, (4,), np.float32, seed=0)
    with pytest.raises(ValueError, match=r"obs and next_obs must have shape \(4,\)"):
        buffer.add(np.zeros(3), 0, 0.0, np.zeros(3), False, False)


@pytest.mark.parametrize("capacity", [0, -5, 2.5])
def test_capacity_must_be_a_positive_int(capacity):
    with pytest.raises(ValueError, match="capacity must be a positive int"):
        ReplayBuffer(capacity, (4,))


def test_same_seed_samples_the_same_minibatches():
    a, b = (ReplayBuffer(100, (4,), np.float32, seed=7) for _ in range(2))
    _fill(a, 50)
    _fill(b, 50)
    for _ in range(3):
        assert torch.equal(a.sample(16).reward, b.sample(16).reward)


def test_a_generator_of_its_own_samples_without_moving_the_buffers():
    buffer = ReplayBuffer(100, (4,), np.float32, seed=7)
    _fill(buffer, 50)
    state = buffer.rng.bit_generator.state
    looks = [buffer.sample(16, rng=np.random.default_rng(3)).reward for _ in range(2)]
    assert torch.equal(*looks) and buffer.rng.bit_generator.state == state
    fresh = ReplayBuffer(100, (4,), np.float32, seed=7)
    _fill(fresh, 50)
    assert torch.equal(buffer.sample(16).reward, fresh.sample(16).reward)


def test_nbytes_is_capacity_times_transition_size():
    buffer = ReplayBuffer(1000, (4, 84, 84), np.uint8)
    # 2 observations + int64 action + float32 reward + 2 bools
    assert buffer.nbytes == 1000 * (2 * 4 * 84 * 84 + 8 + 4 + 1 + 1)


def test_state_dict_round_trip_restores_contents_and_order():
    buffer = ReplayBuffer(6, (2,), np.float32, seed=0)
    _fill(buffer, 9)  # wrapped around
    restored = ReplayBuffer(6, (2,), np.float32, seed=0)
    restored.load_state_dict(buffer.state_dict())
    assert len(restored) == 6
    for name, values in buffer.state_dict().items():
        np.testing.assert_array_equal(restored.state_dict()[name], values)
    _fill(buffer, 1, start=100)
    _fill(restored, 1, start=100)  # the next add overwrites the same (oldest) transition
    np.testing.assert_array_equal(restored.state_dict()["reward"], buffer.state_dict()["reward"])


def test_a_phase_of_minibatches_is_sampled_at_once():
    buffer = ReplayBuffer(100, (4,), np.float32, seed=0)
    _fill(buffer, 10)
    batch = buffer.sample(8, n_batches=5)  # 40 rows > 10 stored: fine, 8 <= 10 per minibatch
    assert batch.obs.shape == (40, 4)


# --- frame replay (Atari) ---------------------------------------------------------------


def _breakout_rollout(buffer: FrameReplayBuffer, steps: int, seed: int = 0) -> dict:
    """Random play in a 2-env training Breakout (lost lives and game overs), stored in
    ``buffer`` the way ``train`` stores it; returns the true transitions by (env, slot)."""
    envs = EnvStepper(make_atari_vector_env("ALE/Breakout-v5", buffer.num_envs))
    rng = np.random.default_rng(seed)
    buffer.start(envs.reset(seed=seed))
    truth = {}
    for _ in range(steps):
        transition, _, _ = envs.step(rng.integers(0, 4, buffer.num_envs))
        for i in np.flatnonzero(transition.valid):  # the step into a new game is no transition
            truth[i, buffer.written - 1] = tuple(field[i] for field in transition[:6])
        buffer.add(*transition)
    envs.close()
    return truth


def test_frame_replay_rebuilds_the_exact_stacks_across_lives_games_and_wraparound():
    buffer = FrameReplayBuffer(2 * 150, num_envs=2, seed=0)
    truth = _breakout_rollout(buffer, 700)
    assert buffer.written > 2 * buffer.slots  # the rings wrapped around twice
    games = sum(bool(t[4]) for t in truth.values())
    assert games >= 10  # plenty of lost lives (terminated) in random Breakout
    buffer.rng = np.random.default_rng(7)
    stream, slot = buffer.sample_indices(50, n_batches=8)
    buffer.rng = np.random.default_rng(7)  # sample() draws the same indices
    batch = buffer.sample(50, n_batches=8)
    for j in range(400):
        obs, action, reward, next_obs, terminated, truncated = truth[stream[j], slot[j]]
        assert np.array_equal(batch.obs[j].numpy(), obs)
        assert np.array_equal(batch.next_obs[j].numpy(), next_obs)
        assert (batch.action[j], batch.reward[j]) == (action, reward)
        assert (batch.terminated[j], batch.truncated[j]) == (terminated, truncated)
    assert batch.obs.dtype == torch.uint8 and batch.obs.shape == (400, 4, 84, 84)


def test_a_sampled_transition_never_spans_two_games():
    buffer = FrameReplayBuffer(2 * 400, num_envs=2, seed=1)
    truth = _breakout_rollout(buffer, 380, seed=3)
    stream, slot = buffer.sample_indices(100, n_batches=20)
    assert all((s, t) in truth for s, t in zip(stream, slot, strict=True))
    # a reset observation is zero-padded: such a stack is never a next_obs
    batch = buffer.sample(100, n_batches=20)
    padded = (batch.next_obs[:, :3] == 0).flatten(1).all(1)
    assert not padded.any()


def test_frame_replay_stores_each_frame_once():
    frames = FrameReplayBuffer(1_000, num_envs=4)
    flat = ReplayBuffer(1_000, (4, 84, 84), np.uint8)
    assert frames.nbytes == 1_000 * (84 * 84 + 8 + 4 + 1 + 1 + 2)
    assert flat.nbytes > 7.9 * frames.nbytes
    one_million = 1_000_000 * (84 * 84 + 16)
    assert round(one_million / 1e9, 2) == 7.07  # the figure the docstring quotes


def test_frame_replay_state_dict_round_trip_samples_the_same():
    buffer = FrameReplayBuffer(2 * 100, num_envs=2, seed=0)
    _breakout_rollout(buffer, 150)
    copy = FrameReplayBuffer(2 * 100, num_envs=2, seed=5)
    copy.load_state_dict(buffer.state_dict())
    copy.rng.bit_generator.state = buffer.rng.bit_generator.state
    for a, b in zip(buffer.sample(64), copy.sample(64), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="frames of shape"):
        FrameReplayBuffer(2 * 50, num_envs=2).load_state_dict(buffer.state_dict())


def test_frame_replay_samples_with_a_generator_of_its_own_without_moving_its_own():
    buffer = FrameReplayBuffer(2 * 100, num_envs=2, seed=0)
    _breakout_rollout(buffer, 150)
    state = buffer.rng.bit_generator.state
    looks = [buffer.sample(32, rng=np.random.default_rng(3), n_step=3, gamma=0.99)
             for _ in range(2)]
    for a, b in zip(*looks, strict=True):
        assert torch.equal(a, b)
    assert buffer.rng.bit_generator.state == state


def test_frame_replay_errors_are_clear():
    buffer = FrameReplayBuffer(100, num_envs=2)
    with pytest.raises(ValueError, match="call start"):
        buffer.add(np.zeros((2, 4, 84, 84), np.uint8), np.zeros(2), np.zeros(2),
                   np.zeros((2, 4, 84, 84), np.uint8), np.zeros(2), np.zeros(2))
    with pytest.raises(ValueError, match=re.escape(
            "observations must be uint8 of shape (2, 4, 84, 84); got float32 (2, 84, 84, 4)")):
        buffer.start(np.zeros((2, 84, 84, 4), np.float32))
    buffer.start(np.zeros((2, 4, 84, 84), np.uint8))
    with pytest.raises(ValueError, match="cannot sample 1 transitions: the buffer holds 0"):
        buffer.sample(1)
    with pytest.raises(ValueError, match="at least 6 slots per environment"):
        FrameReplayBuffer(10, num_envs=2)


def test_both_buffers_take_a_transition_the_same_way():
    """One interface: ``buffer.start(obs)`` after a reset, ``buffer.add(*transition)``
    after a step, for either buffer; rows that are not transitions (``valid`` false: the
    step into a new game) are skipped by both."""
    envs = EnvStepper(make_atari_vector_env("ALE/Breakout-v5", 2))
    frames = FrameReplayBuffer(2 * 500, num_envs=2, seed=0)
    flat = ReplayBuffer(1_000, (4, 84, 84), np.uint8, seed=0)
    obs = envs.reset(seed=4)
    rng, skipped = np.random.default_rng(0), 0
    for buffer in (frames, flat):
        buffer.start(obs)
    for _ in range(450):
        transition, _, _ = envs.step(rng.integers(0, 4, 2))
        for buffer in (frames, flat):
            buffer.add(*transition)
        skipped += int((~transition.valid).sum())
    envs.close()
    assert skipped > 0  # random Breakout ends games within 450 steps
    assert len(flat) == len(frames) == 2 * 450 - skipped
    stored = {(o.tobytes(), n.tobytes())
              for o, n in zip(flat.obs[:len(flat)], flat.next_obs[:len(flat)], strict=True)}
    batch = frames.sample(64)
    assert all((o.numpy().tobytes(), n.numpy().tobytes()) in stored
               for o, n in zip(batch.obs, batch.next_obs, strict=True))


def test_frame_replay_length_is_a_running_count_that_matches_a_scan():
    """len() is O(1): a counter updated by each write. It must equal a scan of the window
    after every start and add, across wraparounds, new games and a state restore."""
    rng = np.random.default_rng(0)
    buffer = FrameReplayBuffer(3 * 12, num_envs=3, frame_shape=(2, 2), stack=4, seed=0)
    frames = np.zeros((3, 4, 2, 2), np.uint8)
    buffer.start(frames)
    for step in range(200):
        if step % 37 == 36:  # a reset of every env now and then
            buffer.start(frames)
        else:
            valid = rng.random(3) > 0.2
            buffer.add(frames, rng.integers(0, 4, 3), np.zeros(3), frames, np.zeros(3, bool),
                       np.zeros(3, bool), valid)
        assert len(buffer) == buffer._count_window(), step
    copy = FrameReplayBuffer(3 * 12, num_envs=3, frame_shape=(2, 2), stack=4)
    copy.load_state_dict(buffer.state_dict())
    assert len(copy) == len(buffer) > 0


def test_n_step_sampling_sums_rewards_until_the_game_or_a_life_ends():
    """Every sampled n-step transition against the true rollout: the discounted sum of
    the rewards of the same stream's next m <= n steps, stopping after a lost life,
    a game over or a truncation and before a step not yet taken; next_obs m steps on."""
    buffer = FrameReplayBuffer(2 * 150, num_envs=2, seed=0)
    truth = _breakout_rollout(buffer, 400)
    gamma, n = 0.9, 3
    # distinct rewards, so that a wrong step or weight shows in the sum
    buffer.reward.copy_(torch.rand(buffer.reward.shape, generator=torch.Generator().manual_seed(0)))
    buffer.rng = np.random.default_rng(3)
    stream, slot = buffer.sample_indices(64, n_batches=4)
    buffer.rng = np.random.default_rng(3)
    batch = buffer.sample(64, n_batches=4, n_step=n, gamma=gamma)
    assert isinstance(batch, NStepBatch) and batch.discount.dtype == torch.float32
    assert batch.reward.shape == (256,)
    lengths = []
    for row, (i, t) in enumerate(zip(stream, slot, strict=True)):
        m, total = 0, 0.0
        while m < n and (i, t + m) in truth:
            total += gamma**m * float(buffer.reward[i, (t + m) % buffer.slots])
            m += 1
            if truth[i, t + m - 1][4] or truth[i, t + m - 1][5]:  # terminated or truncated
                break
        lengths.append(m)
        last = truth[i, t + m - 1]
        np.testing.assert_array_equal(batch.obs[row].numpy(), truth[i, t][0])
        np.testing.assert_array_equal(batch.next_obs[row].numpy(), last[3])
        assert batch.action[row] == truth[i, t][1]
        assert batch.reward[row].item() == pytest.approx(total, rel=1e-6)
        assert batch.discount[row].item() == pytest.approx(gamma**m, rel=1e-6)
        assert (batch.terminated[row].item(), batch.truncated[row].item()) == (
            bool(last[4]), bool(last[5]))
    assert lengths.count(n) > 150 and len(set(lengths)) == n  # most full, some cut short


def test_n_step_one_is_the_one_step_batch_and_bad_n_is_refused():
    buffer = FrameReplayBuffer(2 * 100, num_envs=2, seed=0)
    _breakout_rollout(buffer, 120)
    state = buffer.rng.bit_generator.state
    one = buffer.sample(32)
    buffer.rng.bit_generator.state = state
    assert type(one) is Batch
    for a, b in zip(one, buffer.sample(32, n_step=1, gamma=0.5), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="n-step sampling needs gamma in"):
        buffer.sample(32, n_step=3)
    with pytest.raises(ValueError, match="n_step must be a positive int; got 0"):
        buffer.sample(32, n_step=0)
    with pytest.raises(ValueError, match="need FrameReplayBuffer"):
        ReplayBuffer(10, (4,)).sample(1, n_step=3)
