"""duel_tutorial: the Dueling Network architecture (Wang et al., 2016) in PyTorch.

The package behind the Dueling DQN book. Everything a chapter imports is listed here.
"""

from __future__ import annotations

from duel_tutorial.aggregation import AGGREGATIONS, aggregate
from duel_tutorial.device import default_device
from duel_tutorial.model import (
    DuelDQN,
    DuelingQNetwork,
    MLPDuelingQNetwork,
    MLPQNetwork,
    QNetwork,
)
from duel_tutorial.shapes import LayerShape, conv_output_size, describe_conv_stack, layer_table

__version__ = "0.1.0"

__all__ = [
    "AGGREGATIONS",
    "DuelDQN",
    "DuelingQNetwork",
    "LayerShape",
    "MLPDuelingQNetwork",
    "MLPQNetwork",
    "QNetwork",
    "aggregate",
    "conv_output_size",
    "default_device",
    "describe_conv_stack",
    "layer_table",
]
