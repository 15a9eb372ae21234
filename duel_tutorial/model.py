"""Q-networks: the specified ``DuelDQN`` and the family the chapters compare it with.

- :class:`DuelDQN`: exactly the ``DuelDQN`` specification (the book's appendix states
  it). No constructor arguments; 4 stacked 84x84 frames in, 4 Q-values out; 1,686,693 parameters.
- :class:`DuelingQNetwork`: the same convolutional dueling network, configurable: any
  number of actions and input channels, the specification's linear heads or labml's
  variant's heads with a hidden layer, and any aggregation (``"mean"``, ``"max"``, ``"naive"``).
- :class:`QNetwork`: the single-stream baseline (Nature DQN head) on the same trunk.
- :class:`MLPDuelingQNetwork` and :class:`MLPQNetwork`: the dueling and single-stream
  networks for vector observations (the training sketch's ``DuellingDQN`` shape), e.g. CartPole.

Every network maps observations to ``q: (B, n_actions)``. Dueling networks also expose
``streams(obs) -> (value (B, 1), advantage (B, n_actions))``, before aggregation.

Input contract for the convolutional networks, checked at the boundary:

- ``obs`` is ``(B, C, 84, 84)``, channels first (``C = 4`` stacked frames by default).
- ``uint8`` frames (how Atari delivers them) are scaled by 1/255; floating frames are
  used as given (cast to the parameters' dtype, which does not change their values).
- An unbatched ``(C, 84, 84)`` observation is accepted, as ``nn.Conv2d`` accepts one:
  the result is unbatched too, ``q: (n_actions,)``, so ``model(obs).argmax()`` is the
  greedy action for a single frame stack.
- Anything else (channels-last ``(B, 84, 84, 4)`` from a frame stacker that stacks on the
  last axis, as OpenAI Baselines' does, or from an image library; a missing channel axis;
  another frame size; an integer dtype other than uint8) raises a one-line ``ValueError``
  or ``TypeError`` naming what was expected and what came.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from duel_tutorial.aggregation import Aggregation, aggregate, check_aggregation

if TYPE_CHECKING:
    from duel_tutorial.config import DQNConfig

FRAME_SIZE = 84
"""Side of the square preprocessed Atari frame (Mnih et al., 2015)."""
CONV_FEATURES = 7 * 7 * 64
"""Flattened size of the last conv layer's output for 84x84 input: 3136."""


def frames_to_float(obs: torch.Tensor, in_channels: int, weight: torch.Tensor) -> torch.Tensor:
    """Check a batch of frame stacks and return it as ``(B, C, 84, 84)`` floats.

    ``weight`` is any parameter of the network: its dtype and device are the target.
    Returns a batched tensor; callers squeeze the batch axis back for unbatched input.
    """
    if not isinstance(obs, torch.Tensor):
        raise TypeError(
            f"obs must be a torch.Tensor of shape (B, {in_channels}, 84, 84); "
            f"got {type(obs).__name__} (wrap it with torch.as_tensor)"
        )
    expected = f"(B, {in_channels}, {FRAME_SIZE}, {FRAME_SIZE})"
    shape = tuple(obs.shape)
    if obs.dim() == 3 and shape == (in_channels, FRAME_SIZE, FRAME_SIZE):
        obs = obs.unsqueeze(0)
    elif obs.dim() != 4 or shape[1:] != (in_channels, FRAME_SIZE, FRAME_SIZE):
        hint = ""
        if obs.dim() == 4 and shape[1:] == (FRAME_SIZE, FRAME_SIZE, in_channels):
            hint = " (channels-last: use obs.permute(0, 3, 1, 2))"
        elif obs.dim() == 3 and shape[1:] == (FRAME_SIZE, FRAME_SIZE):
            hint = " (missing channel axis?)"
        raise ValueError(
            f"obs must have shape {expected} or unbatched ({in_channels}, {FRAME_SIZE}, "
            f"{FRAME_SIZE}); got {shape}{hint}"
        )
    if obs.dtype == torch.uint8:
        # pixels in {0, ..., 255} -> [0, 1]
        return obs.to(weight.dtype) / 255.0
    if not obs.is_floating_point():
        raise TypeError(f"obs must be uint8 frames or floating point; got {obs.dtype}")
    return obs.to(weight.dtype)


def nature_conv(in_channels: int = 4) -> nn.Sequential:
    """The three conv layers of Mnih et al. (2015): (B, C, 84, 84) -> (B, 64, 7, 7)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 32, kernel_size=8, stride=4),  # (B, 32, 20, 20)
        nn.ReLU(),
        nn.Conv2d(32, 64, kernel_size=4, stride=2),  # (B, 64, 9, 9)
        nn.ReLU(),
        nn.Conv2d(64, 64, kernel_size=3, stride=1),  # (B, 64, 7, 7)
        nn.ReLU(),
    )


def _head(in_features: int, out_features: int, hidden: int | None) -> nn.Module:
    """One linear layer (the specification), or Linear -> ReLU -> Linear with ``hidden``
    units (labml's variant)."""
    if hidden is None:
        return nn.Linear(in_features, out_features)
    return nn.Sequential(
        nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, out_features)
    )


def _check_positive(**sizes: int | None) -> None:
    for name, size in sizes.items():
        if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 1):
            raise ValueError(f"{name} must be a positive int; got {size!r}")


class DuelDQN(nn.Module):
    """The dueling network of the ``DuelDQN`` specification, for 4 actions.

    ``forward(obs: (B, 4, 84, 84)) -> q: (B, 4)`` with
    ``Q(s, a) = V(s) + (A(s, a) - 1/|A| sum_a' A(s, a'))``. See the module docstring
    for the input contract (uint8 scaled by 1/255, unbatched input, errors).
    """

    def __init__(self) -> None:
        super().__init__()
        # shared trunk: three conv layers, (B, 4, 84, 84) -> (B, 64, 7, 7)
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels=4, out_channels=32, kernel_size=8, stride=4),  # (B, 32, 20, 20)
            nn.ReLU(),
            nn.Conv2d(in_channels=32, out_channels=64, kernel_size=4, stride=2),  # (B, 64, 9, 9)
            nn.ReLU(),
            nn.Conv2d(in_channels=64, out_channels=64, kernel_size=3, stride=1),  # (B, 64, 7, 7)
            nn.ReLU(),
        )
        # flattened 7 * 7 * 64 = 3136 features -> 512
        self.lin = nn.Linear(in_features=CONV_FEATURES, out_features=512)
        self.activation = nn.ReLU()
        # V(s): 512 -> 1
        self.state_value = nn.Linear(in_features=512, out_features=1)
        # A(s, a): 512 -> 4
        self.action_value = nn.Linear(in_features=512, out_features=4)

    def streams(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(value (B, 1), advantage (B, 4))`` before aggregation."""
        x = frames_to_float(obs, 4, self.lin.weight)
        h = self.conv(x).flatten(start_dim=1)  # (B, 3136)
        h = self.activation(self.lin(h))  # (B, 512)
        value, advantage = self.state_value(h), self.action_value(h)
        if obs.dim() == 3:
            return value.squeeze(0), advantage.squeeze(0)
        return value, advantage

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Q-values ``q: (B, 4)`` (or ``(4,)`` for one unbatched observation)."""
        value, advantage = self.streams(obs)
        # Q = V + (A - 1/|A| sum_a' A)
        q = value + (advantage - advantage.mean(dim=-1, keepdim=True))
        return q


class TwoStreamQNetwork(nn.Module):
    """What every dueling network here shares: a trunk ``features(obs) -> h``, a value
    stream ``state_value`` and an advantage stream ``action_value`` reading ``h``, and
    their aggregation. Subclasses build the layers and define ``features``."""

    aggregation: Aggregation

    def features(self, obs: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def streams(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(value (B, 1), advantage (B, n_actions))`` before aggregation."""
        h = self.features(obs)
        value, advantage = self.state_value(h), self.action_value(h)
        if obs.dim() == 3:
            return value.squeeze(0), advantage.squeeze(0)
        return value, advantage

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Q-values ``q: (B, n_actions)`` (or ``(n_actions,)`` for unbatched input)."""
        return aggregate(*self.streams(obs), method=self.aggregation)


class DuelingQNetwork(TwoStreamQNetwork):
    """The convolutional dueling network, configurable.

    Args:
        n_actions: size of the action set (Pong: 6, Breakout: 4).
        in_channels: stacked frames per observation.
        head_hidden: ``None`` for one linear layer per head (the specification); an int for a
            hidden ReLU layer of that width in each head (labml's variant uses 256).
        aggregation: ``"mean"`` (paper eq. 9), ``"max"`` (eq. 8) or ``"naive"`` (eq. 7).

    With the defaults it has the same layers, parameter names and output as
    :class:`DuelDQN`; with ``head_hidden=256`` it loads labml's model as is.
    """

    def __init__(
        self,
        n_actions: int = 4,
        in_channels: int = 4,
        head_hidden: int | None = None,
        aggregation: Aggregation = "mean",
    ) -> None:
        super().__init__()
        _check_positive(n_actions=n_actions, in_channels=in_channels, head_hidden=head_hidden)
        self.n_actions, self.in_channels = n_actions, in_channels
        self.aggregation = check_aggregation(aggregation)
        self.conv = nature_conv(in_channels)
        self.lin = nn.Linear(CONV_FEATURES, 512)
        self.activation = nn.ReLU()
        self.state_value = _head(512, 1, head_hidden)
        self.action_value = _head(512, n_actions, head_hidden)

    def features(self, obs: torch.Tensor) -> torch.Tensor:
        """Shared trunk: ``(B, C, 84, 84) -> (B, 512)``."""
        x = frames_to_float(obs, self.in_channels, self.lin.weight)
        return self.activation(self.lin(self.conv(x).flatten(start_dim=1)))


class QNetwork(nn.Module):
    """Single-stream baseline: the Nature DQN (Mnih et al., 2015) on the same trunk.

    ``(B, C, 84, 84) -> conv -> 512 -> q: (B, n_actions)``; ``head_hidden`` adds a hidden
    layer to the Q head, as :class:`DuelingQNetwork` does to each of its heads.
    """

    def __init__(
        self, n_actions: int = 4, in_channels: int = 4, head_hidden: int | None = None
    ) -> None:
        super().__init__()
        _check_positive(n_actions=n_actions, in_channels=in_channels, head_hidden=head_hidden)
        self.n_actions, self.in_channels = n_actions, in_channels
        self.conv = nature_conv(in_channels)
        self.lin = nn.Linear(CONV_FEATURES, 512)
        self.activation = nn.ReLU()
        self.q_value = _head(512, n_actions, head_hidden)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Q-values ``q: (B, n_actions)`` (or ``(n_actions,)`` for unbatched input)."""
        x = frames_to_float(obs, self.in_channels, self.lin.weight)
        q = self.q_value(self.activation(self.lin(self.conv(x).flatten(start_dim=1))))
        return q.squeeze(0) if obs.dim() == 3 else q


# --- MinAtar: 10x10 grids of C boolean channels ---------------------------------------

GRID_SIZE = 10  # MinAtar's grids are 10x10
MINATAR_FEATURES = 16 * 8 * 8  # 16 filters of 3x3, stride 1, no padding: 10 -> 8


def grids_to_float(obs: torch.Tensor, in_channels: int, weight: torch.Tensor) -> torch.Tensor:
    """Check a batch of MinAtar grids ``(B, C, 10, 10)`` (bool, 0/1 integers or floats) and
    return it as floats in ``weight``'s dtype; an unbatched ``(C, 10, 10)`` gets a batch
    axis of 1."""
    if not isinstance(obs, torch.Tensor):
        raise TypeError(f"obs must be a torch.Tensor of shape (B, {in_channels}, 10, 10); got "
                        f"{type(obs).__name__} (wrap it with torch.as_tensor)")
    shape, grid = tuple(obs.shape), (in_channels, GRID_SIZE, GRID_SIZE)
    if obs.dim() == 3 and shape == grid:
        obs = obs.unsqueeze(0)
    elif obs.dim() != 4 or shape[1:] != grid:
        hint = (" (channels-last: use obs.permute(0, 3, 1, 2))"
                if obs.dim() == 4 and shape[1:] == (GRID_SIZE, GRID_SIZE, in_channels) else "")
        raise ValueError(f"obs must have shape (B, {in_channels}, 10, 10) or unbatched "
                         f"({in_channels}, 10, 10); got {shape}{hint}")
    return obs.to(weight.dtype)  # bool and 0/1 grids as 0.0 / 1.0


class MinAtarDuelingQNetwork(TwoStreamQNetwork):
    """The dueling network on MinAtar's DQN architecture (Young and Tian, 2019).

    ``(B, C, 10, 10) -> conv 16 @ 3x3 -> ReLU -> 1024 -> lin 128 -> ReLU -> h``, then the
    value ``128 -> 1`` and advantage ``128 -> n_actions`` streams, aggregated as in
    :class:`DuelingQNetwork` (whose layer names it keeps: ``conv``, ``lin``,
    ``state_value``, ``action_value``).
    """

    def __init__(self, n_actions: int, in_channels: int, hidden: int = 128,
                 aggregation: Aggregation = "mean") -> None:
        super().__init__()
        _check_positive(n_actions=n_actions, in_channels=in_channels, hidden=hidden)
        self.n_actions, self.in_channels = n_actions, in_channels
        self.aggregation = check_aggregation(aggregation)
        self.conv = nn.Sequential(nn.Conv2d(in_channels, 16, kernel_size=3), nn.ReLU())
        self.lin = nn.Linear(MINATAR_FEATURES, hidden)
        self.activation = nn.ReLU()
        self.state_value = nn.Linear(hidden, 1)
        self.action_value = nn.Linear(hidden, n_actions)

    def features(self, obs: torch.Tensor) -> torch.Tensor:
        """Shared trunk: ``(B, C, 10, 10) -> (B, hidden)``."""
        x = grids_to_float(obs, self.in_channels, self.lin.weight)
        return self.activation(self.lin(self.conv(x).flatten(start_dim=1)))


class MinAtarQNetwork(nn.Module):
    """Single-stream baseline on MinAtar's DQN architecture: ``conv -> lin -> q``.

    With ``hidden=128`` (MinAtar's network) it has ``hidden + 1`` fewer parameters than
    :class:`MinAtarDuelingQNetwork`, the value stream: 0.1 % of about 130,000.
    """

    def __init__(self, n_actions: int, in_channels: int, hidden: int = 128) -> None:
        super().__init__()
        _check_positive(n_actions=n_actions, in_channels=in_channels, hidden=hidden)
        self.n_actions, self.in_channels = n_actions, in_channels
        self.conv = nn.Sequential(nn.Conv2d(in_channels, 16, kernel_size=3), nn.ReLU())
        self.lin = nn.Linear(MINATAR_FEATURES, hidden)
        self.activation = nn.ReLU()
        self.q_value = nn.Linear(hidden, n_actions)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Q-values ``q: (B, n_actions)`` (or ``(n_actions,)`` for unbatched input)."""
        x = grids_to_float(obs, self.in_channels, self.lin.weight)
        q = self.q_value(self.activation(self.lin(self.conv(x).flatten(start_dim=1))))
        return q.squeeze(0) if obs.dim() == 3 else q


def vectors_to_float(obs: torch.Tensor, input_size: int, weight: torch.Tensor) -> torch.Tensor:
    """Check ``(B, input_size)`` (or unbatched ``(input_size,)``) vector observations."""
    if not isinstance(obs, torch.Tensor):
        raise TypeError(
            f"obs must be a torch.Tensor of shape (B, {input_size}); "
            f"got {type(obs).__name__} (wrap it with torch.as_tensor)"
        )
    if obs.dim() not in (1, 2) or obs.shape[-1] != input_size:
        raise ValueError(
            f"obs must have shape (B, {input_size}) or unbatched ({input_size},); "
            f"got {tuple(obs.shape)}"
        )
    if not obs.is_floating_point():
        raise TypeError(f"obs must be floating point vectors; got {obs.dtype}")
    return obs.to(weight.dtype)


class MLPDuelingQNetwork(nn.Module):
    """Dueling network for vector observations, shaped as the training sketch's
    ``DuellingDQN``.

    ``fc1: input_size -> hidden`` (shared), then two streams of two layers each:
    ``fc2_val -> fc3_val: hidden -> hidden -> 1`` and
    ``fc2_adv -> fc3_adv: hidden -> hidden -> output_size``.
    """

    def __init__(
        self,
        input_size: int,
        output_size: int,
        hidden: int = 64,
        aggregation: Aggregation = "mean",
    ) -> None:
        super().__init__()
        _check_positive(input_size=input_size, output_size=output_size, hidden=hidden)
        self.input_size, self.n_actions = input_size, output_size
        self.aggregation = check_aggregation(aggregation)
        self.fc1 = nn.Linear(input_size, hidden)
        self.fc2_adv = nn.Linear(hidden, hidden)
        self.fc2_val = nn.Linear(hidden, hidden)
        self.fc3_adv = nn.Linear(hidden, output_size)
        self.fc3_val = nn.Linear(hidden, 1)

    def streams(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(value (B, 1), advantage (B, n_actions))`` before aggregation."""
        x = torch.relu(self.fc1(vectors_to_float(obs, self.input_size, self.fc1.weight)))
        value = self.fc3_val(torch.relu(self.fc2_val(x)))
        advantage = self.fc3_adv(torch.relu(self.fc2_adv(x)))
        return value, advantage

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Q-values ``q: (B, n_actions)`` (or ``(n_actions,)`` for unbatched input)."""
        return aggregate(*self.streams(obs), method=self.aggregation)


class MLPQNetwork(nn.Module):
    """Single-stream MLP baseline: ``input_size -> hidden[0] -> ... -> output_size``, ReLU between.

    Choose ``hidden`` to match a dueling network's parameter count, e.g.
    ``MLPQNetwork(4, 2, hidden=(64, 127))`` has 8,831 parameters against 8,835 for
    ``MLPDuelingQNetwork(4, 2)``.
    """

    def __init__(
        self, input_size: int, output_size: int, hidden: tuple[int, ...] = (64, 64)
    ) -> None:
        super().__init__()
        _check_positive(input_size=input_size, output_size=output_size)
        if not hidden:
            raise ValueError("hidden must list at least one layer width; got ()")
        _check_positive(**{f"hidden[{i}]": h for i, h in enumerate(hidden)})
        self.input_size, self.n_actions = input_size, output_size
        widths = (input_size, *hidden)
        layers: list[nn.Module] = []
        for n_in, n_out in itertools.pairwise(widths):
            layers += [nn.Linear(n_in, n_out), nn.ReLU()]
        self.net = nn.Sequential(*layers, nn.Linear(widths[-1], output_size))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Q-values ``q: (B, n_actions)`` (or ``(n_actions,)`` for unbatched input)."""
        return self.net(vectors_to_float(obs, self.input_size, self.net[0].weight))


# --- the network a training config asks for ------------------------------------------


def matched_hidden(input_size: int, n_actions: int, hidden: int) -> int:
    """Width ``w`` that gives ``MLPQNetwork(hidden=(hidden, w))`` about as many parameters
    as ``MLPDuelingQNetwork(hidden=hidden)``, e.g. 127 for CartPole (8,831 vs 8,835)."""
    shared = input_size * hidden + hidden  # fc1
    # dueling: fc1 + 2 (hidden -> hidden) + (hidden -> n_actions) + (hidden -> 1)
    dueling = shared + 2 * (hidden * hidden + hidden) + hidden * n_actions + n_actions + hidden + 1
    # single: fc1 + (hidden -> w) + (w -> n_actions) = shared + w (hidden + 1 + n_actions) + n_act
    return max(1, round((dueling - shared - n_actions) / (hidden + 1 + n_actions)))


DORMANT_TAU = 0.1
"""A unit is dormant if its mean activation is at most this share of its layer's mean per
unit (Sokar et al., 2023, use 0 and 0.1 in their analyses)."""


def hidden_layer(network: nn.Module) -> nn.ReLU | None:
    """The ReLU after ``lin`` (the layer the two streams, or the Q head, read) of the
    convolutional networks, Atari's and MinAtar's; ``None`` for the MLPs."""
    activation = getattr(network, "activation", None)
    return activation if isinstance(activation, nn.ReLU) else None


def hidden_unit_activity(network: nn.Module, obs: torch.Tensor, tau: float = DORMANT_TAU,
                         chunk: int = 256) -> dict[str, int | float]:
    """How many units of ``network``'s :func:`hidden_layer` are *dead* (zero on every
    observation of ``obs``: they pass no gradient back) or *dormant* (mean activation at
    most ``tau`` times the layer's mean per unit, which includes the dead ones).

    Returns ``{"units", "observations", "dead", "dormant", "tau"}``. Runs the network
    without gradients, ``chunk`` observations at a time, on their device.
    """
    layer = hidden_layer(network)
    if layer is None:
        raise ValueError(f"expected a network whose hidden layer ends in .activation, a "
                         f"ReLU; got {type(network).__name__}")
    if len(obs) == 0:
        raise ValueError("expected at least one observation; got none")
    outputs: list[torch.Tensor] = []
    hook = layer.register_forward_hook(lambda _m, _i, out: outputs.append(out.detach()))
    try:
        with torch.no_grad():
            for part in obs.split(chunk):
                network(part)
    finally:
        hook.remove()
    h = torch.cat(outputs).double()
    mean = h.mean(0)
    layer_mean = mean.mean()
    score = mean / layer_mean if layer_mean > 0 else torch.zeros_like(mean)
    return {"units": h.shape[1], "observations": h.shape[0],
            "dead": int((h.amax(0) == 0).sum()), "dormant": int((score <= tau).sum()),
            "tau": tau}


def make_network(config: DQNConfig, obs_shape: tuple[int, ...] | Any, n_actions: int
                 ) -> nn.Module:
    """The Q-network ``config`` asks for, sized for the observations and actions.

    - vector observations ``(D,)``: ``"dueling"`` is :class:`MLPDuelingQNetwork` (the
      training sketch's shape, width ``config.hidden``); ``"single"`` is
      :class:`MLPQNetwork` with hidden widths ``(hidden, matched_hidden(...))``, the same
      parameter count.
    - frame stacks ``(C, 84, 84)``: :class:`DuelingQNetwork` or :class:`QNetwork` with ``C``
      input channels (``config.hidden`` is not used).
    - MinAtar grids ``(C, 10, 10)``: :class:`MinAtarDuelingQNetwork` or
      :class:`MinAtarQNetwork` (MinAtar's own 128-unit layer; ``config.hidden`` not used).
    """
    shape = tuple(getattr(obs_shape, "shape", obs_shape))  # a gymnasium Space, or a shape
    if len(shape) == 1:
        if config.network == "dueling":
            return MLPDuelingQNetwork(shape[0], n_actions, hidden=config.hidden,
                                      aggregation=config.aggregation)
        width = matched_hidden(shape[0], n_actions, config.hidden)
        return MLPQNetwork(shape[0], n_actions, hidden=(config.hidden, width))
    if len(shape) == 3 and shape[1:] == (GRID_SIZE, GRID_SIZE):  # MinAtar
        if config.network == "dueling":
            network = MinAtarDuelingQNetwork(n_actions, shape[0], aggregation=config.aggregation)
            if config.trunk_grad_scale != 1.0:
                scale_combined_gradient(network, config.trunk_grad_scale)
            return network
        return MinAtarQNetwork(n_actions, shape[0])
    if len(shape) == 3:
        if shape[1:] != (84, 84):
            raise ValueError(f"image observations must be channels first: frame stacks "
                             f"(C, 84, 84), as make_atari_env gives, or MinAtar grids "
                             f"(C, 10, 10); got shape {shape}"
                             + (" (channels last?)" if shape[-1] <= 10 else ""))
        if config.network == "dueling":
            network = DuelingQNetwork(n_actions, in_channels=shape[0],
                                      aggregation=config.aggregation)
            if config.trunk_grad_scale != 1.0:
                scale_combined_gradient(network, config.trunk_grad_scale)
            return network
        return QNetwork(n_actions, in_channels=shape[0])
    raise ValueError(f"observations must be vectors (D,), frame stacks (C, 84, 84) or MinAtar "
                     f"grids (C, 10, 10); got shape {shape}")


def scale_combined_gradient(network: DuelingQNetwork, scale: float) -> None:
    """Multiply by ``scale`` the gradient flowing back from the two streams into the trunk.

    Wang et al. (2016, sec. 4.2) "rescale the combined gradient entering the last
    convolutional layer by 1/sqrt(2)": both streams send their gradient into the shared
    layers, and the rescaling keeps its size near a single stream's. In the paper the
    streams split right after the last conv layer; in the specification's network they split after
    the shared 512-unit layer ``lin``, so the hook sits on ``lin``'s output, where the two
    gradients meet; the conv layers below receive the rescaled gradient too. The forward
    pass is unchanged. A ``copy.deepcopy`` of the network (the target network) carries the
    hook, which does nothing there: it runs without gradients.
    """
    if not isinstance(network, TwoStreamQNetwork):
        raise ValueError(f"scale_combined_gradient needs a DuelingQNetwork; got "
                         f"{type(network).__name__}")

    def rescale_backward(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        if output.requires_grad:
            # dL/dh <- scale * (dL/dh from V + dL/dh from A)
            output.register_hook(lambda grad: grad * scale)

    network.lin.register_forward_hook(rescale_backward)
