"""Sweeps: a tiny grid on a local Ray instance (2 games x 2 networks x 2 seeds, a few
hundred steps each), and the trial rules that make a sweep resumable (no Ray needed)."""

from __future__ import annotations

import csv
import dataclasses
import json

import pytest

from duel_tutorial.config import preset
from duel_tutorial.sweep import grid, run_trial, trial_name

pytest.importorskip("minatar")

TINY = preset("minatar", total_steps=300, learning_starts=100, buffer_capacity=1_000,
              target_update_interval=50, eval_interval=0, checkpoint_interval=100,
              device="cpu")


def test_the_grid_is_every_combination_with_its_own_run_directory():
    configs = grid(TINY, ["MinAtar/Breakout-v1", "MinAtar/Freeway-v1"], ["dueling", "single"],
                   [0, 1])
    assert len(configs) == 8 and len({trial_name(c) for c in configs}) == 8
    assert trial_name(configs[0]) == "MinAtar-Breakout-v1-dueling-s0"


def test_a_trial_resumes_after_a_failure_and_is_not_trained_twice(tmp_path):
    from duel_tutorial.train import train

    config = TINY
    out = tmp_path / trial_name(config)
    train(dataclasses.replace(config, total_steps=200), out)  # as if it failed at step 200
    (out / "final.safetensors").unlink()  # as if it had stopped before the end
    (out / "final.json").unlink()
    row = run_trial(config, tmp_path, eval_episodes=2)
    assert row["resumed"] and row["steps"] == 300
    before = (out / "final.safetensors").stat().st_mtime_ns
    again = run_trial(config, tmp_path, eval_episodes=2)
    assert not again["resumed"] and (out / "final.safetensors").stat().st_mtime_ns == before


@pytest.mark.ray
def test_a_tiny_sweep_runs_on_a_local_ray_instance(tmp_path, experiment_script):
    pytest.importorskip("ray")
    from duel_tutorial.sweep import main

    argv = ["--out", str(tmp_path / "sweep"), "--games", "Breakout", "Freeway",
            "--networks", "dueling", "single", "--seeds", "0", "1", "--eval-games", "2",
            "--total-steps", "300", "--learning-starts", "100", "--buffer-capacity", "1000",
            "--target-update-interval", "50", "--checkpoint-interval", "100",
            "--eval-interval", "0", "--device", "cpu"]
    assert main(argv) == 0
    rows = list(csv.DictReader((tmp_path / "sweep" / "results.csv").open()))
    assert len(rows) == 8 and {r["network"] for r in rows} == {"dueling", "single"}
    assert all(int(r["steps"]) == 300 for r in rows)
    record = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert record["trials"] == 8 and record["ray_address"] == "local" and record["git_commit"]
    for row in rows:  # every trial has its own resumable run directory with provenance
        sidecar = json.loads((tmp_path / "sweep" / row["name"] / "final.json").read_text())
        assert sidecar["config"]["seed"] == int(row["seed"]) and sidecar["versions"]
    assert main(argv) == 0  # run again: every trial is read back, none trained again
    rows_again = list(csv.DictReader((tmp_path / "sweep" / "results.csv").open()))
    assert [r["eval_mean"] for r in rows_again] == [r["eval_mean"] for r in rows]
    # the summary a chapter loads (experiments/minatar_sweep.py)
    summary = experiment_script("minatar_sweep")
    out = tmp_path / "summary"
    assert summary.main([str(tmp_path / "sweep"), "--out", str(out), "--bin", "100",
                         "--random-episodes", "2"]) == 0
    runs = list(csv.DictReader((out / "minatar_runs.csv").open()))
    assert len(runs) == 8 and {r["eval_mean"] for r in runs} == {r["eval_mean"] for r in rows}
    curves = list(csv.DictReader((out / "minatar_curves.csv").open()))
    assert len(curves) == 8 * 3 and {int(c["step"]) for c in curves} == {100, 200, 300}
    meta = json.loads((out / "minatar.json").read_text())
    assert meta["grid"] == {"games": ["Breakout", "Freeway"], "networks": ["dueling", "single"],
                            "seeds": [0, 1]}
    assert len(meta["trials"]) == 8 and "configs" not in meta["sweep"]
    assert {r["game"] for r in csv.DictReader((out / "minatar_random.csv").open())} == {
        "Breakout", "Freeway"}
