"""Checkpoints: safetensors + JSON sidecar, validation on load, no code execution."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import pickle
import re

import pytest
import torch

from duel_tutorial import evaluate
from duel_tutorial.checkpoint import (
    PRETRAINED_DIR,
    check_compatible,
    load_checkpoint,
    load_network_state,
    load_policy,
    load_pretrained,
    optimizer_from_tensors,
    optimizer_to_tensors,
    pretrained_card,
    save_checkpoint,
    with_prefix,
)
from duel_tutorial.config import DQNConfig
from duel_tutorial.model import MLPDuelingQNetwork, make_network
from duel_tutorial.train import train

TINY = DQNConfig(total_steps=200, learning_starts=64, batch_size=32, buffer_capacity=500,
                 train_freq=8, gradient_steps=2, target_update_interval=50, device="cpu",
                 checkpoint_interval=100)
SIDECAR = {"format": 1, "step": 7, "network": {"kind": "dueling", "hidden": 64, "n_actions": 2,
                                               "obs_shape": [4]}}


def test_tensors_and_sidecar_round_trip(tmp_path):
    tensors = {"online/w": torch.randn(3, 2), "flag": torch.tensor([True, False]),
               "scalar": torch.tensor(2.5)}
    path = save_checkpoint(tmp_path / "ckpt", tensors, SIDECAR)
    assert path.name == "ckpt.safetensors" and (tmp_path / "ckpt.json").exists()
    loaded, sidecar = load_checkpoint(path)
    assert sidecar == SIDECAR == json.loads((tmp_path / "ckpt.json").read_text())
    for key, value in tensors.items():
        assert torch.equal(loaded[key], value)


def test_a_corrupted_checkpoint_is_a_one_line_error(tmp_path):
    path = save_checkpoint(tmp_path / "ckpt", {"w": torch.zeros(1000)}, SIDECAR)
    path.write_bytes(path.read_bytes()[:500])  # truncated mid-file
    with pytest.raises(ValueError, match="is not a readable safetensors checkpoint") as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value)


class _Exploit:
    """A pickle that runs code when unpickled (what torch.load without weights_only risks)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pickled_file_is_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps({"online/w": _Exploit(str(marker))}))
    with pytest.raises(ValueError, match="is not a readable safetensors checkpoint"):
        load_checkpoint(path)
    assert not marker.exists()


def test_missing_checkpoint_says_what_was_expected(tmp_path):
    with pytest.raises(ValueError, match=r"no checkpoint at .*final\.safetensors"):
        load_checkpoint(tmp_path)


def test_optimizer_state_round_trips(tmp_path):
    torch.manual_seed(0)
    net = MLPDuelingQNetwork(4, 2)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _ in range(3):
        opt.zero_grad()
        net(torch.randn(8, 4)).pow(2).mean().backward()
        opt.step()
    tensors, meta = optimizer_to_tensors(opt)
    path = save_checkpoint(tmp_path / "opt", tensors, {"format": 1, "optimizer": meta})
    loaded, sidecar = load_checkpoint(path)
    clone = MLPDuelingQNetwork(4, 2)
    clone.load_state_dict(net.state_dict())
    opt2 = torch.optim.Adam(clone.parameters(), lr=1.0)
    optimizer_from_tensors(opt2, loaded, sidecar["optimizer"])
    assert opt2.param_groups[0]["lr"] == 1e-3
    x = torch.randn(8, 4)
    for model, optimizer in ((net, opt), (clone, opt2)):
        optimizer.zero_grad()
        model(x).pow(2).mean().backward()
        optimizer.step()
    for a, b in zip(net.parameters(), clone.parameters(), strict=True):
        torch.testing.assert_close(a, b)


def test_wrong_action_count_or_network_kind_is_a_clear_error():
    with pytest.raises(ValueError, match="checkpoint has 2 actions, this environment has 3"):
        check_compatible(SIDECAR, n_actions=3)
    with pytest.raises(ValueError, match="checkpoint network is 'dueling', config asks 'single'"):
        check_compatible(SIDECAR, network="single")
    with pytest.raises(ValueError, match="checkpoint network has hidden width 64, config asks 32"):
        check_compatible(SIDECAR, hidden=32)
    check_compatible(SIDECAR, network="dueling", hidden=64, obs_shape=(4,), n_actions=2)


def test_wrong_shapes_or_keys_are_named_in_one_line():
    state = MLPDuelingQNetwork(4, 2, hidden=32).state_dict()
    with pytest.raises(ValueError, match=r"tensor 'fc1.weight' has shape \(32, 4\), "
                       r"MLPDuelingQNetwork expects \(64, 4\)"):
        load_network_state(MLPDuelingQNetwork(4, 2), state, "checkpoint")
    with pytest.raises(ValueError, match=r"missing.*unexpected"):
        load_network_state(MLPDuelingQNetwork(4, 2), {"net.0.weight": torch.zeros(1)}, "ckpt")


def test_load_policy_returns_the_trained_network(tmp_path):
    result = train(TINY, tmp_path / "run")
    network, config, sidecar = load_policy(tmp_path / "run", device="cpu")
    assert config == TINY and sidecar["step"] == 200 and not network.training
    x = torch.randn(5, 4)
    with torch.no_grad():
        torch.testing.assert_close(network(x), result.network(x))
    tensors, _ = load_checkpoint(tmp_path / "run", "final")
    assert not any(k.startswith("replay/") for k in tensors)  # final is small
    tensors, _ = load_checkpoint(tmp_path / "run", "last")
    assert tensors["replay/obs"].shape == (200, 4)  # last can resume exactly


def test_resume_refuses_a_checkpoint_of_another_architecture(tmp_path):
    train(TINY, tmp_path / "run")
    bigger = dataclasses.replace(TINY, total_steps=300, hidden=32)
    with pytest.raises(ValueError, match="hidden is 64, not 32"):
        train(bigger, tmp_path / "run", resume=True)


def test_an_unknown_pretrained_agent_is_a_clear_error():
    with pytest.raises(ValueError, match="no pretrained agent named 'tetris'; shipped: "):
        load_pretrained("tetris")
    with pytest.raises(ValueError, match="no pretrained agent named 'tetris'"):
        pretrained_card("tetris")


def _run_with_env_id(run, env_id: str) -> None:
    """A run folder with ``final.safetensors``/``final.json`` whose config names ``env_id``."""
    network = make_network(DQNConfig(), (4,), 2)
    config = {**DQNConfig().to_dict(), "env_id": env_id}
    save_checkpoint(run / "final", with_prefix("online", network.state_dict()),
                    {**SIDECAR, "config": config})


def test_a_checkpoints_env_id_never_imports_a_module(tmp_path, monkeypatch, capsys):
    # gymnasium reads 'evilmod:CartPole-v1' as "import evilmod, then make CartPole-v1"
    marker = tmp_path / "pwned"
    (tmp_path / "evilmod.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    _run_with_env_id(tmp_path, "evilmod:CartPole-v1")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))  # as `python -m` puts the current directory
    assert importlib.util.find_spec("evilmod") is not None  # it could have been imported
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main(["."])  # python -m duel_tutorial.evaluate .
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1
    assert "env_id must be a gymnasium id" in err and "'evilmod:CartPole-v1'" in err
    assert "got 'evilmod:CartPole-v1'" in err
    with pytest.raises(ValueError, match="env_id must be a gymnasium id"):
        load_policy(tmp_path, device="cpu")
    assert not marker.exists()


def test_an_env_id_from_the_command_line_never_imports_a_module(tmp_path, monkeypatch, capsys):
    marker = tmp_path / "pwned"
    (tmp_path / "evilmod.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    _run_with_env_id(tmp_path, "CartPole-v1")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main([".", "--env", "evilmod:CartPole-v1", "--device", "cpu"])
    assert exit_info.value.code == 2
    assert "got 'evilmod:CartPole-v1'" in capsys.readouterr().err
    network, _, _ = load_policy(tmp_path, device="cpu")
    with pytest.raises(ValueError, match="got 'evilmod:CartPole-v1'"):
        evaluate.evaluate(network, "evilmod:CartPole-v1", episodes=1)
    assert not marker.exists()


@pytest.mark.parametrize("name", ["../pretrained/pong", "../../x", "/etc/passwd", "Pong",
                                  "pong.json", "", "pong/"])
def test_a_pretrained_name_is_a_plain_name(name):
    assert (PRETRAINED_DIR / "../pretrained/pong.json").is_file()  # a path would find a file
    for load in (load_pretrained, pretrained_card):
        with pytest.raises(ValueError, match=r"a pretrained agent name is lower-case letters.*"
                           rf"got {re.escape(repr(name))}; shipped: \[.*'pong'") as info:
            load(name)
        assert "\n" not in str(info.value)
