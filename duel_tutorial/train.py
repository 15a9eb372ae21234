"""Train a DQN (dueling or single-stream) on a gymnasium environment.

The loop in :func:`train` reads top to bottom as the algorithm (Mnih et al., 2015, with
the dueling network of Wang et al., 2016): **act** epsilon-greedily, **step** the
environments, **store** the transition, **learn** from a sampled minibatch, **sync** the
target network, **log** finished episodes, **checkpoint** now and then.

From Python::

    from duel_tutorial.config import DQNConfig
    from duel_tutorial.train import train

    result = train(DQNConfig(seed=0))           # in memory; pass out_dir= to write a run
    result.network                              # the trained online network

From the shell (flags are generated from :class:`~duel_tutorial.config.DQNConfig`)::

    python -m duel_tutorial.train --env CartPole-v1 --seed 0 --out runs/cartpole-s0
    python -m duel_tutorial.train --out runs/cartpole-s0 --resume    # after an interruption
    python -m duel_tutorial.evaluate runs/cartpole-s0 --episodes 20

A run directory (see :mod:`duel_tutorial.run`, which alone reads and writes it) holds
``metrics.csv`` (one row per finished episode: step, episode, return, length, epsilon,
loss, sps), ``last`` checkpoints every ``checkpoint_interval`` steps and a ``final``
checkpoint. Ctrl-C stops between two steps and saves ``last``. ``--resume`` reloads
``last`` (networks, optimizer,
replay buffer, RNG states, counters), cuts ``metrics.csv`` back to the rows it had at
that step and continues; the episode that was running when the run stopped is lost
(its environment state is not saved), the next one starts fresh.

Reproducibility: with the same config, two runs on the CPU log identical metrics (all
columns but ``sps``): torch, the exploration and replay generators and the environments
are all seeded from ``config.seed``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import math
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from duel_tutorial.config import PRESETS, DQNConfig, add_config_arguments, config_overrides
from duel_tutorial.device import resolve_device
from duel_tutorial.envs import is_atari, make_atari_vector_env, make_env
from duel_tutorial.evaluate import EVAL_SEED_OFFSET, evaluate
from duel_tutorial.exploration import epsilon_greedy, exponential_epsilon, linear_epsilon
from duel_tutorial.model import make_network
from duel_tutorial.replay import Batch, FrameReplayBuffer, ReplayBuffer
from duel_tutorial.run import (
    EVAL_COLUMNS,
    EVAL_FILE,
    METRICS_COLUMNS,
    METRICS_FILE,
    MetricsLog,
    check_run_state,
    json_step,
    restore_run_checkpoint,
    resume_config,
    run_lock,
    save_run_checkpoint,
)
from duel_tutorial.targets import dqn_loss, polyak_update


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the run stopped without saving the bad weights."""


# --- building blocks --------------------------------------------------------------------


def current_epsilon(config: DQNConfig, step: int, episode: int,
                    horizon: int | None = None) -> float:
    """Epsilon after ``step`` environment steps and ``episode`` finished episodes.

    ``horizon``: the steps the linear schedule is laid over (default ``total_steps``; a
    resumed run passes the horizon of its first start, so extending it changes nothing).
    """
    if config.epsilon_schedule == "linear":
        horizon = config.total_steps if horizon is None else horizon
        duration = max(1, round(config.exploration_fraction * horizon))
        return linear_epsilon(step, config.epsilon_start, config.epsilon_end, duration)
    return exponential_epsilon(episode, config.epsilon_start, config.epsilon_end,
                               config.epsilon_decay)


def _crossed(step: int, every: int, n: int) -> bool:
    """True if the last ``n`` steps (ending at ``step``) passed a multiple of ``every``.

    With one environment this is ``step % every == 0``; with ``n`` vector envs the step
    counter moves ``n`` at a time and may jump over the multiple.
    """
    return step // every != (step - n) // every


def train_phase(
    online: nn.Module,
    target_net: nn.Module,
    optimizer: torch.optim.Optimizer,
    buffer: ReplayBuffer,
    config: DQNConfig,
    device: torch.device,
) -> torch.Tensor:
    """One training phase: ``config.gradient_steps`` gradient steps, each on a fresh
    minibatch of ``config.batch_size`` transitions. Returns the summed loss (a tensor on
    ``device``: reading it would force a host sync, so the caller does that rarely).

    Each step is :func:`~duel_tutorial.targets.dqn_loss`, backward, gradient-norm clipping
    and an Adam step. One shortcut: the target network does not change during a phase (it
    is synced between phases), so the phase samples all its minibatches at once and
    computes their ``Q_target(s', .)`` in one forward pass instead of one per step. The
    minibatches are still uniform and independent, and the targets the same numbers (up
    to floating-point rounding); what is saved is one small forward pass per gradient
    step, which matters for long phases (the zoo's 128 steps) on a CPU.
    """
    steps, size = config.gradient_steps, config.batch_size
    phase = buffer.sample(size, device, n_batches=steps)  # all minibatches, stacked
    with torch.no_grad():
        next_q_target_all = target_net(phase.next_obs)  # (steps * size, n_actions)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    total = torch.zeros((), device=device)
    for k in range(steps):
        mb = slice(k * size, (k + 1) * size)  # minibatch k
        # L = loss(Q(s, a), y), y = r + γ (1 - terminated) Q_target(s', a*)
        loss = dqn_loss(online, target_net, Batch(*(field[mb] for field in phase)),
                        config.gamma, double=config.double_dqn, loss=config.loss,
                        next_q_target=next_q_target_all[mb])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if math.isfinite(config.max_grad_norm):
            nn.utils.clip_grad_norm_(params, config.max_grad_norm)
        optimizer.step()
        total += loss.detach()
    return total


# --- what train returns ----------------------------------------------------------------


@dataclass
class TrainResult:
    """What :func:`train` returns: the trained networks, the episode log and timings."""

    config: DQNConfig
    network: nn.Module  # the online network, in eval mode
    target_network: nn.Module
    buffer: ReplayBuffer = field(repr=False)  # the replay buffer at the end of training
    episodes: list[dict[str, Any]] = field(repr=False)  # the metrics rows (this session's)
    evals: list[dict[str, Any]] = field(repr=False)  # the periodic greedy evaluations
    steps: int  # environment steps done in total (including before a resume)
    wall_time_s: float  # this session's training time
    out_dir: Path | None = None
    interrupted: bool = False  # stopped by Ctrl-C or SIGTERM before total_steps

    def returns(self) -> np.ndarray:
        """Returns of the episodes finished in this session, in order."""
        return np.array([row["return"] for row in self.episodes])


# --- the training loop ------------------------------------------------------------------


def train(
    config: DQNConfig,
    out_dir: str | Path | None = None,
    *,
    resume: bool = False,
    progress: bool | str = False,
    command: str | None = None,
) -> TrainResult:
    """Train a DQN as ``config`` says; write a run to ``out_dir`` if given.

    Args:
        config: every hyperparameter (see :class:`~duel_tutorial.config.DQNConfig`).
        out_dir: run directory for ``metrics.csv`` and checkpoints; ``None`` keeps
            everything in memory (no files, no checkpoints).
        resume: continue the run in ``out_dir`` from its ``last`` checkpoint.
        progress: ``True`` or ``"bar"``: a tqdm bar (return, SPS) on stderr; ``"lines"``: a
            plain line on stderr at every 10% of the run or every minute, for logs that
            are not a terminal (nohup, Slurm, CI); ``False`` or ``"off"``: nothing.
        command: the command recorded in checkpoints' provenance (default: this
            process's command line).
    """
    threads = torch.get_num_threads()
    if config.torch_threads:
        torch.set_num_threads(config.torch_threads)  # restored below; see DQNConfig.torch_threads
    out = Path(out_dir) if out_dir is not None else None
    if resume and out is None:
        raise ValueError("resume=True needs the out_dir of the run to continue")
    try:
        with run_lock(out), _stop_on_signals() as stop:
            return _train(config, out, resume, progress, command, stop)
    finally:
        torch.set_num_threads(threads)


@contextlib.contextmanager
def _stop_on_signals():
    """Ctrl-C (SIGINT) and SIGTERM set a flag that the loop checks once per step, so the
    run stops between two steps and saves a checkpoint, instead of dying mid-update.
    A second Ctrl-C interrupts at once. Only in the main thread (where Python delivers
    signals); elsewhere the flag is never set."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _train(config: DQNConfig, out: Path | None, resume: bool, progress: bool | str,
           command: str | None, stop: threading.Event) -> TrainResult:
    if progress not in (True, False, "bar", "lines", "off"):
        raise ValueError(f"progress must be True, False, 'bar', 'lines' or 'off'; got {progress!r}")
    if out is not None:
        check_run_state(out, resume)
    device = resolve_device(config.device)
    # Atari: ale-py's C++ vector env with the training preprocessing (envs.py), NEXT_STEP
    # autoreset, frames stored once. Anything else: a gymnasium vector env, SAME_STEP.
    atari = is_atari(config.env_id)
    envs = (make_atari_vector_env(config.env_id, config.num_envs, seed=config.seed) if atari
            else make_env(config.env_id, config.num_envs))
    obs_space = envs.single_observation_space
    n_actions = int(envs.single_action_space.n)
    n = config.num_envs

    # Networks, optimizer, replay buffer, random generators: all seeded from config.seed.
    torch.manual_seed(config.seed)
    online = make_network(config, obs_space.shape, n_actions).to(device)
    target_net = copy.deepcopy(online).requires_grad_(False)  # θ⁻ = θ
    # fused Adam: one kernel for all parameters instead of ~10 small ops per tensor
    optimizer = torch.optim.Adam(online.parameters(), lr=config.lr, eps=config.adam_eps,
                                 fused=device.type in ("cpu", "cuda"))
    act_seed, replay_seed = np.random.SeedSequence(config.seed).spawn(2)
    act_rng = np.random.default_rng(act_seed)  # epsilon-greedy coin flips and random actions
    buffer: ReplayBuffer | FrameReplayBuffer
    if atari:
        replay_device = device if config.replay_device == "auto" else resolve_device(
            config.replay_device)
        buffer = FrameReplayBuffer(config.buffer_capacity, n, obs_space.shape[1:],
                                   obs_space.shape[0], device=replay_device,
                                   rng=np.random.default_rng(replay_seed))
    else:
        buffer = ReplayBuffer(config.buffer_capacity, obs_space.shape, obs_space.dtype,
                              rng=np.random.default_rng(replay_seed))
    network_info = {"kind": config.network, "class": type(online).__name__,
                    "hidden": config.hidden, "obs_shape": list(obs_space.shape),
                    "obs_dtype": str(obs_space.dtype), "n_actions": n_actions}
    parts = (online, target_net, optimizer, buffer, act_rng)
    step, episode, metrics_rows, eval_rows, past_wall = 0, 0, 0, 0, 0.0
    horizon = config.total_steps  # what the epsilon and learning-rate schedules span
    if resume:
        saved = restore_run_checkpoint(out, config, network_info, *parts)
        step, episode, past_wall = saved["step"], saved["episode"], saved["wall_time_s"]
        metrics_rows, eval_rows = saved["metrics_rows"], saved.get("eval_rows", 0)
        horizon = saved.get("schedule_horizon", saved["config"]["total_steps"])
    if resume and len(buffer) < config.batch_size:  # saved without its replay buffer:
        learning_resumes = step + config.learning_starts  # refill it before learning again
    else:
        learning_resumes = config.learning_starts
    last_finite_loss = True

    def save(name: str, with_replay: bool) -> None:  # called only with finite weights
        counters = {"step": step, "episode": episode, "metrics_rows": metrics_rows,
                    "eval_rows": eval_rows, "schedule_horizon": horizon,
                    "epsilon": current_epsilon(config, step, episode, horizon)}
        wall = past_wall + time.perf_counter() - start
        save_run_checkpoint(out / name, config, network_info, *parts, counters=counters,
                            wall=wall, with_replay=with_replay, device=device, command=command)

    log = eval_log = None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        if not resume:  # a log left by a run that never reached a checkpoint starts over
            for stale in (METRICS_FILE, EVAL_FILE):
                (out / stale).unlink(missing_ok=True)
        log = MetricsLog(out / METRICS_FILE, METRICS_COLUMNS, metrics_rows if resume else None)
        if config.eval_interval:
            eval_log = MetricsLog(out / EVAL_FILE, EVAL_COLUMNS, eval_rows if resume else None)
    rows: list[dict[str, Any]] = []
    evals: list[dict[str, Any]] = []
    report = _ProgressLines(config.total_steps) if progress == "lines" else None
    bar = tqdm(total=config.total_steps, initial=step, disable=progress not in (True, "bar"),
               file=sys.stderr, unit="step", dynamic_ncols=True)

    # A fresh episode in every environment (on resume too: environment state is not saved).
    obs, _ = envs.reset(seed=config.seed + step)
    if atari:
        buffer.start(obs)
    new_game = np.zeros(n, dtype=bool)  # Atari: envs that this step will reset (NEXT_STEP)
    ep_return = np.zeros(n)
    ep_length = np.zeros(n, dtype=np.int64)
    loss_sum, loss_count = torch.zeros((), device=device), 0
    start, start_step = time.perf_counter(), step

    try:  # a ValueError from here on is a failure of the run, not of its input
        while step < config.total_steps and not stop.is_set():
            # 1. act: a random action with probability epsilon, else argmax_a Q(s, a)
            epsilon = current_epsilon(config, step, episode, horizon)
            actions = epsilon_greedy(online, obs, epsilon, n_actions, act_rng, device)

            # 2. step (gymnasium: a finished episode's real last observation is info["final_obs"])
            next_obs, reward, terminated, truncated, info = envs.step(actions)
            step += n
            if atari:  # a lost life terminates a training episode, only a game over resets
                done = truncated | (terminated & (info["lives"] == 0))
            else:
                done = terminated | truncated
                real_next_obs = next_obs
                if done.any():
                    real_next_obs = next_obs.copy()
                    for i in np.flatnonzero(done):
                        real_next_obs[i] = info["final_obs"][i]

            # 3. store (terminated and truncated separately: only termination stops bootstrapping)
            if atari:  # the step into a new game (NEXT_STEP autoreset) is not a transition
                buffer.add(actions, reward, terminated, truncated, next_obs, new_game)
                ep_length += ~new_game
                new_game = done
            else:
                buffer.add(obs, actions, reward, real_next_obs, terminated, truncated)
                ep_length += 1
            obs = next_obs
            ep_return += reward

            # 4. learn: a phase of gradient_steps minibatch updates every train_freq steps
            if step >= learning_resumes and _crossed(step, config.train_freq, n):
                if config.anneal_lr:
                    # lr_t = lr (1 - t / T), T the schedule's horizon; 0 after it
                    optimizer.param_groups[0]["lr"] = config.lr * max(0.0, 1.0 - step / horizon)
                loss_sum += train_phase(online, target_net, optimizer, buffer, config, device)
                loss_count += config.gradient_steps

            # 5. sync: θ⁻ ← τ θ + (1 - τ) θ⁻ every target_update_interval steps
            if _crossed(step, config.target_update_interval, n):
                polyak_update(target_net, online, config.tau)

            # 6. log every finished episode
            if done.any():
                loss_mean = loss_sum.item() / loss_count if loss_count else math.nan
                if loss_count and not math.isfinite(loss_mean):
                    last_finite_loss = False
                    break
                loss_sum.zero_()
                loss_count = 0
                sps = (step - start_step) / max(time.perf_counter() - start, 1e-9)
                for i in np.flatnonzero(done):
                    episode += 1
                    row = {"step": step, "episode": episode,
                           "return": round(float(ep_return[i]), 4),
                           "length": int(ep_length[i]), "epsilon": round(epsilon, 4),
                           "loss": round(loss_mean, 6), "sps": round(sps)}
                    loss_mean = math.nan  # the loss belongs to the first row of this step
                    rows.append(row)
                    metrics_rows += 1
                    if log is not None:
                        log.write(row)
                    ep_return[i], ep_length[i] = 0.0, 0
                bar.update(step - bar.n)
                bar.set_postfix({"return": rows[-1]["return"], "sps": rows[-1]["sps"]},
                                refresh=False)
                if report is not None:
                    report.maybe_print(step, episode, rows)

            # 7. evaluate the greedy policy now and then (optional; same episode seeds each time)
            if config.eval_interval and _crossed(step, config.eval_interval, n):
                returns = evaluate(online, config.env_id, config.eval_episodes,
                                   seed=config.seed + EVAL_SEED_OFFSET)
                evals.append({"step": step, "mean": round(float(returns.mean()), 4),
                              "std": round(float(returns.std()), 4),
                              "min": float(returns.min()), "max": float(returns.max())})
                eval_rows += 1
                if eval_log is not None:
                    eval_log.write(evals[-1])
                if evals[-1]["mean"] >= config.stop_return:
                    break  # good enough: stop early (the final checkpoint is written below)

            # 8. checkpoint
            if (out is not None and config.checkpoint_interval and step < config.total_steps
                    and _crossed(step, config.checkpoint_interval, n)):
                last_finite_loss = _all_finite(loss_sum, *online.parameters())  # one host sync
                if not last_finite_loss:
                    break
                save("last", config.checkpoint_replay)

    except ValueError as err:
        raise RuntimeError(f"training failed at step {step:,}: {err}") from err

    if not _all_finite(loss_sum, *online.parameters()):
        last_finite_loss = False
    wall = time.perf_counter() - start
    bar.update(step - bar.n)
    bar.close()
    envs.close()
    for opened in (log, eval_log):
        if opened is not None:
            opened.close()
    if not last_finite_loss:
        kept = json_step(out / "last.json") if out is not None else None
        raise TrainingDiverged(
            f"the loss became NaN or infinite by step {step:,}; stopped without saving"
            + (f" (the last good checkpoint, at step {kept:,}, is {out / 'last.safetensors'})"
               if kept is not None else "") + f". Lower the learning rate (now {config.lr:g}) "
            "or check the rewards and observations")
    if out is not None:
        save("last", config.checkpoint_replay)  # what --resume extends
        if stop.is_set() and step < config.total_steps:
            print(f"stopped at step {step:,} of {config.total_steps:,}; checkpoint saved. "
                  f"Resume with: python -m duel_tutorial.train --out {out} --resume",
                  file=sys.stderr, flush=True)
        else:
            save("final", False)  # what evaluate loads (no replay buffer: small)
    return TrainResult(config=config, network=online.eval(), target_network=target_net.eval(),
                       buffer=buffer, episodes=rows, evals=evals, steps=step, wall_time_s=wall,
                       out_dir=out, interrupted=stop.is_set() and step < config.total_steps)


class _ProgressLines:
    """Plain progress lines on stderr, at every 10% of the run or every minute."""

    def __init__(self, total: int) -> None:
        self.total, self.next_step, self.next_time = total, 0, time.monotonic() + 60

    def maybe_print(self, step: int, episode: int, rows: list[dict[str, Any]]) -> None:
        if step < self.next_step and time.monotonic() < self.next_time:
            return
        recent = [row["return"] for row in rows[-10:]]
        print(f"step {step:,}/{self.total:,} ({step / self.total:.0%}), episode {episode:,}, "
              f"mean return of the last {len(recent)} {np.mean(recent):.1f}, "
              f"{rows[-1]['sps']:,} steps/s", file=sys.stderr, flush=True)
        self.next_step = step + max(1, self.total // 10)
        self.next_time = time.monotonic() + 60


def _all_finite(*tensors: torch.Tensor) -> bool:
    """Whether every entry of every tensor is finite (one host sync in all)."""
    return bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())


# --- command line -----------------------------------------------------------------------


def chosen_preset(argv: Sequence[str]) -> str:
    """The preset a command line asks for: ``--preset`` if given, else ``atari`` for an
    ALE id (``--env ALE/Pong-v5``), else ``cartpole``."""
    peek = argparse.ArgumentParser(add_help=False)
    peek.add_argument("--preset", choices=sorted(PRESETS), default=None)
    peek.add_argument("--env", "--env-id", dest="env_id", default="")
    known, _ = peek.parse_known_args(argv)
    return known.preset or ("atari" if is_atari(known.env_id) else "cartpole")


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The command line; its help shows the defaults of the preset ``argv`` chooses."""
    parser = argparse.ArgumentParser(
        prog="python -m duel_tutorial.train",
        description="Train a (dueling) DQN on a gymnasium environment. Every hyperparameter "
        "has a flag; flags override the preset.",
    )
    parser.add_argument("--out", type=Path, default=None,
                        help="run directory for metrics.csv and checkpoints "
                        "[default: runs/<env>-s<seed>]")
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None,
                        help="starting values for every hyperparameter [default: atari for an "
                        "ALE/... env id, else cartpole]")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its last checkpoint")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress output (a bar on a terminal, else a line now and then)")
    add_config_arguments(parser, chosen_preset(argv))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    overrides = config_overrides(args)
    try:
        if args.resume:
            if args.out is None:
                raise ValueError("--resume needs --out, the run directory to continue")
            config = resume_config(args.out, overrides)
        else:
            config = dataclasses.replace(PRESETS[chosen_preset(argv)], **overrides)
        out = args.out or Path("runs") / f"{config.env_id.replace('/', '-')}-s{config.seed}"
        command = " ".join([parser.prog, *argv])
        progress = "off" if args.no_progress else "bar" if sys.stderr.isatty() else "lines"
        result = train(config, out, resume=args.resume, progress=progress, command=command)
    except ValueError as err:  # bad input, found before the first step (see _train)
        parser.exit(2, f"{parser.prog}: error: {err}\n")
    except TrainingDiverged as err:
        parser.exit(1, f"{parser.prog}: error: {err}\n")
    if result.interrupted:
        return 130  # stopped by Ctrl-C or SIGTERM; _train said how to resume
    returns = result.returns()
    tail = returns[-10:].mean() if len(returns) else math.nan
    print(f"trained {config.env_id} ({config.network}) to step {result.steps} in "
          f"{result.wall_time_s:.1f} s; mean return of the last {min(10, len(returns))} episodes: "
          f"{tail:.1f}; final checkpoint: {out / 'final.safetensors'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
