"""scripts/export_pretrained.py: what it ships, and what it refuses to ship."""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
import shutil
from pathlib import Path

import pytest
import torch

from duel_tutorial.checkpoint import PRETRAINED_DIR, load_policy
from duel_tutorial.config import DQNConfig, preset
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
TINY_CARTPOLE = DQNConfig(total_steps=300, learning_starts=100, batch_size=32,
                          buffer_capacity=500, checkpoint_interval=0, device="cpu")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export") / "pong"
    train(TINY_PONG, out)
    with (out / "metrics.csv").open("a") as f:  # a row the shipped checkpoint never saw
        f.write("999999,99,21.0,1,0.01,0.0,1\n")
    return out


@pytest.fixture(scope="module")
def cartpole_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export") / "cartpole"
    train(TINY_CARTPOLE, out)
    return out


@pytest.fixture
def package(tmp_path, monkeypatch) -> Path:
    """A copy of ``duel_tutorial/pretrained/`` that the script takes for the package's, so
    that a failing test cannot overwrite the shipped agent."""
    copy = tmp_path / "duel_tutorial" / "pretrained"
    shutil.copytree(PRETRAINED_DIR, copy)
    monkeypatch.setattr(export, "PRETRAINED_DIR", copy)
    return copy


def _hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}


def _rows(path: Path) -> list[list[str]]:
    with path.open(newline="") as f:
        return list(csv.reader(f))


def test_the_shipped_agent_is_the_runs_network_with_its_card(run, tmp_path):
    assert export.main([str(run), "--name", "pong-tiny", "--episodes", "1",
                        "--min-return", "-21", "--out", str(tmp_path)]) == 0
    shipped, config, card = load_policy(tmp_path / "pong-tiny.safetensors", device="cpu")
    trained, _, sidecar = load_policy(run, "final", device="cpu")
    for (name, p), q in zip(shipped.state_dict().items(), trained.state_dict().values(),
                            strict=True):
        assert torch.equal(p, q), name
    assert not shipped.training and config.env_id == "ALE/Pong-v5"
    readable = json.loads((tmp_path / "pong-tiny.json").read_text())
    assert readable["step"] == sidecar["step"] == 120 and readable["frames"] == 480
    assert card["evaluation"] == readable["evaluation"]
    evaluation = readable["evaluation"]
    assert evaluation["episodes"] == 1 and len(evaluation["returns"]) == 1
    assert -21 <= evaluation["mean"] <= 21 and "30 no-op" in evaluation["protocol"]
    assert readable["export"]["device"].startswith("cpu")
    metrics = _rows(tmp_path / "pong-tiny_metrics.csv")
    assert metrics[0] == _rows(run / "metrics.csv")[0]  # the header
    assert metrics[1:] == [r for r in _rows(run / "metrics.csv")[1:] if int(r[0]) <= 120]
    assert b"\r" not in (tmp_path / "pong-tiny_metrics.csv").read_bytes()


def test_a_pong_agent_below_pongs_bar_is_not_shipped(run, tmp_path, capsys):
    assert export.MIN_RETURN == {"ALE/Pong-v5": 19.0}
    assert export.main([str(run), "--episodes", "1", "--out", str(tmp_path)]) == 1
    assert "not shipped: mean" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []


def _refused(argv: list[str], capsys, *, one_line: bool = True) -> str:
    """The error of an export that exits with status 2 (argparse's own errors come after
    the usage line; ours are one line)."""
    with pytest.raises(SystemExit) as info:
        export.main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2 and (err.count("\n") == 1 or not one_line), err
    return err


def test_a_cartpole_run_is_not_shipped_as_pong(cartpole_run, package, capsys):
    before, shipped = _hashes(package), _hashes(PRETRAINED_DIR)
    # the command that overwrote the shipped pong.safetensors
    assert "one of the arguments --out --into-package is required" in _refused(
        [str(cartpole_run), "--episodes", "3"], capsys, one_line=False)
    err = _refused([str(cartpole_run), "--episodes", "3", "--into-package"], capsys)
    assert ("export_pretrained.py: error: --name 'pong' does not fit this run of CartPole-v1: "
            "its agent must be named 'cartpole' or 'cartpole-...'") in err
    assert _hashes(package) == before and _hashes(PRETRAINED_DIR) == shipped


def test_an_export_writes_into_the_package_only_when_asked(cartpole_run, package, tmp_path,
                                                           capsys):
    before = _hashes(package)
    args = [str(cartpole_run), "--name", "cartpole-s0", "--episodes", "1", "--min-return", "0"]
    assert "is inside the package" in _refused([*args, "--out", str(package)], capsys)
    assert "is inside the package" in _refused([*args, "--out", str(package.parent)], capsys)
    assert export.main([*args, "--out", str(tmp_path / "elsewhere")]) == 0
    assert sorted(_hashes(tmp_path / "elsewhere")) == [
        "cartpole-s0.json", "cartpole-s0.safetensors", "cartpole-s0_metrics.csv"]
    assert _hashes(package) == before
    assert export.main([*args, "--into-package"]) == 0
    assert set(_hashes(package)) - set(before) == {
        "cartpole-s0.json", "cartpole-s0.safetensors", "cartpole-s0_metrics.csv"}


def test_a_game_without_a_known_bar_needs_min_return(cartpole_run, tmp_path, capsys):
    err = _refused([str(cartpole_run), "--name", "cartpole", "--episodes", "1",
                    "--out", str(tmp_path)], capsys)
    assert "no known bar for CartPole-v1" in err and "give --min-return" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["../../pong", "pong/../pong", "Pong", "pong.v2"])
def test_an_agent_name_is_a_plain_name(cartpole_run, tmp_path, name, capsys):
    err = _refused([str(cartpole_run), "--name", name, "--min-return", "0",
                    "--out", str(tmp_path)], capsys)
    assert "a pretrained agent name is lower-case letters, digits, '_' and '-'" in err
    assert list(tmp_path.iterdir()) == []
