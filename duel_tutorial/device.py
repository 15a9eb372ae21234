"""Pick where tensors live: CUDA when available, else the CPU."""

from __future__ import annotations

import torch


def default_device() -> torch.device:
    """``cuda`` if a GPU is visible to torch, else ``cpu``. Never hard-code ``.cuda()``."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> :func:`default_device`; otherwise the named device, checked."""
    if name == "auto":
        return default_device()
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N'; got {name!r}"
                         ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked, but torch sees no CUDA device; use 'auto' "
                         "or 'cpu'")
    return device
