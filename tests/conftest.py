"""Fixtures shared by several test files."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


@pytest.fixture
def experiment_script():
    """Load a script of experiments/ as a module (they are scripts, not a package)."""
    def load(name: str):
        spec = importlib.util.spec_from_file_location(f"experiments_{name}",
                                                      EXPERIMENTS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    return load


@pytest.fixture(autouse=True)
def torch_threads_unchanged():
    """Every test leaves torch's thread count as it found it: a test that set it and kept
    it changed what the tests after it ran (their compiled graphs, their speed)."""
    import torch

    threads = torch.get_num_threads()
    yield
    assert torch.get_num_threads() == threads, "the test changed torch's thread count"
