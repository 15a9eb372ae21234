"""duel_tutorial: the Dueling Network architecture (Wang et al., 2016) in PyTorch.

The package behind the Dueling DQN book. Everything a chapter imports is listed here.
"""

from __future__ import annotations

from duel_tutorial.aggregation import AGGREGATIONS, aggregate
from duel_tutorial.checkpoint import load_policy, load_pretrained, pretrained_card
from duel_tutorial.config import PRESETS, DQNConfig, preset
from duel_tutorial.device import default_device
from duel_tutorial.envs import action_meanings, make_atari_env, make_atari_vector_env
from duel_tutorial.exploration import epsilon_greedy, exponential_epsilon, linear_epsilon
from duel_tutorial.model import (
    DuelDQN,
    DuelingQNetwork,
    MLPDuelingQNetwork,
    MLPQNetwork,
    QNetwork,
)
from duel_tutorial.replay import Batch, FrameReplayBuffer, NStepBatch, ReplayBuffer
from duel_tutorial.saliency import (
    Box,
    SaliencyMaps,
    find_ball,
    find_paddle,
    reduce_frames,
    saliency_maps,
    saliency_overlay,
    saliency_share,
)
from duel_tutorial.shapes import LayerShape, conv_output_size, describe_conv_stack, layer_table
from duel_tutorial.targets import hard_update, polyak_update, td_loss, td_target

# The training loop and evaluation are used through their modules (`from duel_tutorial.train
# import train`, `python -m duel_tutorial.train`), not re-exported here: importing them in
# the package would make `python -m duel_tutorial.train` import its own module twice.

__version__ = "0.1.0"

__all__ = [
    "AGGREGATIONS",
    "PRESETS",
    "Batch",
    "Box",
    "DQNConfig",
    "DuelDQN",
    "DuelingQNetwork",
    "FrameReplayBuffer",
    "LayerShape",
    "MLPDuelingQNetwork",
    "MLPQNetwork",
    "NStepBatch",
    "QNetwork",
    "ReplayBuffer",
    "SaliencyMaps",
    "action_meanings",
    "aggregate",
    "conv_output_size",
    "default_device",
    "describe_conv_stack",
    "epsilon_greedy",
    "exponential_epsilon",
    "find_ball",
    "find_paddle",
    "hard_update",
    "layer_table",
    "linear_epsilon",
    "load_policy",
    "load_pretrained",
    "make_atari_env",
    "make_atari_vector_env",
    "polyak_update",
    "preset",
    "pretrained_card",
    "reduce_frames",
    "saliency_maps",
    "saliency_overlay",
    "saliency_share",
    "td_loss",
    "td_target",
]
