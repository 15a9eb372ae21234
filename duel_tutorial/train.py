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

A run directory holds ``metrics.csv`` (one row per finished episode: step, episode,
return, length, epsilon, loss, sps; appended and flushed as they happen), ``last``
checkpoints every ``checkpoint_interval`` steps and a ``final`` checkpoint (see
:mod:`duel_tutorial.checkpoint`). ``--resume`` reloads ``last`` (networks, optimizer,
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
import csv
import dataclasses
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode
from torch import nn
from tqdm import tqdm

from duel_tutorial.checkpoint import (
    FORMAT_VERSION,
    check_compatible,
    load_checkpoint,
    load_network_state,
    optimizer_from_tensors,
    optimizer_to_tensors,
    save_checkpoint,
    strip_prefix,
    with_prefix,
)
from duel_tutorial.config import PRESETS, DQNConfig, add_config_arguments, config_overrides
from duel_tutorial.device import default_device
from duel_tutorial.envs import make_atari_vector_env
from duel_tutorial.evaluate import EVAL_SEED_OFFSET, evaluate
from duel_tutorial.exploration import epsilon_greedy, exponential_epsilon, linear_epsilon
from duel_tutorial.model import DuelingQNetwork, MLPDuelingQNetwork, MLPQNetwork, QNetwork
from duel_tutorial.provenance import provenance
from duel_tutorial.replay import FrameReplayBuffer, ReplayBuffer
from duel_tutorial.targets import polyak_update, td_loss, td_target

METRICS_FILE = "metrics.csv"
METRICS_COLUMNS = ("step", "episode", "return", "length", "epsilon", "loss", "sps")
EVAL_FILE = "eval.csv"
EVAL_COLUMNS = ("step", "mean", "std", "min", "max")
# Fields that may differ between a run and its --resume (they do not change the algorithm).
RESUMABLE_OVERRIDES = ("total_steps", "checkpoint_interval", "checkpoint_replay", "device",
                       "torch_threads")


# --- building blocks --------------------------------------------------------------------


def make_env(
    env_id: str,
    num_envs: int = 1,
    *,
    wrappers: Sequence[Callable[[gym.Env], gym.Wrapper]] | None = None,
    **kwargs: Any,
) -> gym.vector.VectorEnv:
    """``num_envs`` copies of ``env_id`` stepped in lockstep (``gymnasium.vector``, sync).

    Autoreset is "same step": when an episode ends, ``step`` returns the first
    observation of the next episode, and the true last observation is in
    ``info["final_obs"]``. ``kwargs`` go to ``gymnasium.make``. An unknown id raises a
    one-line ``ValueError``; so does an action space that is not ``Discrete``.
    """
    if env_id.startswith("ALE/"):
        import ale_py

        gym.register_envs(ale_py)
    try:
        envs = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="sync",
                            vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP},
                            wrappers=wrappers, **kwargs)
    except gym.error.UnregisteredEnv as err:
        reason = " ".join(str(err).split())
        raise ValueError(
            f"unknown environment id {env_id!r} ({reason}); expected a registered gymnasium id "
            "such as 'CartPole-v1' (list them: python -c 'import gymnasium; "
            "gymnasium.pprint_registry()')"
        ) from None
    if not isinstance(envs.single_action_space, gym.spaces.Discrete):
        envs.close()
        raise ValueError(f"DQN needs a Discrete action space; {env_id} has "
                         f"{envs.single_action_space}")
    return envs


def matched_hidden(input_size: int, n_actions: int, hidden: int) -> int:
    """Width ``w`` that gives ``MLPQNetwork(hidden=(hidden, w))`` about as many parameters
    as ``MLPDuelingQNetwork(hidden=hidden)``, e.g. 127 for CartPole (8,831 vs 8,835)."""
    shared = input_size * hidden + hidden  # fc1
    # dueling: fc1 + 2 (hidden -> hidden) + (hidden -> n_actions) + (hidden -> 1)
    dueling = shared + 2 * (hidden * hidden + hidden) + hidden * n_actions + n_actions + hidden + 1
    # single: fc1 + (hidden -> w) + (w -> n_actions) = shared + w (hidden + 1 + n_actions) + n_act
    return max(1, round((dueling - shared - n_actions) / (hidden + 1 + n_actions)))


def make_network(config: DQNConfig, obs_shape: tuple[int, ...] | gym.Space, n_actions: int
                 ) -> nn.Module:
    """The Q-network ``config`` asks for, sized for the observations and actions.

    - vector observations ``(D,)``: ``"dueling"`` is :class:`MLPDuelingQNetwork` (seed 002's
      shape, width ``config.hidden``); ``"single"`` is :class:`MLPQNetwork` with hidden
      widths ``(hidden, matched_hidden(...))``, the same parameter count.
    - frame stacks ``(C, 84, 84)``: :class:`DuelingQNetwork` or :class:`QNetwork` with ``C``
      input channels (``config.hidden`` is not used).
    """
    shape = tuple(obs_shape.shape) if isinstance(obs_shape, gym.Space) else tuple(obs_shape)
    if len(shape) == 1:
        if config.network == "dueling":
            return MLPDuelingQNetwork(shape[0], n_actions, hidden=config.hidden,
                                      aggregation=config.aggregation)
        width = matched_hidden(shape[0], n_actions, config.hidden)
        return MLPQNetwork(shape[0], n_actions, hidden=(config.hidden, width))
    if len(shape) == 3:
        if config.network == "dueling":
            network = DuelingQNetwork(n_actions, in_channels=shape[0],
                                      aggregation=config.aggregation)
            if config.trunk_grad_scale != 1.0:
                scale_combined_gradient(network, config.trunk_grad_scale)
            return network
        return QNetwork(n_actions, in_channels=shape[0])
    raise ValueError(f"observations must be vectors (D,) or frame stacks (C, 84, 84); got shape "
                     f"{shape}")


def scale_combined_gradient(network: DuelingQNetwork, scale: float) -> None:
    """Multiply by ``scale`` the gradient flowing back from the two streams into the trunk.

    Wang et al. (2016, sec. 4.2) "rescale the combined gradient entering the last
    convolutional layer by 1/sqrt(2)": both streams send their gradient into the shared
    layers, and the rescaling keeps its size near a single stream's. In the paper the
    streams split right after the last conv layer; in seed 000's network they split after
    the shared 512-unit layer ``lin``, so the hook sits on ``lin``'s output, where the two
    gradients meet; the conv layers below receive the rescaled gradient too. The forward
    pass is unchanged. A ``copy.deepcopy`` of the network (the target network) carries the
    hook, which does nothing there: it runs without gradients.
    """
    if not isinstance(network, DuelingQNetwork):
        raise ValueError(f"scale_combined_gradient needs a DuelingQNetwork; got "
                         f"{type(network).__name__}")

    def rescale_backward(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        if output.requires_grad:
            # dL/dh <- scale * (dL/dh from V + dL/dh from A)
            output.register_hook(lambda grad: grad * scale)

    network.lin.register_forward_hook(rescale_backward)


def is_atari(env_id: str) -> bool:
    """ALE ids (``ALE/Pong-v5``) train through :func:`make_atari_vector_env`."""
    return env_id.startswith("ALE/")


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


def current_epsilon(config: DQNConfig, step: int, episode: int) -> float:
    """Epsilon after ``step`` environment steps and ``episode`` finished episodes."""
    if config.epsilon_schedule == "linear":
        duration = max(1, round(config.exploration_fraction * config.total_steps))
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
        with torch.no_grad():
            # Double DQN: the *current* online network picks a* = argmax_a' Q(s', a')
            next_q_online = online(phase.next_obs[mb]) if config.double_dqn else None
            y = td_target(phase.reward[mb], phase.terminated[mb], next_q_target_all[mb],
                          config.gamma, next_q_online)
        # Q(s, a) of the actions taken: (size,)
        q_taken = online(phase.obs[mb]).gather(1, phase.action[mb].unsqueeze(1)).squeeze(1)
        loss = td_loss(q_taken, y, config.loss)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if math.isfinite(config.max_grad_norm):
            nn.utils.clip_grad_norm_(params, config.max_grad_norm)
        optimizer.step()
        total += loss.detach()
    return total


# --- the run's log ----------------------------------------------------------------------


class MetricsLog:
    """An append-only CSV log (``metrics.csv``, ``eval.csv``), flushed after every row.

    ``keep_rows`` (on resume) first cuts the file back to its header and that many rows.
    """

    def __init__(self, path: Path, columns: Sequence[str], keep_rows: int | None = None
                 ) -> None:
        self.path, self.columns = path, tuple(columns)
        if keep_rows is not None and path.exists():
            lines = path.read_text().splitlines(keepends=True)
            if len(lines) - 1 < keep_rows:
                raise ValueError(f"{path} has {len(lines) - 1} rows, but the checkpoint "
                                 f"says {keep_rows} were written")
            tmp = path.with_suffix(".csv.tmp")
            tmp.write_text("".join(lines[: keep_rows + 1]))
            os.replace(tmp, path)
        new = not path.exists() or path.stat().st_size == 0
        self.file = path.open("a", newline="")
        self.writer = csv.writer(self.file, lineterminator="\n")
        if new:
            self.writer.writerow(self.columns)
            self.file.flush()

    def write(self, row: dict[str, Any]) -> None:
        self.writer.writerow([row[c] for c in self.columns])
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def load_metrics(run: str | Path, file: str = METRICS_FILE) -> dict[str, np.ndarray]:
    """A run's ``metrics.csv`` (or ``eval.csv``) as one numpy array per column.

    ``loss`` is NaN in rows logged before learning started.
    """
    path = Path(run)
    path = path / file if path.is_dir() else path
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        columns = reader.fieldnames or []
    out = {}
    for column in columns:
        kind = int if column in ("step", "episode", "length") else float
        out[column] = np.array([kind(r[column]) for r in rows], dtype=kind)
    return out


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

    def returns(self) -> np.ndarray:
        """Returns of the episodes finished in this session, in order."""
        return np.array([row["return"] for row in self.episodes])


# --- the training loop ------------------------------------------------------------------


def train(
    config: DQNConfig,
    out_dir: str | Path | None = None,
    *,
    resume: bool = False,
    progress: bool = False,
    command: str | None = None,
) -> TrainResult:
    """Train a DQN as ``config`` says; write a run to ``out_dir`` if given.

    Args:
        config: every hyperparameter (see :class:`~duel_tutorial.config.DQNConfig`).
        out_dir: run directory for ``metrics.csv`` and checkpoints; ``None`` keeps
            everything in memory (no files, no checkpoints).
        resume: continue the run in ``out_dir`` from its ``last`` checkpoint.
        progress: show a tqdm bar (return, SPS) on stderr.
        command: the command recorded in checkpoints' provenance (default: this
            process's command line).
    """
    threads = torch.get_num_threads()
    if config.torch_threads:
        torch.set_num_threads(config.torch_threads)  # restored below; see DQNConfig.torch_threads
    try:
        out = Path(out_dir) if out_dir is not None else None
        return _train(config, out, resume, progress, command)
    finally:
        torch.set_num_threads(threads)


def _train(config: DQNConfig, out: Path | None, resume: bool, progress: bool,
           command: str | None) -> TrainResult:
    if resume and out is None:
        raise ValueError("resume=True needs the out_dir of the run to continue")
    if out is not None and not resume and (out / METRICS_FILE).exists():
        raise ValueError(f"{out} already holds a run ({METRICS_FILE}); resume it, or choose "
                         "another output directory")
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
    if resume:
        saved = _restore(out, config, network_info, *parts)
        step, episode, past_wall = saved["step"], saved["episode"], saved["wall_time_s"]
        metrics_rows, eval_rows = saved["metrics_rows"], saved.get("eval_rows", 0)

    def save(name: str, with_replay: bool) -> None:
        counters = {"step": step, "episode": episode, "metrics_rows": metrics_rows,
                    "eval_rows": eval_rows, "epsilon": current_epsilon(config, step, episode)}
        wall = past_wall + time.perf_counter() - start
        _save(out / name, config, network_info, *parts, counters=counters, wall=wall,
              with_replay=with_replay, device=device, command=command)

    log = eval_log = None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        log = MetricsLog(out / METRICS_FILE, METRICS_COLUMNS, metrics_rows if resume else None)
        if config.eval_interval:
            eval_log = MetricsLog(out / EVAL_FILE, EVAL_COLUMNS, eval_rows if resume else None)
    rows: list[dict[str, Any]] = []
    evals: list[dict[str, Any]] = []
    bar = tqdm(total=config.total_steps, initial=step, disable=not progress, file=sys.stderr,
               unit="step", dynamic_ncols=True)

    # A fresh episode in every environment (on resume too: environment state is not saved).
    obs, _ = envs.reset(seed=config.seed + step)
    if atari:
        buffer.start(obs)
    new_game = np.zeros(n, dtype=bool)  # Atari: envs that this step will reset (NEXT_STEP)
    ep_return = np.zeros(n)
    ep_length = np.zeros(n, dtype=np.int64)
    loss_sum, loss_count = torch.zeros((), device=device), 0
    start, start_step = time.perf_counter(), step

    while step < config.total_steps:
        # 1. act: a random action with probability epsilon, else argmax_a Q(s, a)
        epsilon = current_epsilon(config, step, episode)
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
        if step >= config.learning_starts and _crossed(step, config.train_freq, n):
            if config.anneal_lr:
                # lr_t = lr (1 - t / T)
                optimizer.param_groups[0]["lr"] = config.lr * (1.0 - step / config.total_steps)
            loss_sum += train_phase(online, target_net, optimizer, buffer, config, device)
            loss_count += config.gradient_steps

        # 5. sync: θ⁻ ← τ θ + (1 - τ) θ⁻ every target_update_interval steps
        if _crossed(step, config.target_update_interval, n):
            polyak_update(target_net, online, config.tau)

        # 6. log every finished episode
        if done.any():
            loss_mean = loss_sum.item() / loss_count if loss_count else math.nan
            loss_sum.zero_()
            loss_count = 0
            sps = (step - start_step) / max(time.perf_counter() - start, 1e-9)
            for i in np.flatnonzero(done):
                episode += 1
                row = {"step": step, "episode": episode, "return": round(float(ep_return[i]), 4),
                       "length": int(ep_length[i]), "epsilon": round(epsilon, 4),
                       "loss": round(loss_mean, 6), "sps": round(sps)}
                loss_mean = math.nan  # the loss belongs to the first row of this step
                rows.append(row)
                metrics_rows += 1
                if log is not None:
                    log.write(row)
                ep_return[i], ep_length[i] = 0.0, 0
            bar.update(step - bar.n)
            bar.set_postfix({"return": rows[-1]["return"], "sps": rows[-1]["sps"]}, refresh=False)

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
            save("last", config.checkpoint_replay)

    wall = time.perf_counter() - start
    bar.update(step - bar.n)
    bar.close()
    envs.close()
    for opened in (log, eval_log):
        if opened is not None:
            opened.close()
    if out is not None:
        save("last", config.checkpoint_replay)  # what --resume extends
        save("final", False)  # what evaluate loads (no replay buffer: small)
    return TrainResult(config=config, network=online.eval(), target_network=target_net.eval(),
                       buffer=buffer, episodes=rows, evals=evals, steps=step, wall_time_s=wall,
                       out_dir=out)


def _save(
    path: Path, config: DQNConfig, network_info: dict[str, Any], online: nn.Module,
    target_net: nn.Module, optimizer: torch.optim.Optimizer, buffer: ReplayBuffer,
    act_rng: np.random.Generator, *, counters: dict[str, Any], wall: float, with_replay: bool,
    device: torch.device, command: str | None,
) -> None:
    """Write a checkpoint: tensors to safetensors, the rest to the sidecar."""
    tensors = {**with_prefix("online", online.state_dict()),
               **with_prefix("target", target_net.state_dict()),
               "rng/torch": torch.get_rng_state()}
    opt_tensors, opt_meta = optimizer_to_tensors(optimizer)
    tensors.update(opt_tensors)
    if with_replay:
        replay = {k: torch.from_numpy(v) for k, v in buffer.state_dict().items()}
        tensors.update(with_prefix("replay", replay))
    sidecar = provenance(
        command=command, device=device, wall_time_s=wall, format=FORMAT_VERSION,
        name=path.name, config=config.to_dict(), **counters, network=network_info,
        optimizer=opt_meta, replay_size=len(buffer) if with_replay else 0,
        rng={"act": act_rng.bit_generator.state, "replay": buffer.rng.bit_generator.state},
    )
    save_checkpoint(path, tensors, sidecar)


def _restore(
    out: Path, config: DQNConfig, network_info: dict[str, Any], online: nn.Module,
    target_net: nn.Module, optimizer: torch.optim.Optimizer, buffer: ReplayBuffer,
    act_rng: np.random.Generator,
) -> dict[str, Any]:
    """Load ``out/last`` into the given objects; return its sidecar (counters and all)."""
    tensors, sidecar = load_checkpoint(out, "last")
    _check_same_run(DQNConfig.from_dict(sidecar["config"]), config, out)
    check_compatible(sidecar, network=config.network, hidden=config.hidden,
                     obs_shape=tuple(network_info["obs_shape"]),
                     n_actions=network_info["n_actions"])
    load_network_state(online, strip_prefix("online", tensors), f"{out}/last")
    load_network_state(target_net, strip_prefix("target", tensors), f"{out}/last")
    optimizer_from_tensors(optimizer, tensors, sidecar["optimizer"])
    replay = strip_prefix("replay", tensors)
    if replay:
        buffer.load_state_dict({k: v.numpy() for k, v in replay.items()})
    act_rng.bit_generator.state = sidecar["rng"]["act"]
    buffer.rng.bit_generator.state = sidecar["rng"]["replay"]
    torch.set_rng_state(tensors["rng/torch"])
    return sidecar


# --- command line -----------------------------------------------------------------------


def _check_same_run(saved: DQNConfig, config: DQNConfig, out: Path) -> None:
    """Resuming must not change the algorithm: only RESUMABLE_OVERRIDES may differ."""
    for f in dataclasses.fields(DQNConfig):
        if f.name in RESUMABLE_OVERRIDES:
            continue
        old, new = getattr(saved, f.name), getattr(config, f.name)
        if old != new:
            raise ValueError(
                f"resuming {out} must keep its saved config, where {f.name} is {old!r}, not "
                f"{new!r}; only {', '.join(RESUMABLE_OVERRIDES)} may change (start a new run "
                "for a different config)"
            )


def _resume_config(out: Path, overrides: dict[str, Any]) -> DQNConfig:
    """The saved config of the run in ``out``, with the overrides given on the command line."""
    _, sidecar = load_checkpoint(out, "last")
    saved = DQNConfig.from_dict(sidecar["config"])
    config = dataclasses.replace(saved, **overrides)
    _check_same_run(saved, config, out)
    return config


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m duel_tutorial.train",
        description="Train a (dueling) DQN on a gymnasium environment. Every hyperparameter "
        "has a flag; flags override the preset.",
    )
    parser.add_argument("--out", type=Path, default=None,
                        help="run directory for metrics.csv and checkpoints "
                        "[default: runs/<env>-s<seed>]")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cartpole",
                        help="starting values for every hyperparameter [default: cartpole]")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its last checkpoint")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar (it is also off when stderr is not a terminal)")
    add_config_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    overrides = config_overrides(args)
    try:
        if args.resume:
            if args.out is None:
                raise ValueError("--resume needs --out, the run directory to continue")
            config = _resume_config(args.out, overrides)
        else:
            config = dataclasses.replace(PRESETS[args.preset], **overrides)
        out = args.out or Path("runs") / f"{config.env_id.replace('/', '-')}-s{config.seed}"
        command = " ".join([parser.prog, *(sys.argv[1:] if argv is None else argv)])
        result = train(config, out, resume=args.resume,
                       progress=not args.no_progress and sys.stderr.isatty(), command=command)
    except ValueError as err:
        parser.exit(2, f"{parser.prog}: error: {err}\n")
    returns = result.returns()
    tail = returns[-10:].mean() if len(returns) else math.nan
    print(f"trained {config.env_id} ({config.network}) to step {result.steps} in "
          f"{result.wall_time_s:.1f} s; mean return of the last {min(10, len(returns))} episodes: "
          f"{tail:.1f}; final checkpoint: {out / 'final.safetensors'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
