"""Pick where tensors live: CUDA when available, else the CPU."""

from __future__ import annotations

import torch


def default_device() -> torch.device:
    """``cuda`` if a GPU is visible to torch, else ``cpu``. Never hard-code ``.cuda()``."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
