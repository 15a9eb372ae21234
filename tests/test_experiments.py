"""The summary scripts of experiments/ that are not run by make sweep-test."""

from __future__ import annotations

import csv
import dataclasses
import json

import pytest
import torch

from duel_tutorial.checkpoint import load_checkpoint, load_policy
from duel_tutorial.config import DQNConfig, preset
from duel_tutorial.model import hidden_unit_activity
from duel_tutorial.train import train

SMALL = DQNConfig(total_steps=400, learning_starts=64, batch_size=32, buffer_capacity=1_000,
                  train_freq=8, target_update_interval=50, exploration_fraction=0.5,
                  checkpoint_interval=100, eval_interval=100, eval_episodes=1, device="cpu")


def test_the_pong_fast_summary_keeps_every_seed_up_to_its_checkpoint(tmp_path, capsys,
                                                                   experiment_script):
    pong_fast = experiment_script("pong_fast")
    done, going = tmp_path / "run-s0", tmp_path / "run-s1"
    train(SMALL, done)
    train(dataclasses.replace(SMALL, seed=1), going, stop_at=200)  # still going
    cards = tmp_path / "cards"
    cards.mkdir()
    (cards / "run-s0.json").write_text(json.dumps({
        "step": 400, "evaluation": {"protocol": "p", "seed": 2016, "episodes": 2,
                                    "mean": 9.5, "std": 0.5, "returns": [9.0, 10.0]}}))
    out = tmp_path / "summary"
    assert pong_fast.main([str(done), str(going), "--cards", str(cards), "--bar", "15",
                           "--out", str(out)]) == 0
    meta = json.loads((out / "pong_fast.json").read_text())
    s0, s1 = meta["runs"]
    assert (s0["seed"], s0["steps"], s0["finished"]) == (0, 400, True)
    assert (s1["seed"], s1["steps"], s1["finished"]) == (1, 200, False)
    assert (s0["state"], s1["state"]) == ("finished", "stopped")
    assert s0["final_evaluation"]["evaluation"]["mean"] == 9.5
    assert s1["final_evaluation"] is None and s0["git_commit"] and s0["config"]["seed"] == 0
    assert [(r["event"], r["step"]) for r in s1["sessions"]] == [("start", 0), ("stopped", 200)]
    assert s1["sessions"][0]["compile_update"] is False and s1["sessions"][0]["git_commit"]
    episodes = list(csv.DictReader((out / "pong_fast_episodes.csv").open()))
    assert {r["seed"] for r in episodes} == {"0", "1"}
    assert max(int(r["step"]) for r in episodes if r["seed"] == "1") <= 200
    evals = list(csv.DictReader((out / "pong_fast_eval.csv").open()))
    assert [r["step"] for r in evals if r["seed"] == "0"] == ["100", "200", "300", "400"]
    assert [r["step"] for r in evals if r["seed"] == "1"] == ["100", "200"]
    reached = [r for r in evals if r["seed"] == "0" and float(r["mean"]) >= 15]
    first = s0["first_eval_at_bar"]
    assert (first is None) == (not reached)
    if reached:
        assert first["step"] == int(reached[0]["step"])
    assert "seed 1: 200 of 400 steps (not finished: stopped)" in capsys.readouterr().out
    # Adam's step scale, read from the optimizer state of each run's latest checkpoint
    adam = s0["adam"]
    assert (adam["checkpoint"], s1["adam"]["checkpoint"]) == ("final", "last")
    assert adam["eps"] == SMALL.adam_eps
    tensors, _ = load_checkpoint(done, "final")
    assert adam["updates"] == tensors["optimizer/state/0/step"].item() > 0
    v = tensors["optimizer/state/0/exp_avg_sq"].double() / (1 - 0.999 ** adam["updates"])
    first = next(iter(adam["layers"].values()))  # bias-corrected, as Adam divides by it
    assert first["median_sqrt_v"] == pytest.approx(float(v.sqrt().median()))
    assert list(adam["layers"]) == [name for name, _ in load_policy(done)[0].named_parameters()]
    for layer in adam["layers"].values():
        root = layer["median_sqrt_v"]  # the scale is monotone in sqrt(v): medians agree
        assert layer["median_scale"] == pytest.approx(root / (root + adam["eps"]))
        assert 0 <= layer["share_below_eps"] <= 1 and layer["size"] > 0
    # bad input: one line, exit 2
    assert pong_fast.main([str(tmp_path / "nothing"), "--out", str(out)]) == 2
    assert "holds no checkpoint" in capsys.readouterr().err
    assert pong_fast.main([str(done), str(done), "--out", str(out)]) == 2
    assert "one run per seed" in capsys.readouterr().err
    assert pong_fast.main([str(done), "--observations", "0", "--out", str(out)]) == 2
    assert "--observations must be a positive int; got 0" in capsys.readouterr().err
    assert s0["hidden_units"] is None  # CartPole's MLP: no conv trunk's hidden layer


def test_the_pong_fast_summary_counts_dead_hidden_units_on_replayed_states(
        tmp_path, capsys, experiment_script):
    pong_fast = experiment_script("pong_fast")
    run = tmp_path / "pong-s0"
    train(preset("atari", total_steps=120, num_envs=2, learning_starts=64, batch_size=8,
                 buffer_capacity=400, eval_interval=120, eval_episodes=1,
                 checkpoint_interval=120, device="cpu", torch_threads=1), run)
    out = tmp_path / "summary"
    assert pong_fast.main([str(run), "--observations", "50", "--out", str(out)]) == 0
    units = json.loads((out / "pong_fast.json").read_text())["runs"][0]["hidden_units"]
    assert (units["checkpoint"], units["step"], units["units"], units["observations"]) == (
        "final", 120, 512, 50)
    assert 0 <= units["dead"] <= units["dormant"] <= 512
    assert f"hidden units dead {units['dead']} of 512" in capsys.readouterr().out
    obs = pong_fast.replay_observations(run, "last", 50)
    assert obs.shape == (50, 4, 84, 84) and obs.dtype == torch.uint8
    direct = hidden_unit_activity(load_policy(run, device="cpu")[0], obs)
    assert (direct["dead"], direct["dormant"]) == (units["dead"], units["dormant"])
    (row,) = csv.DictReader((out / "pong_fast_eval.csv").open())  # the trainer's count
    assert 0 <= float(row["dead_units"]) <= float(row["dormant_units"]) <= 512
    with pytest.raises(ValueError, match="keeps no replay; expected a checkpoint saved"):
        pong_fast.replay_observations(run, "final", 50)


def test_the_adam_eps_test_trains_fresh_networks_on_one_fixed_replay(tmp_path, capsys,
                                                                    experiment_script):
    adam_eps_units = experiment_script("adam_eps_units")
    assert adam_eps_units.main(["--eps", "1e-8", "1e-3", "--seeds", "2", "--updates", "4",
                                "--every", "2", "--transitions", "200", "--lr", "1e-5",
                                "--observations", "64", "--out", str(tmp_path)]) == 0
    rows = list(csv.DictReader((tmp_path / "adam_eps_units.csv").open()))
    assert [(r["adam_eps"], r["seed"], r["update"]) for r in rows] == [
        (eps, seed, update) for eps in ("1e-08", "0.001") for seed in ("0", "1")
        for update in ("0", "2", "4")]
    assert all(0 <= int(r["dead"]) <= int(r["dormant"]) <= 512 for r in rows)
    assert all((r["loss"] == "") == (r["update"] == "0") for r in rows)
    # update 0 is the freshly seeded network: the same for both epsilons
    first = {(r["seed"], r["dead"]) for r in rows if r["update"] == "0"}
    assert len(first) == 2
    meta = json.loads((tmp_path / "adam_eps_units.json").read_text())
    assert meta["replay"]["transitions"] == 200 and meta["git_commit"]
    assert meta["config"]["lr"] == 1e-5
    assert "eps 0.001, seed 1:" in capsys.readouterr().out
    for bad in (["--eps", "0"], ["--lr", "-1"]):
        with pytest.raises(SystemExit):
            adam_eps_units.main([*bad, "--out", str(tmp_path)])
