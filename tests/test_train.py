"""The training loop, its config and its command line (tiny runs, seconds each)."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from duel_tutorial.checkpoint import load_checkpoint, load_policy, save_checkpoint
from duel_tutorial.config import DQNConfig, add_config_arguments, preset
from duel_tutorial.envs import make_atari_vector_env, make_env
from duel_tutorial.evaluate import evaluate
from duel_tutorial.evaluate import main as evaluate_main
from duel_tutorial.learn import train_phase
from duel_tutorial.model import (
    DuelingQNetwork,
    MLPDuelingQNetwork,
    MLPQNetwork,
    make_network,
    matched_hidden,
    scale_combined_gradient,
)
from duel_tutorial.replay import FrameReplayBuffer, ReplayBuffer
from duel_tutorial.run import (
    METRICS_COLUMNS,
    RESUMABLE_OVERRIDES,
    TIMING_COLUMNS,
    MetricsLog,
    copy_log,
    load_metrics,
    load_sessions,
)
from duel_tutorial.targets import dqn_loss
from duel_tutorial.train import (
    TrainingDiverged,
    build_parser,
    chosen_preset,
    main,
    train,
)

ROOT = Path(__file__).resolve().parents[1]
TINY = DQNConfig(total_steps=300, learning_starts=64, batch_size=32, buffer_capacity=1_000,
                 train_freq=8, gradient_steps=2, target_update_interval=50,
                 exploration_fraction=0.5, checkpoint_interval=100, device="cpu")
TINY_FLAGS = ["--learning-starts", "64", "--batch-size", "32", "--buffer-capacity", "1000",
              "--train-freq", "8", "--gradient-steps", "2", "--target-update-interval", "50",
              "--device", "cpu", "--no-progress"]


def _n_params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


# --- config -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"lr": -1e-3}, "DQNConfig.lr must be a finite number > 0; got -0.001"),
        ({"buffer_capacity": 32}, "DQNConfig.buffer_capacity must be >= batch_size (64); got 32"),
        ({"gamma": 1.5}, "DQNConfig.gamma must be in [0, 1]; got 1.5"),
        ({"network": "triple"}, "DQNConfig.network must be one of"),
        ({"epsilon_end": 0.5, "epsilon_start": 0.1}, "DQNConfig.epsilon_end must be <="),
        ({"batch_size": 2.5}, "DQNConfig.batch_size must be an int; got 2.5"),
        ({"n_step": 0}, "DQNConfig.n_step must be >= 1; got 0"),
        ({"n_step": 3}, "DQNConfig.n_step > 1 needs the frame replay of an ALE/... env id; "
                        "got n_step=3 with env_id='CartPole-v1'"),
    ],
)
def test_config_rejects_out_of_range_values_in_one_line(override, message):
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        DQNConfig(**override)
    assert "\n" not in str(info.value)


def test_config_round_trips_through_a_dict():
    config = DQNConfig(seed=3, network="single", max_grad_norm=float("inf"))
    data = json.loads(json.dumps(config.to_dict()))
    assert DQNConfig.from_dict(data) == config
    with pytest.raises(ValueError, match="unknown DQNConfig fields"):
        DQNConfig.from_dict({**data, "learning_rate": 0.1})


def test_every_config_field_has_a_help_text_and_a_source():
    for f in dataclasses.fields(DQNConfig):
        assert f.metadata.get("help") and f.metadata.get("source"), f.name


def test_cli_help_lists_every_config_field():
    text = build_parser().format_help()
    for f in dataclasses.fields(DQNConfig):
        assert "--" + f.name.replace("_", "-") in text, f.name


def test_cli_flags_become_config_overrides():
    import argparse

    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    args = parser.parse_args(["--env", "Acrobot-v1", "--lr", "0.01", "--no-double-dqn",
                              "--network", "single"])
    from duel_tutorial.config import config_overrides

    assert config_overrides(args) == {"env_id": "Acrobot-v1", "lr": 0.01, "double_dqn": False,
                                      "network": "single"}


# --- building blocks --------------------------------------------------------------------


def test_unknown_env_id_is_a_one_line_error():
    with pytest.raises(ValueError, match="unknown environment id 'CartPol-v1'") as info:
        make_env("CartPol-v1")
    assert "\n" not in str(info.value) and "pprint_registry" in str(info.value)


def test_cli_reports_bad_input_in_one_line(capsys, tmp_path):
    with pytest.raises(SystemExit) as info:
        main(["--env", "NoSuchEnv-v0", "--out", str(tmp_path / "run"), "--no-progress"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown environment id 'NoSuchEnv-v0'" in err
    with pytest.raises(SystemExit):
        main(["--lr", "-1", "--out", str(tmp_path / "run"), "--no-progress"])
    assert "DQNConfig.lr must be a finite number > 0" in capsys.readouterr().err


def test_single_stream_network_matches_the_dueling_parameter_count():
    assert matched_hidden(4, 2, 64) == 127
    dueling = make_network(DQNConfig(network="dueling"), (4,), 2)
    single = make_network(DQNConfig(network="single"), (4,), 2)
    assert isinstance(dueling, MLPDuelingQNetwork) and isinstance(single, MLPQNetwork)
    assert (_n_params(dueling), _n_params(single)) == (8_835, 8_831)
    for hidden, n_actions in [(32, 3), (128, 6), (256, 2)]:
        d = _n_params(make_network(DQNConfig(hidden=hidden), (8,), n_actions))
        s = _n_params(make_network(DQNConfig(hidden=hidden, network="single"), (8,), n_actions))
        assert abs(d - s) / d < 0.01


# --- the loop ---------------------------------------------------------------------------


def test_same_seed_same_metrics_on_cpu():
    a = train(TINY)
    b = train(TINY)
    assert len(a.episodes) > 5
    def untimed(rows):  # str() so that NaN losses (before learning) compare equal
        return [{k: str(v) for k, v in row.items() if k not in TIMING_COLUMNS} for row in rows]

    assert untimed(a.episodes) == untimed(b.episodes)
    c = train(dataclasses.replace(TINY, seed=1))
    assert [r["return"] for r in c.episodes] != [r["return"] for r in a.episodes]


def test_train_restores_torch_threads():
    before = torch.get_num_threads()
    train(dataclasses.replace(TINY, total_steps=70, torch_threads=1))
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("num_envs", [1, 3])
def test_stored_next_obs_is_the_real_last_observation_not_the_reset_one(num_envs):
    config = dataclasses.replace(TINY, total_steps=240, num_envs=num_envs, double_dqn=True)
    result = train(config)
    data = result.buffer.state_dict()
    done = data["terminated"] | data["truncated"]
    assert done.any()
    # Rows are stored env 0, ..., env n-1 at each step: transition t+n is the same env's next.
    same_env_next = data["obs"][num_envs:]
    follows = np.all(data["next_obs"][:-num_envs] == same_env_next, axis=1)
    assert follows[~done[:-num_envs]].all()  # within an episode, s' is the next s
    assert not follows[done[:-num_envs]].any()  # after the end, the next s is a reset one
    # CartPole terminates when the pole leaves +-12 deg or the cart +-2.4: the real s' shows it
    final = data["next_obs"][data["terminated"]]
    assert np.all((np.abs(final[:, 2]) > 0.2094) | (np.abs(final[:, 0]) > 2.4))


def test_run_directory_has_metrics_and_checkpoints(tmp_path):
    out = tmp_path / "run"
    result = train(TINY, out)
    metrics = load_metrics(out)
    assert list(metrics) == ["step", "episode", "return", "length", "epsilon", "loss", "sps",
                             "time_s"]
    assert (np.diff(metrics["time_s"]) >= 0).all() and metrics["time_s"][-1] > 0
    assert metrics["episode"].tolist() == list(range(1, len(result.episodes) + 1))
    assert np.array_equal(metrics["return"], result.returns())
    for name in ("last", "final"):
        sidecar = json.loads((out / f"{name}.json").read_text())
        assert sidecar["step"] == 300 and sidecar["metrics_rows"] == len(result.episodes)
        assert sidecar["config"] == TINY.to_dict()
        assert {"git_commit", "versions", "device", "cpu", "wall_time_s"} <= set(sidecar)
    with pytest.raises(ValueError, match="already holds a run"):
        train(TINY, out)


def test_periodic_greedy_evaluations_go_to_eval_csv(tmp_path):
    config = dataclasses.replace(TINY, eval_interval=100, eval_episodes=2)
    result = train(config, tmp_path / "run")
    evals = load_metrics(tmp_path / "run", "eval.csv")
    assert evals["step"].tolist() == [100, 200, 300] == [e["step"] for e in result.evals]
    assert np.array_equal(evals["mean"], [e["mean"] for e in result.evals])
    assert np.all(evals["min"] <= evals["max"])
    assert (np.diff(evals["time_s"]) > 0).all()  # the wall clock of each evaluation


def test_evaluations_count_dead_hidden_units_without_changing_the_run(tmp_path):
    config = dataclasses.replace(ATARI_TINY, eval_interval=120, eval_episodes=1,
                                 total_steps=240)
    with_evals = train(config, tmp_path / "a")
    evals = load_metrics(tmp_path / "a", "eval.csv")
    assert evals["step"].tolist() == [120, 240]
    assert ((0 <= evals["dead_units"]) & (evals["dead_units"] <= evals["dormant_units"])
            & (evals["dormant_units"] <= 512)).all()
    assert [e["dead_units"] for e in with_evals.evals] == evals["dead_units"].tolist()
    # the count draws from the replay with a generator of its own: the same run without
    # evaluations ends with the same weights
    without = train(dataclasses.replace(config, eval_interval=0))
    for a, b in zip(with_evals.network.parameters(), without.network.parameters(),
                    strict=True):
        assert torch.equal(a, b)
    # a network without that hidden layer (CartPole's MLP) logs NaN
    plain = load_metrics(train(dataclasses.replace(TINY, eval_interval=150, eval_episodes=1),
                               tmp_path / "b").out_dir, "eval.csv")
    assert np.isnan(plain["dead_units"]).all() and np.isnan(plain["dormant_units"]).all()


def test_time_s_is_the_run_s_wall_clock_across_sessions(tmp_path):
    """metrics.csv's and eval.csv's time_s go on from where the last session's checkpoint
    left them, so a resumed run's learning curve has one time axis."""
    out = tmp_path / "run"
    config = dataclasses.replace(TINY, total_steps=400, eval_interval=100, eval_episodes=1)
    train(config, out, stop_at=200)
    saved = json.loads((out / "last.json").read_text())["wall_time_s"]
    first = load_metrics(out)
    train(config, out, resume=True)
    metrics, evals = load_metrics(out), load_metrics(out, "eval.csv")
    later = metrics["time_s"][len(first["step"]):]
    assert len(later) and (later >= saved).all() and (np.diff(metrics["time_s"]) >= 0).all()
    assert (np.diff(evals["time_s"]) > 0).all() and evals["step"].tolist() == [100, 200, 300, 400]
    final = json.loads((out / "final.json").read_text())["wall_time_s"]
    assert metrics["time_s"][-1] <= final


def test_a_log_from_before_time_s_resumes_with_its_own_columns(tmp_path):
    out = tmp_path / "run"
    config = dataclasses.replace(TINY, total_steps=400)
    train(config, out, stop_at=200)
    path = out / "metrics.csv"
    old = [",".join(line.split(",")[:-1]) for line in path.read_text().splitlines()]
    path.write_text("\n".join(old) + "\n")  # as written before the time_s column
    train(config, out, resume=True)
    metrics = load_metrics(out)
    assert "time_s" not in metrics and metrics["step"][-1] > 300
    path.write_text("step,epis")  # a header cut short: the log starts again
    MetricsLog(path, METRICS_COLUMNS).close()
    assert path.read_text() == ",".join(METRICS_COLUMNS) + "\n"
    path.write_text("step,episode,surprise\n")
    with pytest.raises(ValueError, match=r"has columns \['step', 'episode', 'surprise'\]"):
        MetricsLog(path, METRICS_COLUMNS, keep_rows=0)


def test_resume_refuses_a_changed_config(tmp_path):
    out = tmp_path / "run"
    train(dataclasses.replace(TINY, total_steps=100), out)
    with pytest.raises(ValueError, match=re.escape("where lr is 0.0023, not 0.1")):
        train(dataclasses.replace(TINY, total_steps=200, lr=0.1), out, resume=True)


def test_cli_trains_then_evaluate_prints_mean_and_std(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["--env", "CartPole-v1", "--seed", "0", "--out", str(out), "--total-steps",
                 "200", *TINY_FLAGS]) == 0
    assert "to step 200" in capsys.readouterr().out
    assert evaluate_main([str(out), "--episodes", "3"]) == 0
    line = capsys.readouterr().out.strip()
    assert "3 greedy episodes" in line and "mean return" in line and "std" in line
    with pytest.raises(SystemExit):
        evaluate_main([str(out), "--env", "Acrobot-v1"])
    assert "checkpoint has 2 actions, this environment has 3" in capsys.readouterr().err


def test_resume_after_sigkill_continues_the_log(tmp_path):
    """Start the CLI, kill -9 it after its first checkpoint, resume, check the log."""
    out = tmp_path / "run"
    base = [sys.executable, "-m", "duel_tutorial.train", "--env", "CartPole-v1", "--seed", "0",
            "--out", str(out), "--checkpoint-interval", "150", *TINY_FLAGS]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([*base, "--total-steps", "1000000"], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not (out / "last.json").exists():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "no checkpoint within 60 s"
        time.sleep(0.02)
    time.sleep(0.3)  # let it log episodes past the checkpoint
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    assert not (out / "final.json").exists()
    checkpoint = json.loads((out / "last.json").read_text())
    before = (out / "metrics.csv").read_text().splitlines()
    total = checkpoint["step"] + 600

    resumed = subprocess.run([*base, "--total-steps", str(total), "--resume"], cwd=tmp_path,
                             env=env, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    after = (out / "metrics.csv").read_text().splitlines()
    kept = checkpoint["metrics_rows"] + 1  # + header
    assert after[:kept] == before[:kept]  # the log up to the checkpoint is untouched
    assert b"\r" not in (out / "metrics.csv").read_bytes()  # one line ending throughout
    metrics = load_metrics(out)
    assert metrics["episode"].tolist() == list(range(1, len(metrics["episode"]) + 1))
    assert np.all(np.diff(metrics["step"]) > 0)
    assert metrics["step"][checkpoint["metrics_rows"]] > checkpoint["step"]  # new rows after
    final = json.loads((out / "final.json").read_text())
    assert final["step"] == total and final["metrics_rows"] == len(metrics["step"])


@pytest.mark.parametrize("double", [False, True])
def test_a_one_step_training_phase_is_one_dqn_loss_update(double):
    """train_phase's batched target forward changes nothing: compare with dqn_loss."""
    config = dataclasses.replace(TINY, gradient_steps=1, double_dqn=double, max_grad_norm=0.5)
    assert config.batch_size * 4 > 100  # more than stored: fine for a phase of 4 steps
    torch.manual_seed(0)
    nets = [make_network(config, (4,), 2) for _ in range(2)]  # online, target
    copies = [copy.deepcopy(net) for net in nets]
    buffers = []
    for _ in range(2):
        buffer = ReplayBuffer(100, (4,), np.float32, seed=3)
        rng = np.random.default_rng(0)
        buffer.add(rng.normal(size=(100, 4)).astype(np.float32), rng.integers(0, 2, 100),
                   np.ones(100), rng.normal(size=(100, 4)).astype(np.float32),
                   rng.random(100) < 0.3, rng.random(100) < 0.1)
        buffers.append(buffer)
    optimizers = [torch.optim.Adam(n.parameters(), lr=0.01) for n in (nets[0], copies[0])]
    four_steps = dataclasses.replace(config, gradient_steps=4)
    train_phase(*copy.deepcopy([*nets, optimizers[0], buffers[0]]), four_steps, torch.device("cpu"))

    loss = train_phase(nets[0], nets[1], optimizers[0], buffers[0], config, torch.device("cpu"))
    batch = buffers[1].sample(config.batch_size)
    expected = dqn_loss(copies[0], copies[1], batch, config.gamma, double=double,
                        loss=config.loss)
    optimizers[1].zero_grad()
    expected.backward()
    torch.nn.utils.clip_grad_norm_(copies[0].parameters(), config.max_grad_norm)
    optimizers[1].step()
    torch.testing.assert_close(loss, expected.detach())
    for a, b in zip(nets[0].parameters(), copies[0].parameters(), strict=True):
        torch.testing.assert_close(a, b)


# --- Atari ------------------------------------------------------------------------------

ATARI_TINY = preset("atari", total_steps=240, num_envs=2, learning_starts=64, batch_size=8,
                    buffer_capacity=400, target_update_interval=40, eval_interval=0,
                    checkpoint_interval=120, device="cpu", torch_threads=1)


def test_a_bf16_atari_run_learns_with_float32_weights():
    result = train(dataclasses.replace(ATARI_TINY, total_steps=120, update_precision="bf16"))
    weights = result.network.conv[0].weight
    assert weights.dtype == torch.float32 and weights.is_contiguous(
        memory_format=torch.channels_last)
    assert all(torch.isfinite(p).all() for p in result.network.parameters())
    assert np.isfinite([r["loss"] for r in result.episodes if not np.isnan(r["loss"])]).all()


def test_the_atari_preset_is_the_papers_recipe():
    c = preset("atari")
    assert c.env_id == "ALE/Pong-v5" and c.network == "dueling" and c.aggregation == "mean"
    assert c.double_dqn and c.loss == "huber" and c.max_grad_norm == 10.0
    assert c.trunk_grad_scale == pytest.approx(1 / np.sqrt(2))
    assert c.tau == 1.0 and c.epsilon_schedule == "linear"
    assert (c.batch_size, c.gamma, c.train_freq // c.gradient_steps) == (32, 0.99, 4)


def test_combined_gradient_is_rescaled_below_the_streams_only():
    torch.manual_seed(0)
    plain = make_network(ATARI_TINY, (4, 84, 84), 6)
    scaled = copy.deepcopy(plain)
    scale_combined_gradient(scaled, 0.5)
    obs = torch.randint(0, 256, (3, 4, 84, 84), dtype=torch.uint8)
    for net in (plain, scaled):
        net(obs).square().sum().backward()
    grads = {name: p.grad for name, p in plain.named_parameters()}
    for name, p in scaled.named_parameters():
        below = name.startswith(("conv", "lin"))
        torch.testing.assert_close(p.grad, grads[name] * (0.5 if below else 1.0))
    with torch.no_grad():
        torch.testing.assert_close(scaled(obs), plain(obs))  # forward unchanged
    with pytest.raises(ValueError, match="needs a DuelingQNetwork; got MLPQNetwork"):
        scale_combined_gradient(MLPQNetwork(4, 2), 0.5)


def test_atari_training_runs_resumes_and_keeps_its_frame_replay(tmp_path):
    out = tmp_path / "pong"
    first = train(dataclasses.replace(ATARI_TINY, total_steps=120), out)
    assert isinstance(first.buffer, FrameReplayBuffer) and first.buffer.written == 61
    assert isinstance(first.network, DuelingQNetwork) and first.network.n_actions == 6
    resumed = train(ATARI_TINY, out, resume=True)
    # 60 more vector steps after a fresh reset (one start frame): 61 + 1 + 60 slots
    assert resumed.steps == 240 and resumed.buffer.written == 122
    state = resumed.buffer.state_dict()
    assert np.array_equal(state["frames"][:, :61], first.buffer.state_dict()["frames"][:, :61])
    sidecar = json.loads((out / "final.json").read_text())
    assert sidecar["network"]["obs_shape"] == [4, 84, 84] and sidecar["step"] == 240


def test_an_n_step_atari_run_learns_from_n_step_batches(monkeypatch):
    import duel_tutorial.learn as learn_module

    seen = []
    real = learn_module.dqn_loss

    def spy(online, target_net, batch, gamma, **kwargs):
        seen.append(batch.discount)  # an NStepBatch: a plain Batch has no discount
        return real(online, target_net, batch, gamma, **kwargs)

    monkeypatch.setattr(learn_module, "dqn_loss", spy)
    result = train(dataclasses.replace(ATARI_TINY, total_steps=120, n_step=3))
    assert seen and all(d.shape == (ATARI_TINY.batch_size,) for d in seen)
    gamma = ATARI_TINY.gamma
    powers = np.array([gamma**m for m in (1, 2, 3)])
    assert all(np.isclose(d.numpy()[:, None], powers).any(1).all() for d in seen)
    assert result.steps == 120


def test_sticky_actions_while_training_reach_the_emulator(monkeypatch):
    """repeat_action_probability trains on sticky actions (Machado et al., 2018): the same
    seed then plays a different game; it is an Atari setting, in [0, 1)."""
    import duel_tutorial.envs as envs_module

    seen = []
    real = envs_module.make_atari_vector_env

    def spy(*args, **kwargs):
        seen.append(kwargs.get("repeat_action_probability"))
        return real(*args, **kwargs)

    monkeypatch.setattr(envs_module, "make_atari_vector_env", spy)
    config = dataclasses.replace(ATARI_TINY, total_steps=120, learning_starts=100)
    plain = train(config)
    sticky = train(dataclasses.replace(config, repeat_action_probability=0.25))
    assert seen == [0.0, 0.25]
    frames = [r.buffer.state_dict()["frames"] for r in (plain, sticky)]
    assert not np.array_equal(*frames)
    with pytest.raises(ValueError, match=r"sticky actions.*is an Atari setting"):
        DQNConfig(repeat_action_probability=0.25)
    with pytest.raises(ValueError, match=re.escape("repeat_action_probability must be in "
                                                   "[0, 1)")):
        preset("atari", repeat_action_probability=1.0)


def test_atari_evaluation_plays_one_full_game_per_episode():
    torch.manual_seed(0)
    network = make_network(ATARI_TINY, (4, 84, 84), 6)
    returns = evaluate(network, "ALE/Pong-v5", episodes=2, seed=0)
    assert returns.shape == (2,) and np.all(returns == np.round(returns))
    assert np.all(returns <= -18)  # an untrained network loses (almost) every point of a game


def test_sticky_actions_reach_the_atari_emulator_and_are_refused_elsewhere(monkeypatch):
    import duel_tutorial.evaluate as evaluate_module

    seen = {}

    class Built(Exception):  # stop once the env is built: no need to play a game
        pass

    def spy(*args, **kwargs):
        make_atari_vector_env(*args, **kwargs).close()  # the settings are valid
        seen.update(kwargs)
        raise Built

    monkeypatch.setattr(evaluate_module, "make_atari_vector_env", spy)
    torch.manual_seed(0)
    network = make_network(ATARI_TINY, (4, 84, 84), 6)
    with pytest.raises(Built):
        evaluate(network, "ALE/Pong-v5", episodes=1, seed=0, repeat_action_probability=0.25)
    assert seen["repeat_action_probability"] == 0.25 and seen["train"] is False
    with pytest.raises(ValueError, match="an Atari setting"):
        evaluate(MLPDuelingQNetwork(4, 2), "CartPole-v1", 1, repeat_action_probability=0.25)
    with pytest.raises(ValueError, match=re.escape("in [0, 1); got 1.5")):
        evaluate(network, "ALE/Pong-v5", 1, repeat_action_probability=1.5)


# --- a run directory is never lost or blocked (each test reproduces one failure) ------


def _start_cli(out: Path, *flags: str) -> subprocess.Popen:
    """The training CLI in a child process, on a run that would take far longer than a test."""
    command = [sys.executable, "-m", "duel_tutorial.train", "--env", "CartPole-v1", "--seed",
               "0", "--out", str(out), "--total-steps", "1000000", *TINY_FLAGS, *flags]
    return subprocess.Popen(command, cwd=out.parent, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(path: Path, proc: subprocess.Popen, rows: int = 0) -> None:
    """Until ``path`` exists (and, for a CSV, has ``rows`` data rows), or fail."""
    deadline = time.monotonic() + 60
    while not (path.exists() and len(path.read_text().splitlines()) > rows):
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, f"no {path.name} within 60 s"
        time.sleep(0.02)


def test_extending_total_steps_on_resume_keeps_the_schedules(tmp_path):
    """--total-steps on --resume moves only the end: epsilon and lr keep their horizon."""
    out = tmp_path / "run"
    train(dataclasses.replace(TINY, total_steps=200), out)  # epsilon floor at step 100
    train(dataclasses.replace(TINY, total_steps=1_000), out, resume=True)
    metrics = load_metrics(out)
    after = metrics["step"] > 200
    assert after.any() and np.all(metrics["epsilon"][after] == TINY.epsilon_end)
    final = json.loads((out / "final.json").read_text())
    assert final["schedule_horizon"] == 200 and final["step"] == 1_000
    assert final["optimizer"]["param_groups"][0]["lr"] == 0.0  # annealed over the 200 steps


def test_stop_at_ends_a_session_part_way_through_the_same_run(tmp_path):
    """A session stopped at a step is the start of the whole run (same episodes, same
    schedules) and resumes to the end; the CLI exits 0 and says how to resume."""
    whole = train(dataclasses.replace(TINY, total_steps=400))
    out = tmp_path / "run"
    part = train(dataclasses.replace(TINY, total_steps=400), out, stop_at=200)
    assert part.interrupted and part.steps == 200 and not (out / "final.json").exists()
    assert len(part.episodes) > 3
    drop = lambda rows: [{k: v for k, v in r.items() if k not in TIMING_COLUMNS}  # noqa: E731
                         for r in rows]
    np.testing.assert_equal(drop(part.episodes), drop(whole.episodes[:len(part.episodes)]))
    rest = train(dataclasses.replace(TINY, total_steps=400), out, resume=True)
    assert not rest.interrupted and rest.steps == 400
    assert json.loads((out / "final.json").read_text())["schedule_horizon"] == 400
    with pytest.raises(ValueError, match="stop_at must be a positive number of steps; got 0"):
        train(TINY, stop_at=0)
    cli = tmp_path / "cli"
    assert main([*TINY_FLAGS, "--total-steps", "400", "--out", str(cli), "--stop-at", "200"]) == 0
    assert json.loads((cli / "last.json").read_text())["step"] == 200


def test_the_resumable_overrides_leave_the_algorithm_unchanged(tmp_path):
    """Two runs resumed from the same checkpoint, one of them with every resumable field
    changed (torch_threads and compile_update aside: a thread count or a compiled update
    may change floating-point rounding), log the same episodes."""
    assert set(RESUMABLE_OVERRIDES) == {"total_steps", "checkpoint_interval",
                                        "checkpoint_replay", "device", "torch_threads",
                                        "compile_update"}
    runs = {}
    for name, changes in (("same", {}), ("changed", {"checkpoint_interval": 64,
                                                     "checkpoint_replay": False,
                                                     "device": "cpu"})):
        out = tmp_path / name
        train(dataclasses.replace(TINY, total_steps=200, device="auto"), out)
        train(dataclasses.replace(TINY, total_steps=400, **{"device": "auto", **changes}), out,
              resume=True)
        runs[name] = {k: v for k, v in load_metrics(out).items() if k not in TIMING_COLUMNS}
    assert len(runs["same"]["step"]) > 5 and runs["same"]["step"][-1] > 300
    np.testing.assert_equal(runs["same"], runs["changed"])


def test_learning_that_would_start_after_the_run_is_refused():
    with pytest.raises(ValueError, match=re.escape("learning_starts must be < total_steps (500)")):
        DQNConfig(total_steps=500)  # the preset's learning_starts is 1,000


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match="NaN or infinite") as info:
        train(dataclasses.replace(TINY, lr=1e300, checkpoint_interval=64), out)
    assert "\n" not in str(info.value) and not (out / "final.json").exists()
    if (out / "last.json").exists():  # any checkpoint written holds finite weights
        tensors, _ = load_checkpoint(out, "last")
        assert all(torch.isfinite(t).all() for k, t in tensors.items() if k.startswith("online/"))


def test_ctrl_c_saves_a_checkpoint_and_the_run_resumes(tmp_path):
    out = tmp_path / "run"
    proc = _start_cli(out, "--checkpoint-interval", "0")  # no periodic checkpoint at all
    _wait_for(out / "metrics.csv", proc, rows=3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "--resume" in err
    assert (out / "last.json").exists() and not (out / "final.json").exists()
    stopped = json.loads((out / "last.json").read_text())["step"]
    assert main(["--out", str(out), "--resume", "--total-steps", str(stopped + 200),
                 "--no-progress"]) == 0
    assert json.loads((out / "final.json").read_text())["step"] == stopped + 200


def test_a_run_that_died_before_its_first_checkpoint_starts_again(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.csv").write_text("step,episode,return,length,epsilon,loss,sps\n12,1,1")
    with pytest.raises(SystemExit) as info:  # nothing to resume: say so, in one line
        main(["--out", str(out), "--resume", "--no-progress"])
    assert info.value.code == 2 and "start it again without --resume" in capsys.readouterr().err
    train(dataclasses.replace(TINY, total_steps=100), out)  # a fresh start is allowed
    assert load_metrics(out)["episode"][0] == 1


def test_a_second_process_cannot_train_in_the_same_run_directory(tmp_path):
    out = tmp_path / "run"
    proc = _start_cli(out)
    try:
        _wait_for(out / "metrics.csv", proc)
        for resume in (False, True):
            with pytest.raises(ValueError, match=f"another process \\(pid {proc.pid}\\)"):
                train(dataclasses.replace(TINY, total_steps=100), out, resume=resume)
    finally:
        proc.kill()
        proc.communicate()


def test_a_torn_last_line_is_left_out_and_cut_on_resume(tmp_path):
    out = tmp_path / "run"
    train(dataclasses.replace(TINY, total_steps=200), out)
    whole = load_metrics(out)
    with open(out / "metrics.csv", "a") as log:
        log.write("207,99,1")  # the disk filled up mid-line
    np.testing.assert_equal(load_metrics(out), whole)  # (NaN losses compare equal here)
    train(dataclasses.replace(TINY, total_steps=300), out, resume=True)
    lines = (out / "metrics.csv").read_text().splitlines()
    assert "207,99,1" not in lines
    assert all(line.count(",") == len(METRICS_COLUMNS) - 1 for line in lines)


def test_every_session_of_a_run_is_on_record(tmp_path, monkeypatch):
    """sessions.jsonl: each start or resume with its provenance and config, and how each
    ended; a resume never cuts it, a refused request adds nothing, a fresh start clears it."""
    out = tmp_path / "run"
    train(TINY, out, stop_at=200)
    train(TINY, out, resume=True)
    sessions = load_sessions(out)
    assert [(s["event"], s["step"]) for s in sessions] == [
        ("start", 0), ("stopped", 200), ("resume", 200), ("finished", 300)]
    assert sessions[0]["config"] == TINY.to_dict() and sessions[0]["device"].startswith("cpu")
    assert {"git_commit", "cpu", "versions", "created", "command"} <= set(sessions[2])
    assert 0 < sessions[1]["session_s"] <= sessions[3]["run_s"]
    with pytest.raises(ValueError, match="already holds a run"):
        train(TINY, out)  # refused before it became a session: nothing recorded
    with pytest.raises(SystemExit):  # refused on the command line
        main(["--out", str(out), "--resume", "--lr", "0.5", "--no-progress"])

    def broken(*args, **kwargs):
        raise RuntimeError("the update fell over")

    monkeypatch.setattr("duel_tutorial.train.train_phase", broken)
    with pytest.raises(RuntimeError, match="fell over"):
        train(dataclasses.replace(TINY, total_steps=400), out, resume=True)
    events = [(s["event"], s["step"]) for s in load_sessions(out)]
    assert events[4:] == [("resume", 300), ("failed", 304)]
    assert load_sessions(out)[-1]["error"] == "RuntimeError: the update fell over"
    monkeypatch.undo()
    with open(out / "sessions.jsonl", "a") as f:
        f.write('{"event": "resu')  # the disk filled up mid-line
    assert len(load_sessions(out)) == 6
    train(dataclasses.replace(TINY, total_steps=400), out, resume=True)  # cut, then appended
    assert [s["event"] for s in load_sessions(out)][4:] == ["resume", "failed", "resume",
                                                            "finished"]
    (out / "sessions.jsonl").write_text('{"event": "start", "step": 0}\nnot json\n')
    with pytest.raises(ValueError, match=re.escape("sessions.jsonl line 2 is not a JSON record")):
        load_sessions(out)
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "sessions.jsonl").write_text('{"event": "start", "step": 0}\n')  # died early
    train(dataclasses.replace(TINY, total_steps=100), fresh)
    assert [s["event"] for s in load_sessions(fresh)] == ["start", "finished"]


def test_a_diverged_run_says_so_in_its_history(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(TrainingDiverged):
        train(dataclasses.replace(TINY, lr=1e300, checkpoint_interval=64), out)
    assert [s["event"] for s in load_sessions(out)] == ["start", "diverged"]


def test_a_copied_log_keeps_whole_rows_up_to_the_checkpoint(tmp_path):
    out = tmp_path / "run"
    train(dataclasses.replace(TINY, total_steps=200), out)
    whole = load_metrics(out)
    with open(out / "metrics.csv", "a") as log:
        log.write("207,99,1")  # torn
    copy_log(out / "metrics.csv", tmp_path / "copy.csv", last_step=int(whole["step"][-2]))
    copied = load_metrics(tmp_path / "copy.csv")
    np.testing.assert_equal(copied, {k: v[:-1] for k, v in whole.items()})


def test_a_run_saved_without_its_replay_buffer_resumes(tmp_path):
    out = tmp_path / "run"
    train(dataclasses.replace(TINY, total_steps=200, checkpoint_replay=False), out)
    result = train(dataclasses.replace(TINY, total_steps=400, checkpoint_replay=False), out,
                   resume=True)
    assert result.steps == 400  # it refilled the buffer before learning again


def test_a_value_error_during_training_is_not_reported_as_bad_input(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise ValueError("something inside an update")

    monkeypatch.setattr("duel_tutorial.train.train_phase", broken)
    with pytest.raises(RuntimeError, match="training failed at step 64"):
        main(["--out", str(tmp_path / "run"), "--total-steps", "200", *TINY_FLAGS])


def test_out_that_is_a_file_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    with pytest.raises(SystemExit) as info:
        main(["--out", str(tmp_path / "file"), "--total-steps", "200", *TINY_FLAGS])
    assert info.value.code == 2
    assert capsys.readouterr().err.strip().endswith("is a file; expected a run directory")


# --- a command line that fits its users' habits ------------------------------------------


@pytest.mark.parametrize(("old", "new"), [("PongNoFrameskip-v4", "ALE/Pong-v5"),
                                          ("Breakout-v4", "ALE/Breakout-v5")])
def test_gyms_old_atari_ids_name_the_ale_id(old, new):
    with pytest.raises(ValueError, match=f"use --env {re.escape(new)}") as info:
        make_env(old)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("env_id", "reason"), [("LunarLander-v2", "deprecated"),
                                                ("CarRacing-v3", "Box2D is not installed")])
def test_an_env_that_cannot_be_made_is_a_one_line_error(env_id, reason, capsys, tmp_path):
    with pytest.raises(SystemExit) as info:
        main(["--env", env_id, "--out", str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert info.value.code == 2 and f"cannot make environment {env_id!r}" in err and reason in err


def test_an_ale_id_picks_the_atari_preset_and_help_shows_its_defaults():
    assert chosen_preset(["--env", "ALE/Pong-v5"]) == "atari"
    assert chosen_preset(["--env", "ALE/Pong-v5", "--preset", "cartpole"]) == "cartpole"
    assert chosen_preset(["--env", "CartPole-v1"]) == "cartpole"
    text = build_parser(["--env", "ALE/Pong-v5"]).format_help()
    assert "defaults: the atari preset" in text
    assert f"[default: {preset('atari').total_steps}; source: the atari preset]" in text


def test_progress_lines_when_stderr_is_not_a_terminal(capsys):
    train(dataclasses.replace(TINY, total_steps=200), progress="lines")
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("step ")]
    assert lines and re.match(r"step [\d,]+/200 \(\d+%\), episode \d+, mean return", lines[0])


def test_channels_last_image_observations_are_refused_in_one_line():
    with pytest.raises(ValueError, match=re.escape("got shape (84, 84, 3) (channels last?)")):
        make_network(DQNConfig(), (84, 84, 3), 6)


def test_evaluate_prints_a_line_per_episode_and_names_shipped_agents(tmp_path, capsys):
    out = tmp_path / "run"
    train(dataclasses.replace(TINY, total_steps=100), out)
    assert evaluate_main([str(out), "--episodes", "3", "--device", "cpu"]) == 0
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3 and lines[-1].startswith("episode 3 (3 of 3 done): return ")
    for bad, message in ((["--pretrained", "../pong"], "a pretrained agent name is"),
                         ([], "give a run directory or --pretrained NAME"),
                         ([str(out), "--pretrained", "pong"], "give a run directory or")):
        with pytest.raises(SystemExit) as info:
            evaluate_main(bad)
        assert info.value.code == 2 and message in capsys.readouterr().err
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit):
            evaluate_main(["--pretrained", "pong", "--device", "cuda"])
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "torch sees no CUDA device" in err


def test_broken_sidecars_and_rng_states_are_one_line_errors(tmp_path):
    out = tmp_path / "run"
    train(dataclasses.replace(TINY, total_steps=100), out)
    final = json.loads((out / "final.json").read_text())
    del final["network"]
    tensors, _ = load_checkpoint(out, "final")
    save_checkpoint(out / "final", tensors, final)
    with pytest.raises(ValueError, match="lacks a valid config or network description") as info:
        load_policy(out)
    assert "\n" not in str(info.value)
    last_tensors, last = load_checkpoint(out, "last")
    last["rng"]["act"] = {"bit_generator": "PCG64", "state": "garbage"}
    save_checkpoint(out / "last", last_tensors, last)
    with pytest.raises(ValueError, match="random generator states are not ones") as info:
        train(dataclasses.replace(TINY, total_steps=200), out, resume=True)
    assert "\n" not in str(info.value)
