"""Tests for duel_tutorial/saliency.py: saliency maps of the two streams (paper Figure 2).

The maps against hand-computed gradients (a network whose streams are linear in the input)
and against ``torch.autograd.functional.jacobian``; the network is left as it was found;
the overlay's channels; saliency shares; and the Pong finders against the emulator's own
screen, on real frames of ``make_atari_env("ALE/Pong-v5")``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import ale_py
import numpy as np
import pytest
import torch
from gymnasium.wrappers import AtariPreprocessing
from torch import nn

from duel_tutorial import DuelDQN, MLPDuelingQNetwork, QNetwork
from duel_tutorial.envs import make_atari_env
from duel_tutorial.model import frames_to_float
from duel_tutorial.saliency import (
    RAW_SHAPE,
    Box,
    find_ball,
    find_paddle,
    reduce_frames,
    saliency_maps,
    saliency_overlay,
    saliency_share,
)

ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)


class LinearStreams(nn.Module):
    """V(s) = w . s + b and A(s, a) = U_a . s: the saliency maps are |w| and |U_a*|."""

    def __init__(self, n_actions: int = 3, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.w = nn.Parameter(torch.randn(4, 84, 84, generator=generator))
        self.b = nn.Parameter(torch.tensor(0.5))
        self.u = nn.Parameter(torch.randn(n_actions, 4, 84, 84, generator=generator))

    def streams(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = frames_to_float(obs, 4, self.w)  # uint8 / 255, like the real networks
        value = (x * self.w).sum(dim=(1, 2, 3))[:, None] + self.b  # (B, 1)
        advantage = (x[:, None] * self.u).sum(dim=(2, 3, 4))  # (B, n_actions)
        return value, advantage


def frames(batch: int = 3, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, 4, 84, 84), dtype=torch.uint8, generator=generator)


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Small networks on a shared CPU: one thread is faster, and reproducible."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def dqn() -> DuelDQN:
    torch.manual_seed(0)
    return DuelDQN()


# --- The maps ------------------------------------------------------------------------------


@pytest.mark.parametrize("as_float", [False, True])
def test_linear_value_saliency_is_the_absolute_weights(as_float: bool) -> None:
    net, obs = LinearStreams(), frames()
    maps = saliency_maps(net, obs.float() / 255 if as_float else obs)
    # d(w . s)/ds = w, with respect to the [0, 1]-scaled input in both cases
    torch.testing.assert_close(maps.value, net.w.detach().abs().expand(3, -1, -1, -1))
    assert maps.value.shape == obs.shape and maps.value.dtype == torch.float32


def test_linear_advantage_saliency_is_the_greedy_actions_weights() -> None:
    net, obs = LinearStreams(n_actions=5), frames(batch=8)
    maps = saliency_maps(net, obs)
    greedy = net.streams(obs)[1].argmax(dim=1)
    assert len(set(greedy.tolist())) > 1  # several actions, so a mix-up would show
    torch.testing.assert_close(maps.action, greedy)
    torch.testing.assert_close(maps.advantage, net.u.detach()[greedy].abs())


def test_a_raw_pixel_moves_the_value_by_the_map_over_255() -> None:
    net, obs = LinearStreams(), frames(batch=1)
    maps = saliency_maps(net, obs)
    bumped = obs.clone()
    bumped[0, 2, 40, 50] += 1  # one grey level more in one pixel of frame 2
    change = (net.streams(bumped)[0] - net.streams(obs)[0]).item()
    assert abs(change) == pytest.approx(maps.value[0, 2, 40, 50].item() / 255, rel=1e-3)


def test_uint8_and_scaled_float_frames_give_the_same_maps(dqn: DuelDQN) -> None:
    obs = frames()
    from_uint8, from_float = saliency_maps(dqn, obs), saliency_maps(dqn, obs.float() / 255)
    torch.testing.assert_close(from_uint8.value, from_float.value)
    torch.testing.assert_close(from_uint8.advantage, from_float.advantage)
    assert from_uint8.value.abs().sum() > 0 and from_uint8.advantage.abs().sum() > 0


def test_maps_equal_the_jacobians_rows_of_v_and_of_the_argmax_advantage() -> None:
    torch.manual_seed(1)
    net = MLPDuelingQNetwork(6, 4, hidden=16)
    x = 3 * torch.randn(5, 6)
    maps = saliency_maps(net, x)
    jac_v = torch.autograd.functional.jacobian(lambda s: net.streams(s)[0], x)  # (5, 1, 5, 6)
    jac_a = torch.autograd.functional.jacobian(lambda s: net.streams(s)[1], x)  # (5, 4, 5, 6)
    greedy = net.streams(x)[1].argmax(dim=1)
    assert len(set(greedy.tolist())) > 1
    rows = torch.arange(5)
    torch.testing.assert_close(maps.value, jac_v[rows, 0, rows].abs())
    torch.testing.assert_close(maps.advantage, jac_a[rows, greedy, rows].abs())
    # entries do not see each other, so summing over the batch loses nothing
    off_diagonal = ~torch.eye(5, dtype=torch.bool)
    assert jac_a.permute(0, 2, 1, 3)[off_diagonal].abs().max() == 0
    # another action gives another map: the greedy one is what was differentiated
    other = (greedy + 1) % 4
    given = saliency_maps(net, x, action=other)
    torch.testing.assert_close(given.advantage, jac_a[rows, other, rows].abs())
    assert not torch.allclose(given.advantage, maps.advantage)


def test_network_modes_and_parameter_grads_are_left_as_found(dqn: DuelDQN) -> None:
    net = DuelDQN()
    net.load_state_dict(dqn.state_dict())
    net.train()
    net.conv.eval()  # a mixed state must come back as it was
    modes = {name: m.training for name, m in net.named_modules()}
    net.lin.weight.grad = torch.full_like(net.lin.weight, 7.0)
    net.state_value.bias.requires_grad_(False)
    seen: list[bool] = []
    net.lin.register_forward_pre_hook(lambda module, args: seen.append(module.training))
    saliency_maps(net, frames())
    assert seen == [False]  # computed in eval mode
    assert {name: m.training for name, m in net.named_modules()} == modes
    assert torch.equal(net.lin.weight.grad, torch.full_like(net.lin.weight, 7.0))
    assert all(p.grad is None for name, p in net.named_parameters() if name != "lin.weight")
    assert not net.state_value.bias.requires_grad
    assert sum(p.requires_grad for p in net.parameters()) == len(list(net.parameters())) - 1


def test_maps_work_under_no_grad_and_inference_mode(dqn: DuelDQN) -> None:
    obs = frames()
    expected = saliency_maps(dqn, obs)
    with torch.no_grad():
        torch.testing.assert_close(saliency_maps(dqn, obs).value, expected.value)
    with torch.inference_mode():
        torch.testing.assert_close(saliency_maps(dqn, obs).advantage, expected.advantage)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_maps_on_cuda_match_cpu(dqn: DuelDQN) -> None:
    obs = frames()
    on_cpu = saliency_maps(dqn, obs)
    gpu_net = DuelDQN().cuda()
    gpu_net.load_state_dict(dqn.state_dict())
    on_gpu = saliency_maps(gpu_net, obs)  # CPU frames are moved to the network's device
    assert on_gpu.value.device.type == "cuda"
    torch.testing.assert_close(on_gpu.value.cpu(), on_cpu.value, rtol=1e-3, atol=1e-6)
    torch.testing.assert_close(on_gpu.action.cpu(), on_cpu.action)


def test_reduce_frames_max_sum_newest() -> None:
    maps = torch.arange(2 * 4 * 3 * 3, dtype=torch.float32).reshape(2, 4, 3, 3)
    torch.testing.assert_close(reduce_frames(maps), maps[:, 3])  # increasing: max = newest
    torch.testing.assert_close(reduce_frames(maps, "sum"), maps.sum(dim=1))
    torch.testing.assert_close(reduce_frames(maps.flip(1), "newest"), maps[:, 0])
    torch.testing.assert_close(reduce_frames(maps.flip(1), "max"), maps[:, 3])
    assert reduce_frames(maps[0]).shape == (3, 3)


# --- Errors --------------------------------------------------------------------------------


def one_line_error(kind: type[Exception], pattern: str, call, *args, **kwargs) -> None:
    """``call(*args, **kwargs)`` raises ``kind`` with a one-line message matching ``pattern``."""
    with pytest.raises(kind, match=pattern) as error:
        call(*args, **kwargs)
    assert "\n" not in str(error.value)


def test_errors_name_what_was_expected_and_what_came(dqn: DuelDQN) -> None:
    obs = frames()
    one_line_error(TypeError, r"dueling network with streams.*got QNetwork",
                   saliency_maps, QNetwork(), obs)
    one_line_error(TypeError, r"torch.Tensor.*got ndarray", saliency_maps, dqn, obs.numpy())
    one_line_error(TypeError, r"uint8 frames or floating point; got torch.int64",
                   saliency_maps, dqn, obs.long())
    one_line_error(ValueError, r"\(B, 4, 84, 84\).*got \(3, 84, 84, 4\)",
                   saliency_maps, dqn, obs.permute(0, 2, 3, 1))
    one_line_error(ValueError, r"got value \(1,\).*add a batch axis", saliency_maps, dqn, obs[0])
    one_line_error(ValueError, r"action must have shape \(3,\); got \(2,\)",
                   saliency_maps, dqn, obs, action=torch.tensor([0, 1]))
    one_line_error(ValueError, r"how must be one of .*got 'mean'",
                   reduce_frames, torch.zeros(1, 4, 84, 84), "mean")
    one_line_error(ValueError, r"one map \(h, w\); got shape \(4, 84, 84\)",
                   saliency_overlay, obs[0, -1], torch.zeros(4, 84, 84))
    one_line_error(ValueError, r"preprocessed \(84, 84\).*got shape \(4, 84, 84\).*obs\[-1\]",
                   find_ball, obs[0])
    one_line_error(TypeError, r"uint8 pixels; got float32",
                   find_paddle, np.zeros((84, 84), dtype=np.float32))


# --- Overlay and shares --------------------------------------------------------------------


def test_overlay_has_the_frame_in_green_and_blue_and_the_map_in_red() -> None:
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (84, 84), dtype=np.uint8)
    sal = rng.random((84, 84)) * 3.0
    image = saliency_overlay(frame, torch.as_tensor(sal))
    assert image.shape == (84, 84, 3) and image.dtype == np.float32
    assert image.min() >= 0 and image.max() <= 1
    np.testing.assert_allclose(image[..., 1], frame / 255, atol=1e-6)
    np.testing.assert_array_equal(image[..., 1], image[..., 2])
    np.testing.assert_allclose(image[..., 0], sal / sal.max(), atol=1e-6)  # own maximum
    shared = saliency_overlay(frame, sal, vmax=1.5)  # one scale for two maps
    np.testing.assert_allclose(shared[..., 0], np.clip(sal / 1.5, 0, 1), atol=1e-6)
    assert saliency_overlay(frame, np.zeros((84, 84)))[..., 0].max() == 0


def test_overlay_upsamples_the_map_onto_a_raw_rgb_screen() -> None:
    screen = np.zeros((*RAW_SHAPE, 3), dtype=np.uint8)
    screen[..., 1] = 200  # pure green: luminance 0.587 * 200
    sal = np.zeros((84, 84))
    sal[30, 60] = 1.0  # one salient preprocessed pixel
    image = saliency_overlay(screen, sal)
    assert image.shape == (*RAW_SHAPE, 3)
    np.testing.assert_allclose(image[..., 2], 0.587 * 200 / 255, atol=1e-6)
    row, col = np.unravel_index(image[..., 0].argmax(), RAW_SHAPE)
    # the peak lands on the raw pixels that the preprocessed pixel was averaged from
    assert Box(30, 60, 31, 61).rescale((84, 84), RAW_SHAPE).mask(RAW_SHAPE)[row, col]


def test_saliency_share_in_a_box_or_a_mask() -> None:
    box = Box(10, 20, 30, 24)  # 20 x 4 pixels
    uniform = np.ones((84, 84))
    assert saliency_share(uniform, box) == pytest.approx(80 / 84**2)  # the area's share
    peaked = uniform.copy()
    peaked[box.top:box.bottom, box.left:box.right] = 100.0
    share = 80 * 100 / (80 * 100 + 84**2 - 80)
    assert saliency_share(torch.as_tensor(peaked), box.mask((84, 84))) == pytest.approx(share)
    batch = saliency_share(np.stack([uniform, peaked, np.zeros((84, 84))]), box)
    np.testing.assert_allclose(batch[:2], [80 / 84**2, share])
    assert math.isnan(batch[2])  # nothing salient: no share
    with pytest.raises(ValueError, match=r"bool mask of shape \(84, 84\).*got int64 \(84, 84\)"):
        saliency_share(uniform, np.ones((84, 84), dtype=np.int64))
    with pytest.raises(ValueError, match=r"non-negative"):
        saliency_share(-uniform, box)


def test_box_grow_is_clipped_to_the_image() -> None:
    assert Box(1, 80, 3, 83).grow(2, (84, 84)) == Box(0, 78, 5, 84)
    assert Box(10, 20, 12, 22).center == (10.5, 20.5)
    assert Box(34, 140, 50, 144).rescale(RAW_SHAPE, (84, 84)) == Box(13, 73, 20, 76)


# --- Pong: the ball and the agent's paddle, on real frames ---------------------------------


@pytest.fixture(scope="module")
def pong() -> list[dict[str, np.ndarray]]:
    """250 steps of random play: the preprocessed frame and the emulator's own screens."""
    env = make_atari_env("ALE/Pong-v5", train=False, noop_max=0)
    preprocessing = env
    while not isinstance(preprocessing, AtariPreprocessing):
        preprocessing = preprocessing.env
    ale = env.unwrapped.ale
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    steps = []
    for _ in range(250):
        obs, _, terminated, truncated, _ = env.step(int(rng.integers(6)))
        steps.append({
            "frame": obs[-1],  # (84, 84): resize(max(screen 3, screen 4))
            "pooled": preprocessing.obs_buffer[0].copy(),  # (210, 160) max(screen 3, screen 4)
            "rgb": ale.getScreenRGB(),  # (210, 160, 3) screen 4
            "gray": ale.getScreenGrayscale(),  # (210, 160) screen 4
        })
        assert not (terminated or truncated)
    env.close()
    return steps


def test_raw_finders_agree_on_rgb_and_grayscale_screens(pong) -> None:
    for step in pong:
        assert find_ball(step["rgb"]) == find_ball(step["gray"])
        assert find_paddle(step["rgb"]) == find_paddle(step["gray"])
    balls = [find_ball(step["rgb"]) for step in pong]
    ball = next(b for b in balls if b is not None and b.top > 40 and b.bottom < 190)
    assert (ball.bottom - ball.top, ball.right - ball.left) == (4, 2)  # the ball: 4 x 2
    paddle = find_paddle(pong[100]["rgb"])
    assert (paddle.left, paddle.right) == (140, 144)  # the right paddle's columns


def test_ball_finder_hits_the_ball_in_preprocessed_frames(pong) -> None:
    hits = 0
    for step in pong:
        truth = find_ball(step["pooled"])  # exact: the ball's colour in the pooled screen
        found = find_ball(step["frame"])
        if truth is None:
            assert found is None
            continue
        expected = truth.rescale(RAW_SHAPE, (84, 84))
        assert found is not None
        assert expected.mask((84, 84))[found.mask((84, 84))].all()  # inside the true pixels
        assert max(abs(a - b) for a, b in zip(found.center, expected.center, strict=True)) <= 1
        hits += 1
    assert hits > 100  # the ball was on screen most of the time


def test_paddle_finder_hits_the_agents_paddle_in_preprocessed_frames(pong) -> None:
    rows = set()
    for step in pong:
        truth = find_paddle(step["pooled"])
        found = find_paddle(step["frame"])
        assert truth is not None and found is not None
        expected = truth.rescale(RAW_SHAPE, (84, 84))
        assert (found.left, found.right) == (expected.left, expected.right)
        assert expected.top <= found.top and found.bottom <= expected.bottom + 1  # ball touching
        assert max(abs(a - b) for a, b in zip(found.center, expected.center, strict=True)) <= 1
        rows.add(found.top)
    assert len(rows) > 10  # the paddle moved around


def test_ball_share_of_a_map_that_looks_at_the_ball(pong) -> None:
    step = next(s for s in pong if find_ball(s["frame"]) is not None)
    ball = find_ball(step["frame"]).grow(2, (84, 84))
    sal = np.zeros((84, 84))
    sal[ball.top:ball.bottom, ball.left:ball.right] = 1.0
    assert saliency_share(sal, ball) == 1.0
    assert saliency_share(sal, find_paddle(step["frame"])) == 0.0
