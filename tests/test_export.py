"""scripts/export_pretrained.py: what it ships, and what it refuses to ship."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest
import torch

from duel_tutorial.checkpoint import load_policy
from duel_tutorial.config import preset
from duel_tutorial.train import train

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("export_pretrained",
                                               ROOT / "scripts" / "export_pretrained.py")
assert _spec is not None and _spec.loader is not None
export = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(export)

TINY_PONG = preset("atari", total_steps=120, num_envs=2, learning_starts=64, batch_size=8,
                   buffer_capacity=200, eval_interval=0, checkpoint_interval=0, device="cpu",
                   torch_threads=1)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export") / "pong"
    train(TINY_PONG, out)
    with (out / "metrics.csv").open("a") as f:  # a row the shipped checkpoint never saw
        f.write("999999,99,21.0,1,0.01,0.0,1\n")
    return out


def _rows(path: Path) -> list[list[str]]:
    with path.open(newline="") as f:
        return list(csv.reader(f))


def test_the_shipped_agent_is_the_runs_network_with_its_card(run, tmp_path):
    assert export.main([str(run), "--name", "tiny", "--episodes", "1", "--min-return", "-21",
                        "--out", str(tmp_path)]) == 0
    shipped, config, card = load_policy(tmp_path / "tiny.safetensors", device="cpu")
    trained, _, sidecar = load_policy(run, "final", device="cpu")
    for (name, p), q in zip(shipped.state_dict().items(), trained.state_dict().values(),
                            strict=True):
        assert torch.equal(p, q), name
    assert not shipped.training and config.env_id == "ALE/Pong-v5"
    readable = json.loads((tmp_path / "tiny.json").read_text())
    assert readable["step"] == sidecar["step"] == 120 and readable["frames"] == 480
    assert card["evaluation"] == readable["evaluation"]
    evaluation = readable["evaluation"]
    assert evaluation["episodes"] == 1 and len(evaluation["returns"]) == 1
    assert -21 <= evaluation["mean"] <= 21 and "30 no-op" in evaluation["protocol"]
    assert readable["export"]["device"].startswith("cpu")
    metrics = _rows(tmp_path / "tiny_metrics.csv")
    assert metrics[0] == _rows(run / "metrics.csv")[0]  # the header
    assert metrics[1:] == [r for r in _rows(run / "metrics.csv")[1:] if int(r[0]) <= 120]
    assert b"\r" not in (tmp_path / "tiny_metrics.csv").read_bytes()


def test_an_agent_below_the_bar_is_not_shipped(run, tmp_path, capsys):
    assert export.main([str(run), "--episodes", "1", "--min-return", "19",
                        "--out", str(tmp_path)]) == 1
    assert "not shipped: mean" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []
