"""Train a DQN (dueling or single-stream) on a gymnasium environment.

The loop in :func:`train` reads top to bottom as the algorithm (Mnih et al., 2015, with
the dueling network of Wang et al., 2016): **act** epsilon-greedily, **step** the
environments, **store** the transition, **learn** from a sampled minibatch, **sync** the
target network, **log** finished episodes, **checkpoint** now and then. Each concept has
one home, and this module has only :func:`train` and the command line:

- networks and their factory: :mod:`duel_tutorial.model` (``make_network``);
- environments and one step of them: :mod:`duel_tutorial.envs` (``make_training_envs``,
  ``EnvStepper``, which hides SAME_STEP vs NEXT_STEP autoreset and the lost-life rule);
- exploration: :mod:`duel_tutorial.exploration`; replay, one interface for both buffers
  (``start(obs)``, ``add(*transition)``, ``sample``): :mod:`duel_tutorial.replay`;
- learning: :mod:`duel_tutorial.targets` (the TD target and the one loss) and
  :mod:`duel_tutorial.learn` (a phase of updates);
- the run directory (logs, checkpoints, resume policy, lock, signals):
  :mod:`duel_tutorial.run`. Chapter 7 of the book prints the loop and checks it against
  a from-scratch version.

From Python::

    from duel_tutorial.config import DQNConfig
    from duel_tutorial.train import train

    result = train(DQNConfig(seed=0))           # in memory; pass out_dir= to write a run
    result.network                              # the trained online network

From the shell (flags are generated from :class:`~duel_tutorial.config.DQNConfig`)::

    python -m duel_tutorial.train --env CartPole-v1 --seed 0 --out runs/cartpole-s0
    python -m duel_tutorial.train --out runs/cartpole-s0 --resume    # after an interruption
    python -m duel_tutorial.train ... --stop-at 500000   # a session of a longer run
    python -m duel_tutorial.evaluate runs/cartpole-s0 --episodes 20

A run directory (see :mod:`duel_tutorial.run`, which alone reads and writes it) holds
``metrics.csv`` (one row per finished episode: step, episode, return, length, epsilon,
loss, sps, time_s), ``last`` checkpoints every ``checkpoint_interval`` steps and a ``final``
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
import copy
import dataclasses
import math
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from duel_tutorial.config import PRESETS, DQNConfig, add_config_arguments, config_overrides
from duel_tutorial.device import resolve_device
from duel_tutorial.envs import EnvStepper, is_atari, is_minatar, make_training_envs
from duel_tutorial.evaluate import EVAL_SEED_OFFSET, evaluate
from duel_tutorial.exploration import current_epsilon, epsilon_greedy
from duel_tutorial.learn import LossMeter, UpdateLoss, resolve_precision, train_phase
from duel_tutorial.model import hidden_layer, hidden_unit_activity, make_network
from duel_tutorial.replay import FrameReplayBuffer, ReplayBuffer
from duel_tutorial.run import (
    RunCounters,
    RunLog,
    SessionHistory,
    check_progress,
    check_run_state,
    json_step,
    restore_run_checkpoint,
    resume_config,
    run_lock,
    save_run_checkpoint,
    stop_on_signals,
)
from duel_tutorial.targets import polyak_update


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the run stopped without saving the bad weights."""


@dataclass
class TrainResult:
    """What :func:`train` returns: the trained networks, the episode log and timings."""

    config: DQNConfig
    network: nn.Module  # the online network, in eval mode
    target_network: nn.Module
    buffer: ReplayBuffer | FrameReplayBuffer = field(repr=False)  # at the end of training
    episodes: list[dict[str, Any]] = field(repr=False)  # the metrics rows (this session's)
    evals: list[dict[str, Any]] = field(repr=False)  # the periodic greedy evaluations
    steps: int  # environment steps done in total (including before a resume)
    wall_time_s: float  # this session's training time
    out_dir: Path | None = None
    interrupted: bool = False  # stopped by Ctrl-C, SIGTERM or stop_at before total_steps

    def returns(self) -> np.ndarray:
        """Returns of the episodes finished in this session, in order."""
        return np.array([row["return"] for row in self.episodes])


def train(
    config: DQNConfig,
    out_dir: str | Path | None = None,
    *,
    resume: bool = False,
    progress: bool | str = False,
    command: str | None = None,
    stop_at: int | None = None,
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
        stop_at: end this session at that step, as Ctrl-C would: the ``last``
            checkpoint is saved and ``resume=True`` continues the run. Everything up to
            there is what the whole run does (the schedules are laid over
            ``total_steps``), so a session-limited machine (Colab, a Slurm job) can train
            a run in pieces.
    """
    if stop_at is not None and (isinstance(stop_at, bool) or not isinstance(stop_at, int)
                                or stop_at < 1):
        raise ValueError(f"stop_at must be a positive number of steps; got {stop_at!r}")
    threads = torch.get_num_threads()
    if config.torch_threads:
        torch.set_num_threads(config.torch_threads)  # restored below; see DQNConfig.torch_threads
    out = Path(out_dir) if out_dir is not None else None
    if resume and out is None:
        raise ValueError("resume=True needs the out_dir of the run to continue")
    history = SessionHistory(out)  # the run's sessions.jsonl
    try:
        with run_lock(out), stop_on_signals() as stop:
            return _train(config, out, resume, progress, command, stop, stop_at, history)
    except BaseException as err:
        history.fail(err)
        raise
    finally:
        torch.set_num_threads(threads)


def _train(config: DQNConfig, out: Path | None, resume: bool, progress: bool | str,
           command: str | None, stop: threading.Event, stop_at: int | None,
           history: SessionHistory) -> TrainResult:
    check_progress(progress)
    if out is not None:
        check_run_state(out, resume)
    device = resolve_device(config.device)
    envs = EnvStepper(make_training_envs(config.env_id, config.num_envs, config.seed,
                                         config.repeat_action_probability))
    n, n_actions = envs.num_envs, envs.n_actions
    # Networks, optimizer, replay buffer, random generators: all seeded from config.seed.
    torch.manual_seed(config.seed)
    online = make_network(config, envs.obs_shape, n_actions).to(device)
    precision = resolve_precision(config.update_precision, device)
    if precision == "bf16" and len(envs.obs_shape) == 3:  # conv nets: channels_last weights
        online = online.to(memory_format=torch.channels_last)
    target_net = copy.deepcopy(online).requires_grad_(False)  # θ⁻ = θ
    # fused Adam: one kernel for all parameters instead of ~10 small ops per tensor
    optimizer = torch.optim.Adam(online.parameters(), lr=config.lr, eps=config.adam_eps,
                                 fused=device.type in ("cpu", "cuda"))
    act_seed, replay_seed = np.random.SeedSequence(config.seed).spawn(2)
    act_rng = np.random.default_rng(act_seed)  # epsilon-greedy coin flips and random actions
    buffer = _make_replay(config, envs, device, np.random.default_rng(replay_seed))
    network_info = {"kind": config.network, "class": type(online).__name__,
                    "hidden": config.hidden, "obs_shape": list(envs.obs_shape),
                    "obs_dtype": str(envs.obs_dtype), "n_actions": n_actions}
    parts = (online, target_net, optimizer, buffer, act_rng)
    run = RunCounters.start(config)
    if resume:
        run = RunCounters.from_sidecar(restore_run_checkpoint(out, config, network_info, *parts))
    learning_starts = config.learning_starts
    if resume and len(buffer) < config.batch_size:  # saved without its replay buffer:
        learning_starts = run.step + config.learning_starts  # refill it before learning again
    log = RunLog(out, run, n, config.total_steps, resume=resume, progress=progress,
                 evaluations=bool(config.eval_interval))
    history.begin(run, resume, command, device, config)
    losses = LossMeter(device, config.gradient_steps)
    update_loss = UpdateLoss(config, device, precision, compile=config.compile_update)

    def save(name: str, with_replay: bool) -> None:
        counters = {**dataclasses.asdict(run), "epsilon": current_epsilon(
            config, run.step, run.episode, run.schedule_horizon)}
        del counters["wall_time_s"]
        wall = log.run_time()  # all sessions together
        save_run_checkpoint(out / name, config, network_info, *parts, counters=counters,
                            wall=wall, with_replay=with_replay, device=device, command=command)

    horizon = run.schedule_horizon
    end = min(config.total_steps, stop_at or config.total_steps)  # this session's last step
    obs = envs.reset(seed=config.seed + run.step)  # fresh episodes (on resume too)
    buffer.start(obs)  # they begin here (the frame buffer stores their first frames)
    try:  # a ValueError from here on is a failure of the run, not of its input
        while run.step < end and not stop.is_set():
            # 1. act: a random action with probability epsilon, else argmax_a Q(s, a)
            epsilon = current_epsilon(config, run.step, run.episode, horizon)
            actions = epsilon_greedy(online, obs, epsilon, n_actions, act_rng, device)

            # 2. step every env (EnvStepper hides autoreset modes and the lost-life rule)
            transition, obs, ended = envs.step(actions)
            run.step += n

            # 3. store (terminated and truncated apart: only termination stops bootstrapping)
            buffer.add(*transition)
            log.add(transition.reward, transition.valid)

            # 4. learn: a phase of gradient_steps minibatch updates every train_freq steps
            if run.step >= learning_starts and _crossed(run.step, config.train_freq, n):
                if config.anneal_lr:  # lr_t = lr (1 - t / T), T the schedule's horizon
                    optimizer.param_groups[0]["lr"] = config.lr * max(0.0, 1 - run.step / horizon)
                losses.add(train_phase(online, target_net, optimizer, buffer, config, device,
                                       update_loss))

            # 5. sync: θ⁻ ← τ θ + (1 - τ) θ⁻ every target_update_interval steps
            if _crossed(run.step, config.target_update_interval, n):
                polyak_update(target_net, online, config.tau)

            # 6. log every finished episode, with the mean loss since the last log
            if ended.any():
                loss = losses.take()
                if losses.diverged:
                    break
                log.end_episodes(ended, run.step, epsilon, loss)

            # 7. evaluate the greedy policy now and then (optional; same seeds each time),
            #    and count the hidden layer's dead units on replayed states
            if config.eval_interval and _crossed(run.step, config.eval_interval, n):
                returns = evaluate(online, config.env_id, config.eval_episodes,
                                   seed=config.seed + EVAL_SEED_OFFSET)
                units = _unit_activity(online, buffer, device, run.step)
                if log.add_evaluation(run.step, returns, units) >= config.stop_return:
                    break  # good enough: stop early (the final checkpoint is written below)

            # 8. checkpoint now and then, never with NaN weights
            if (out is not None and config.checkpoint_interval and run.step < config.total_steps
                    and _crossed(run.step, config.checkpoint_interval, n)):
                if not losses.check(online):
                    break
                save("last", config.checkpoint_replay)
    except ValueError as err:
        raise RuntimeError(f"training failed at step {run.step:,}: {err}") from err

    losses.check(online)
    wall = log.elapsed()
    log.close(run.step)
    envs.close()
    if losses.diverged:
        history.end("diverged", wall)
        kept = json_step(out / "last.json") if out is not None else None
        raise TrainingDiverged(
            f"the loss became NaN or infinite by step {run.step:,}; stopped without saving"
            + (f" (the last good checkpoint, at step {kept:,}, is {out / 'last.safetensors'})"
               if kept is not None else "") + f". Lower the learning rate (now {config.lr:g}) "
            "or check the rewards and observations")
    interrupted = (stop.is_set() or run.step >= end) and run.step < config.total_steps
    if out is not None:
        save("last", config.checkpoint_replay)  # what --resume extends
        if interrupted:
            print(f"stopped at step {run.step:,} of {config.total_steps:,}; checkpoint saved. "
                  f"Resume with: python -m duel_tutorial.train --out {out} --resume",
                  file=sys.stderr, flush=True)
        else:
            save("final", False)  # what evaluate loads (no replay buffer: small)
    history.end("stopped" if interrupted else "finished", wall)
    return TrainResult(config=config, network=online.eval(), target_network=target_net.eval(),
                       buffer=buffer, episodes=log.rows, evals=log.evals, steps=run.step,
                       wall_time_s=wall, out_dir=out, interrupted=interrupted)


def _make_replay(config: DQNConfig, envs: EnvStepper, device: torch.device,
                 rng: np.random.Generator) -> ReplayBuffer | FrameReplayBuffer:
    """Atari (stacked uint8 frames): each frame stored once, on the training device unless
    ``config.replay_device`` says otherwise. Anything else: a ring of whole transitions."""
    if is_atari(config.env_id):
        where = device if config.replay_device == "auto" else resolve_device(config.replay_device)
        return FrameReplayBuffer(config.buffer_capacity, envs.num_envs, envs.obs_shape[1:],
                                 envs.obs_shape[0], device=where, rng=rng)
    return ReplayBuffer(config.buffer_capacity, envs.obs_shape, envs.obs_dtype, rng=rng)


UNIT_OBSERVATIONS = 4096
"""Replayed observations the hidden layer's units are counted on at each evaluation."""


def _unit_activity(network: nn.Module, buffer: ReplayBuffer | FrameReplayBuffer,
                   device: torch.device, step: int) -> dict[str, int | float] | None:
    """:func:`~duel_tutorial.model.hidden_unit_activity` on up to
    :data:`UNIT_OBSERVATIONS` observations from the replay, drawn by a generator of their
    own (seeded by the step), so that the run's own sampling stays as it was; ``None``
    for a network without that hidden layer (the MLPs) or an empty replay."""
    n = min(UNIT_OBSERVATIONS, len(buffer))
    if hidden_layer(network) is None or n == 0:
        return None
    obs = buffer.sample(n, device, rng=np.random.default_rng(step)).obs
    return hidden_unit_activity(network, obs)


def _crossed(step: int, every: int, n: int) -> bool:
    """True if the last ``n`` steps (ending at ``step``) passed a multiple of ``every``.

    With one environment this is ``step % every == 0``; with ``n`` vector envs the step
    counter moves ``n`` at a time and may jump over the multiple.
    """
    return step // every != (step - n) // every


# --- command line -----------------------------------------------------------------------


def chosen_preset(argv: Sequence[str]) -> str:
    """The preset a command line asks for: ``--preset`` if given, else ``atari`` for an
    ALE id (``--env ALE/Pong-v5``), ``minatar`` for a MinAtar id, else ``cartpole``."""
    peek = argparse.ArgumentParser(add_help=False)
    peek.add_argument("--preset", choices=sorted(PRESETS), default=None)
    peek.add_argument("--env", "--env-id", dest="env_id", default="")
    known, _ = peek.parse_known_args(argv)
    if known.preset:
        return known.preset
    return ("atari" if is_atari(known.env_id) else "minatar" if is_minatar(known.env_id)
            else "cartpole")


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
    parser.add_argument("--stop-at", type=int, default=None, metavar="STEP",
                        help="end this session at STEP, checkpointed for --resume (the "
                        "schedules stay those of --total-steps)")
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
        result = train(config, out, resume=args.resume, progress=progress, command=command,
                       stop_at=args.stop_at)
    except ValueError as err:  # bad input, found before the first step (see _train)
        parser.exit(2, f"{parser.prog}: error: {err}\n")
    except TrainingDiverged as err:
        parser.exit(1, f"{parser.prog}: error: {err}\n")
    if result.interrupted:  # _train said how to resume
        asked = args.stop_at is not None and result.steps >= args.stop_at
        return 0 if asked else 130  # 130: stopped by Ctrl-C or SIGTERM
    returns = result.returns()
    tail = returns[-10:].mean() if len(returns) else math.nan
    print(f"trained {config.env_id} ({config.network}) to step {result.steps} in "
          f"{result.wall_time_s:.1f} s; mean return of the last {min(10, len(returns))} episodes: "
          f"{tail:.1f}; final checkpoint: {out / 'final.safetensors'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
