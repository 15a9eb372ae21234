"""Tests for duel_tutorial/model.py (and the conv shape tools the chapters check it with).

Shapes and parameter counts of every network, the input contract of the convolutional
networks and its errors, mean-centering, and labml's variant: labml's ``Model``, re-typed below,
loads into ``DuelingQNetwork(head_hidden=256)`` and gives the same Q-values.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from duel_tutorial import (
    AGGREGATIONS,
    DuelDQN,
    DuelingQNetwork,
    MLPDuelingQNetwork,
    MLPQNetwork,
    QNetwork,
    aggregate,
    conv_output_size,
    describe_conv_stack,
)
from duel_tutorial.model import hidden_layer, hidden_unit_activity


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def make_frames(batch: int = 3, channels: int = 4, seed: int = 0) -> torch.Tensor:
    """Random uint8 frame stacks ``(batch, channels, 84, 84)``."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, channels, 84, 84), dtype=torch.uint8, generator=generator)


@pytest.fixture(scope="module")
def net() -> DuelDQN:
    torch.manual_seed(0)
    return DuelDQN().eval()


@pytest.fixture(scope="module")
def frames() -> torch.Tensor:
    return make_frames()


# --- labml's variant, re-typed as written, nn.Module for labml's Module ---------


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels=4, out_channels=32, kernel_size=8, stride=4),
            nn.ReLU(),
            nn.Conv2d(in_channels=32, out_channels=64, kernel_size=4, stride=2),
            nn.ReLU(),
            nn.Conv2d(in_channels=64, out_channels=64, kernel_size=3, stride=1),
            nn.ReLU(),
        )
        self.lin = nn.Linear(in_features=7 * 7 * 64, out_features=512)
        self.activation = nn.ReLU()
        self.state_value = nn.Sequential(
            nn.Linear(in_features=512, out_features=256),
            nn.ReLU(),
            nn.Linear(in_features=256, out_features=1),
        )
        self.action_value = nn.Sequential(
            nn.Linear(in_features=512, out_features=256),
            nn.ReLU(),
            nn.Linear(in_features=256, out_features=4),
        )

    def __call__(self, obs: torch.Tensor):
        h = self.conv(obs)
        h = h.reshape((-1, 7 * 7 * 64))
        h = self.activation(self.lin(h))
        action_value = self.action_value(h)
        state_value = self.state_value(h)
        action_score_centered = action_value - action_value.mean(dim=-1, keepdim=True)
        q = state_value + action_score_centered
        return q


def test_seed_001_model_loads_into_head_hidden_256(frames):
    torch.manual_seed(1)
    seed_model = Model().eval()
    ours = DuelingQNetwork(head_hidden=256).eval()
    ours.load_state_dict(seed_model.state_dict())  # strict: same names, same shapes
    assert n_params(ours) == n_params(seed_model) == 1_948_069
    with torch.no_grad():
        expected = seed_model(frames.float() / 255.0)  # labml scales frames before the model
        torch.testing.assert_close(ours(frames), expected)
        torch.testing.assert_close(ours(frames.float() / 255.0), expected)


# --- DuelDQN: the specification --------------------------------------------------


def test_conv_stack_maps_84_to_7(net):
    x = torch.zeros(2, 4, 84, 84)
    sizes = []
    for layer in net.conv:
        x = layer(x)
        if isinstance(layer, nn.Conv2d):
            sizes.append(tuple(x.shape[1:]))
    assert sizes == [(32, 20, 20), (64, 9, 9), (64, 7, 7)]
    assert x.flatten(start_dim=1).shape == (2, 7 * 7 * 64) == (2, net.lin.in_features)


def test_duel_dqn_has_1686693_parameters(net):
    assert n_params(net) == 1_686_693


def test_duel_dqn_layers_follow_the_specification(net):
    convs = [m for m in net.conv if isinstance(m, nn.Conv2d)]
    spec = [(4, 32, 8, 4), (32, 64, 4, 2), (64, 64, 3, 1)]
    assert [(c.in_channels, c.out_channels, c.kernel_size[0], c.stride[0]) for c in convs] == spec
    assert all(c.padding == (0, 0) for c in convs)
    assert (net.lin.in_features, net.lin.out_features) == (3136, 512)
    assert (net.state_value.in_features, net.state_value.out_features) == (512, 1)
    assert (net.action_value.in_features, net.action_value.out_features) == (512, 4)
    assert sorted({k.rsplit(".", 1)[0] for k in net.state_dict()}) == [
        "action_value", "conv.0", "conv.2", "conv.4", "lin", "state_value"]


@pytest.mark.parametrize("batch", [1, 5])
def test_duel_dqn_maps_a_batch_to_q_values(net, batch):
    with torch.no_grad():
        q = net(make_frames(batch))
    assert q.shape == (batch, 4) and q.dtype == torch.float32


def test_duel_dqn_streams_give_value_and_advantage(net, frames):
    with torch.no_grad():
        value, advantage = net.streams(frames)
        q = net(frames)
    assert value.shape == (3, 1) and advantage.shape == (3, 4)
    torch.testing.assert_close(q, value + advantage - advantage.mean(dim=-1, keepdim=True))


def test_mean_centering_makes_v_the_mean_of_q(net, frames):
    with torch.no_grad():
        value, _ = net.streams(frames)
        q = net(frames)
    torch.testing.assert_close(q.mean(-1), value[:, 0])


def test_mean_centering_keeps_argmax(net, frames):
    with torch.no_grad():
        _, advantage = net.streams(frames)
        q = net(frames)
    assert torch.equal(q.argmax(-1), advantage.argmax(-1))


def test_q_of_a_state_does_not_depend_on_its_batch(net, frames):
    with torch.no_grad():
        torch.testing.assert_close(net(frames[:1])[0], net(frames)[0])
        torch.testing.assert_close(net(frames[1:])[1], net(frames)[2])


def q_with_shifted_bias(net: DuelDQN, head: nn.Linear, c: float, x: torch.Tensor) -> torch.Tensor:
    """Q-values with ``c`` added to one head's bias; the bias is restored afterwards."""
    saved = head.bias.detach().clone()
    try:
        with torch.no_grad():
            head.bias += c
            return net(x)
    finally:
        with torch.no_grad():
            head.bias.copy_(saved)


@settings(max_examples=20, deadline=None)
@given(c=st.floats(-100, 100, allow_nan=False))
def test_advantage_shift_does_not_change_q(net, frames, c):
    with torch.no_grad():
        q = net(frames)
    shifted = q_with_shifted_bias(net, net.action_value, c, frames)  # A + c: invisible
    torch.testing.assert_close(shifted, q, atol=1e-4, rtol=1e-5)


@settings(max_examples=20, deadline=None)
@given(c=st.floats(-100, 100, allow_nan=False))
def test_value_shift_moves_every_q_value(net, frames, c):
    with torch.no_grad():
        q = net(frames)
    shifted = q_with_shifted_bias(net, net.state_value, c, frames)  # V + c: moves every Q by c
    torch.testing.assert_close(shifted, q + c, atol=1e-4, rtol=1e-5)


def test_duel_dqn_equals_the_default_dueling_q_network(net, frames):
    configurable = DuelingQNetwork().eval()
    configurable.load_state_dict(net.state_dict())  # strict: same parameter names
    assert n_params(configurable) == n_params(net)
    with torch.no_grad():
        torch.testing.assert_close(configurable(frames), net(frames))


# --- The input contract ---------------------------------------------------------------------


def test_uint8_frames_are_scaled(net, frames):
    with torch.no_grad():
        assert torch.equal(net(frames), net(frames.float() / 255.0))


def test_float_frames_are_used_as_given(net, frames):
    x = frames.double() / 255.0
    with torch.no_grad():
        q = net(x)
        torch.testing.assert_close(q, net(x.float()))
    assert q.dtype == torch.float32  # cast to the parameters' dtype


def test_uint8_frames_follow_the_network_dtype(frames):
    torch.manual_seed(0)
    net = DuelDQN().double()
    with torch.no_grad():
        assert net(frames).dtype == torch.float64


def test_unbatched_obs_gives_unbatched_q(net, frames):
    with torch.no_grad():
        q = net(frames[0])
        value, advantage = net.streams(frames[0])
        batched = net(frames)
    assert q.shape == (4,) and value.shape == (1,) and advantage.shape == (4,)
    torch.testing.assert_close(q, batched[0])
    assert 0 <= int(q.argmax()) < 4


def test_channels_last_obs_is_rejected(net, frames):
    with pytest.raises(ValueError, match=r"\(B, 4, 84, 84\).*got \(3, 84, 84, 4\).*permute"):
        net(frames.permute(0, 2, 3, 1))


def test_missing_channel_axis_is_rejected(net, frames):
    with pytest.raises(ValueError, match=r"got \(3, 84, 84\) \(missing channel axis\?\)"):
        net(frames[:, 0])


@pytest.mark.parametrize("shape", [(2, 4, 96, 96), (2, 4, 210, 160), (2, 3, 84, 84), (84, 84),
                                   (1, 1, 4, 84, 84)])
def test_wrong_shapes_are_rejected(net, shape):
    with pytest.raises(ValueError, match=re.escape(f"got {tuple(shape)!r}")):
        net(torch.zeros(shape, dtype=torch.uint8))


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.int16, torch.bool])
def test_integer_frames_other_than_uint8_are_rejected(net, dtype):
    with pytest.raises(TypeError, match=f"uint8 frames or floating point; got {dtype}"):
        net(torch.zeros(2, 4, 84, 84, dtype=dtype))


def test_numpy_obs_is_rejected_with_a_hint(net, frames):
    with pytest.raises(TypeError, match=r"got ndarray \(wrap it with torch.as_tensor\)"):
        net(frames.numpy())


@pytest.mark.parametrize("cls", [DuelingQNetwork, QNetwork])
def test_configurable_networks_check_their_channel_count(cls):
    net = cls(in_channels=2)
    with pytest.raises(ValueError, match=r"\(B, 2, 84, 84\).*got \(1, 4, 84, 84\)"):
        net(make_frames(1))


# --- DuelingQNetwork and QNetwork -----------------------------------------------------------


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
@pytest.mark.parametrize(("n_actions", "in_channels", "head_hidden"), [(6, 4, None), (18, 2, 256)])
def test_dueling_q_network_shapes(n_actions, in_channels, head_hidden, aggregation):
    torch.manual_seed(0)
    net = DuelingQNetwork(n_actions, in_channels, head_hidden, aggregation).eval()
    x = make_frames(2, in_channels)
    with torch.no_grad():
        value, advantage = net.streams(x)
        q = net(x)
        q_one = net(x[0])
    assert (net.n_actions, net.in_channels) == (n_actions, in_channels)
    assert net.aggregation == aggregation
    assert value.shape == (2, 1) and advantage.shape == (2, n_actions) and q.shape == (2, n_actions)
    assert q_one.shape == (n_actions,)
    torch.testing.assert_close(q, aggregate(value, advantage, aggregation))
    torch.testing.assert_close(q_one, q[0])


def test_dueling_q_network_parameter_counts():
    # the specification's heads; labml's heads (a 256-unit hidden layer each); Pong's 6 actions
    assert n_params(DuelingQNetwork()) == 1_686_693
    assert n_params(DuelingQNetwork(head_hidden=256)) == 1_948_069
    assert n_params(DuelingQNetwork(n_actions=6)) == 1_686_693 + 2 * 513


@pytest.mark.parametrize(("n_actions", "in_channels", "head_hidden"), [(4, 4, None), (6, 1, 256)])
def test_q_network_shapes(n_actions, in_channels, head_hidden):
    torch.manual_seed(0)
    net = QNetwork(n_actions, in_channels, head_hidden).eval()
    x = make_frames(2, in_channels)
    with torch.no_grad():
        q = net(x)
        q_one = net(x[0])
    assert q.shape == (2, n_actions) and q_one.shape == (n_actions,)
    torch.testing.assert_close(q_one, q[0])
    with torch.no_grad():
        assert torch.equal(net(x), net(x.float() / 255.0))


def test_q_network_is_duel_dqn_without_the_value_head():
    assert n_params(DuelDQN()) - n_params(QNetwork()) == 512 + 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_actions": 0}, "n_actions must be a positive int; got 0"),
        ({"n_actions": -1}, "n_actions must be a positive int; got -1"),
        ({"n_actions": 2.5}, "n_actions must be a positive int; got 2.5"),
        ({"n_actions": True}, "n_actions must be a positive int; got True"),
        ({"in_channels": 0}, "in_channels must be a positive int; got 0"),
        ({"head_hidden": 0}, "head_hidden must be a positive int; got 0"),
    ],
)
@pytest.mark.parametrize("cls", [DuelingQNetwork, QNetwork])
def test_conv_networks_reject_bad_arguments(cls, kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        cls(**kwargs)


@pytest.mark.parametrize("aggregation", ["sum", "Mean", ""])
def test_unknown_aggregation_is_rejected(aggregation):
    with pytest.raises(ValueError, match=f"aggregation must be one of .*; got '{aggregation}'"):
        DuelingQNetwork(aggregation=aggregation)
    with pytest.raises(ValueError, match="aggregation must be one of"):
        MLPDuelingQNetwork(4, 2, aggregation=aggregation)


# --- MLPDuelingQNetwork and MLPQNetwork (vector observations) -------------------------------


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_mlp_dueling_q_network_shapes(aggregation):
    torch.manual_seed(0)
    net = MLPDuelingQNetwork(4, 2, aggregation=aggregation)
    x = torch.randn(5, 4)
    value, advantage = net.streams(x)
    q = net(x)
    assert value.shape == (5, 1) and advantage.shape == (5, 2) and q.shape == (5, 2)
    torch.testing.assert_close(q, aggregate(value, advantage, aggregation))
    assert net(x[0]).shape == (2,)
    torch.testing.assert_close(net(x[0]), q[0])
    assert net.n_actions == 2 and net.input_size == 4


def test_mlp_dueling_q_network_has_seed_002_layers():
    net = MLPDuelingQNetwork(8, 3, hidden=64)
    sizes = {name: (m.in_features, m.out_features) for name, m in net.named_children()}
    assert sizes == {"fc1": (8, 64), "fc2_adv": (64, 64), "fc2_val": (64, 64),
                     "fc3_adv": (64, 3), "fc3_val": (64, 1)}
    assert n_params(MLPDuelingQNetwork(4, 2)) == 8_835


def test_mlp_mean_centering_makes_v_the_mean_of_q():
    torch.manual_seed(0)
    net = MLPDuelingQNetwork(4, 3)
    x = torch.randn(7, 4)
    value, _ = net.streams(x)
    torch.testing.assert_close(net(x).mean(-1), value[:, 0])


def test_mlp_q_network_shapes_and_matched_size():
    torch.manual_seed(0)
    net = MLPQNetwork(4, 2, hidden=(64, 127))
    assert n_params(net) == 8_831  # matched to MLPDuelingQNetwork(4, 2): 8,835
    x = torch.randn(5, 4)
    assert net(x).shape == (5, 2) and net(x[0]).shape == (2,)
    torch.testing.assert_close(net(x[0]), net(x)[0])
    assert net.n_actions == 2 and net.input_size == 4
    linears = [m for m in net.net if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(4, 64), (64, 127), (127, 2)]


@pytest.mark.parametrize("cls", [MLPDuelingQNetwork, MLPQNetwork])
def test_mlp_networks_check_their_input(cls):
    net = cls(4, 2)
    with pytest.raises(ValueError, match=r"\(B, 4\) or unbatched \(4,\); got \(5, 3\)"):
        net(torch.randn(5, 3))
    with pytest.raises(ValueError, match=r"got \(2, 5, 4\)"):
        net(torch.randn(2, 5, 4))
    with pytest.raises(TypeError, match=r"floating point vectors; got torch\.int64"):
        net(torch.zeros(5, 4, dtype=torch.int64))
    with pytest.raises(TypeError, match=r"got ndarray \(wrap it with torch.as_tensor\)"):
        net(np.zeros((5, 4), dtype=np.float32))


@pytest.mark.parametrize(
    ("cls", "kwargs", "message"),
    [
        (MLPDuelingQNetwork, {"input_size": 0, "output_size": 2},
         "input_size must be a positive int; got 0"),
        (MLPDuelingQNetwork, {"input_size": 4, "output_size": 0},
         "output_size must be a positive int; got 0"),
        (MLPDuelingQNetwork, {"input_size": 4, "output_size": 2, "hidden": -3},
         "hidden must be a positive int; got -3"),
        (MLPQNetwork, {"input_size": 4.0, "output_size": 2},
         "input_size must be a positive int; got 4.0"),
        (MLPQNetwork, {"input_size": 4, "output_size": 2, "hidden": ()},
         "hidden must list at least one layer width; got ()"),
        (MLPQNetwork, {"input_size": 4, "output_size": 2, "hidden": (64, 0)},
         "hidden[1] must be a positive int; got 0"),
    ],
)
def test_mlp_networks_reject_bad_arguments(cls, kwargs, message):
    with pytest.raises(ValueError) as error:
        cls(**kwargs)
    assert str(error.value) == message


# --- Conv shape arithmetic, checked against torch -------------------------------------------


def test_describe_conv_stack_matches_torch_for_the_trunk(net):
    rows = describe_conv_stack(net.conv, (4, 84, 84))
    x = torch.zeros(1, 4, 84, 84)
    for row, layer in zip(rows, net.conv, strict=True):
        x = layer(x)
        assert row.output_shape == tuple(x.shape[1:])
        assert row.params == n_params(layer)
    assert [r.receptive_field for r in rows if r.layer == "Conv2d"] == [8, 20, 36]


def test_describe_conv_stack_matches_torch_for_other_layers():
    stack = nn.Sequential(
        nn.Conv2d(3, 8, kernel_size=5, stride=2, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Sequential(nn.Conv2d(8, 16, kernel_size=3, dilation=2), nn.ReLU()),
        nn.AvgPool2d(2),
        nn.Flatten(),
    )
    x = torch.zeros(1, 3, 61, 47)
    flat = stack(x)
    rows = describe_conv_stack(stack, (3, 61, 47))
    for row in rows:
        if row.name == "5":  # Flatten
            assert row.output_shape == tuple(flat.shape[1:])
    leaves = [m for m in stack.modules() if not list(m.children())]
    y = x
    for row, layer in zip(rows, leaves, strict=True):
        y = layer(y)
        assert row.output_shape == tuple(y.shape[1:]), row


def test_describe_conv_stack_rejects_a_channel_mismatch(net):
    with pytest.raises(ValueError, match="expects 4 channels; got 3"):
        describe_conv_stack(net.conv, (3, 84, 84))


@settings(max_examples=60, deadline=None)
@given(
    size=st.integers(1, 40),
    kernel=st.integers(1, 9),
    stride=st.integers(1, 5),
    padding=st.integers(0, 4),
    dilation=st.integers(1, 3),
)
def test_conv_output_size_matches_torch(size, kernel, stride, padding, dilation):
    span = dilation * (kernel - 1) + 1
    conv = nn.Conv2d(1, 1, kernel, stride=stride, padding=padding, dilation=dilation)
    if size + 2 * padding < span:
        with pytest.raises(ValueError, match="kernel spans"):
            conv_output_size(size, kernel, stride, padding, dilation)
        return
    with torch.no_grad():
        out = conv(torch.zeros(1, 1, size, size))
    assert conv_output_size(size, kernel, stride, padding, dilation) == out.shape[-1]


def test_conv_output_size_of_the_trunk():
    assert conv_output_size(84, kernel=8, stride=4) == 20
    assert conv_output_size(20, kernel=4, stride=2) == 9
    assert conv_output_size(9, kernel=3, stride=1) == 7


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"size": 0, "kernel": 3}, "size must be an int >= 1; got 0"),
        ({"size": 84, "kernel": 0}, "kernel must be an int >= 1; got 0"),
        ({"size": 84, "kernel": 3, "stride": 0}, "stride must be an int >= 1; got 0"),
        ({"size": 84, "kernel": 3, "padding": -1}, "padding must be an int >= 0; got -1"),
        ({"size": 84, "kernel": 3, "dilation": 0}, "dilation must be an int >= 1; got 0"),
        ({"size": 84.0, "kernel": 3}, "size must be an int >= 1; got 84.0"),
        ({"size": 84, "kernel": True}, "kernel must be an int >= 1; got True"),
        ({"size": 5, "kernel": 8}, "kernel spans 8 pixels but the padded input has only 5"),
        ({"size": 5, "kernel": 3, "dilation": 3},
         "kernel spans 7 pixels but the padded input has only 5"),
    ],
)
def test_conv_output_size_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError) as error:
        conv_output_size(**kwargs)
    assert str(error.value).startswith(message)


def test_dead_and_dormant_hidden_units_are_counted_on_the_observations_given():
    net = DuelingQNetwork(n_actions=6)
    obs = make_frames(batch=10)
    with torch.no_grad():  # 7 units that never fire, 3 that fire weakly, the rest alike
        net.lin.weight.zero_()
        net.lin.bias.fill_(1.0)
        net.lin.bias[:7] = -1.0
        net.lin.bias[7:10] = 0.05
    counts = hidden_unit_activity(net, obs, chunk=4)
    assert counts == {"units": 512, "observations": 10, "dead": 7, "dormant": 10, "tau": 0.1}
    assert hidden_unit_activity(net, obs, tau=0.01)["dormant"] == 7
    assert hidden_layer(MLPQNetwork(4, 2)) is None and hidden_layer(net) is net.activation
    with pytest.raises(ValueError, match=r"hidden layer ends in .activation, a ReLU; got "
                                         r"MLPDuelingQNetwork"):
        hidden_unit_activity(MLPDuelingQNetwork(4, 2), torch.zeros(3, 4))
    with pytest.raises(ValueError, match="at least one observation; got none"):
        hidden_unit_activity(net, obs[:0])
    assert not net.lin.weight.requires_grad or net.lin.weight.grad is None  # no backward
