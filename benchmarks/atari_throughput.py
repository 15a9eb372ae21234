"""Training throughput on Pong: duel_tutorial's Atari DQN against Stable-Baselines3's.

Both run the whole training loop in one process, interleaved run by run so that a busy
machine slows both alike: act epsilon-greedily, step 4 environments, store the
transitions, one gradient step on a minibatch of 32 every 4 environment steps, copy
the target network every 1,000 steps. The hyperparameters are read from our ``"atari"``
preset (``duel_tutorial.config.preset("atari")``): batch, replay capacity (100,000),
learning rate and Adam's epsilon, discount, target interval, gradient clipping at 10,
Huber loss, epsilon schedule 1 -> 0.01, 4 environments, so that the two cannot
drift apart. ``--preset atari-fast`` runs the fast recipe on both sides instead: 3-step
returns (SB3's ``n_steps``), one update per 10 environment steps (SB3: 2 updates every 5
vector steps of 4 envs, the same count), a target copy every 5,000 steps.

What is measured: the **learning phase** only. Each implementation trains twice per
repeat, once for ``--learning-starts`` steps and one more vector step (the warm-up,
which fills the replay buffer and ends with the first gradient step) and once for
``--steps`` steps more, and its rate is

    SPS = steps / (seconds of the long run - seconds of the short run),

so construction (environments, networks, the replay buffer's memory) and the warm-up
cancel out. Each run is timed from before its environments are made to the end of
training; one short untimed run of each implementation comes first, so that imports and
one-time set-up fall in no timed run. Next to SPS (wall clock), steps per CPU-second of
this process (all its threads, the same subtraction) says what a step costs and moves
less than SPS when other programs share the CPU. Epsilon decays over the warm-up
(``exploration_fraction = learning_starts / total``) and stays at its floor 0.01 in the
measured phase, so nearly every step calls the network to act, as in 90% of a real
run. One "step" is one agent step of one environment (4 emulator frames).

- ``ours``: ``duel_tutorial.train.train(preset("atari", ...))`` in memory (no files):
  ale-py's C++ ``AtariVectorEnv`` (4 envs, NEXT_STEP autoreset), ``FrameReplayBuffer``
  (each frame stored once), ``DuelingQNetwork`` (the specification's architecture, mean
  aggregation, 1/sqrt(2) on the combined gradient), Double DQN targets, fused Adam.
- ``ours (Nature CNN, max target)``: the same loop with ``network="single"`` and
  ``double_dqn=False``: the network and target that SB3 computes, to separate the cost
  of the algorithm (dueling heads, Double DQN's extra forward pass) from that of the loop.
- ``SB3``: ``stable_baselines3.DQN("CnnPolicy")`` (the single-stream Nature CNN) as it
  ships, on SB3's own Atari preprocessing: ``make_atari_env`` (``AtariWrapper``: 30
  no-ops, frame skip 4 with max-pool, episodic life, FIRE on reset, 84x84 grayscale by
  OpenCV, rewards clipped; 4 envs in a ``DummyVecEnv``, stepped one after the other in
  Python) with ``VecFrameStack(n_stack=4)``; DQN adds ``VecTransposeImage``, so its
  network sees ``(4, 84, 84) uint8`` channels first, like ours. The game is the same id
  with ``frameskip=1`` and ``repeat_action_probability=0`` (SB3's wrapper does the frame
  skip; no sticky actions, as in our preset). SB3 counts ``train_freq`` in vector steps
  (one ``env.step`` of all 4 envs), so ``train_freq=1`` with 4 envs is one phase per 4
  environment steps, as our ``train_freq=4``; ``target_update_interval`` and
  ``learning_starts`` it counts in environment steps, as we do. ``gradient_steps=1``,
  Adam with ``eps`` from the preset (SB3's optimizer is not fused),
  ``optimize_memory_usage=False`` (SB3's default: observations and next observations
  stored as full stacks; its arrays are allocated lazily, so a short run touches little
  of the 5.6 GB it reserves). SB3 has no Double DQN: its target is the max.

Both sides use the same device (``--device``) and the same number of torch threads
(``--threads``, default 1; 0 keeps torch's default, one per core, as our preset does).
One thread is the default because on a shared CPU torch's OpenMP threads wait for each
other: on the book's 2-core machine, busy with other jobs, ``ours (Nature CNN, max
target)`` took about 8x longer (wall clock) with 2 threads than with 1. ale-py's vector env
picks its own thread count. Parameter counts of both online networks are printed.

Usage (needs ``pip install -r benchmarks/requirements.txt``)::

    nice .venv/bin/python benchmarks/atari_throughput.py --steps 2000 --learning-starts 200 \
        --repeats 2
    .venv/bin/python benchmarks/atari_throughput.py --device cuda --steps 20000 --json /tmp/a.json
    .venv/bin/python benchmarks/atari_throughput.py --preset atari-fast --steps 4000

On a shared CPU the absolute rates are low and move with the load; the ratio is the
number to read.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from collections.abc import Callable
from importlib import metadata
from typing import Any

import numpy as np
import torch
from torch import nn

from duel_tutorial.config import DQNConfig, preset
from duel_tutorial.provenance import library_versions, provenance, write_provenance
from duel_tutorial.train import train

OURS = "ours"
OURS_NATURE = "ours (Nature CNN, max target)"
SB3 = "SB3"


PRESETS = ("atari", "atari-fast")


def benchmark_config(recipe: str, env_id: str, total: int, learning_starts: int, seed: int,
                     device: str, **overrides: Any) -> DQNConfig:
    """The recipe's preset cut to ``total`` steps; epsilon reaches its floor at
    ``learning_starts``."""
    return preset(recipe, env_id=env_id, total_steps=total, learning_starts=learning_starts,
                  exploration_fraction=learning_starts / total, seed=seed, device=device,
                  eval_interval=0, checkpoint_interval=0, torch_threads=0, **overrides)


def sb3_update_period(config: DQNConfig) -> tuple[int, int]:
    """SB3's ``(train_freq, gradient_steps)`` for our ``train_freq`` (environment steps).

    SB3 counts ``train_freq`` in vector steps (one step of all ``num_envs``), so one
    update per 10 environment steps with 4 envs is 2 updates every 5 vector steps (20
    environment steps): the same number of updates.
    """
    period = math.lcm(config.train_freq, config.num_envs)  # environment steps
    return period // config.num_envs, config.gradient_steps * period // config.train_freq


Timing = tuple[float, float, int]  # (wall seconds, CPU seconds of this process, parameters)


def n_parameters(network: nn.Module) -> int:
    return sum(p.numel() for p in network.parameters())


def ours(config: DQNConfig) -> Timing:
    """Time ``train(config)`` in memory (no files, no checkpoints), environments included."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = train(config)
    return (time.perf_counter() - wall, time.process_time() - cpu,
            n_parameters(result.network))


def sb3(config: DQNConfig) -> Timing:
    """Time SB3's DQN with the hyperparameters of ``config``, environments included."""
    from stable_baselines3 import DQN
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.vec_env import VecFrameStack

    c = config
    train_freq, gradient_steps = sb3_update_period(c)
    wall, cpu = time.perf_counter(), time.process_time()
    env = VecFrameStack(make_atari_env(c.env_id, n_envs=c.num_envs, seed=c.seed,
                                       env_kwargs={"frameskip": 1,
                                                   "repeat_action_probability": 0.0}),
                        n_stack=4)
    model = DQN(
        "CnnPolicy", env, learning_rate=c.lr, buffer_size=c.buffer_capacity,
        learning_starts=c.learning_starts, batch_size=c.batch_size, tau=c.tau, gamma=c.gamma,
        train_freq=train_freq, gradient_steps=gradient_steps, n_steps=c.n_step,
        target_update_interval=c.target_update_interval,
        exploration_fraction=c.exploration_fraction, exploration_initial_eps=c.epsilon_start,
        exploration_final_eps=c.epsilon_end, max_grad_norm=c.max_grad_norm,
        optimize_memory_usage=False, seed=c.seed, device=c.device, verbose=0,
        policy_kwargs={"optimizer_kwargs": {"eps": c.adam_eps}},
    )
    shape, dtype = model.observation_space.shape, model.observation_space.dtype
    if shape != (4, 84, 84) or dtype != np.uint8:
        raise RuntimeError(f"SB3's network should see (4, 84, 84) uint8; got {shape} {dtype}")
    model.learn(total_timesteps=c.total_steps)
    timing = time.perf_counter() - wall, time.process_time() - cpu, n_parameters(model.q_net)
    env.close()
    return timing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=PRESETS, default="atari",
                        help="the recipe both sides run [default: atari, the paper's]")
    parser.add_argument("--env-id", default="ALE/Pong-v5")
    parser.add_argument("--steps", type=int, default=3_000,
                        help="environment steps of the measured learning phase [default: 3000]")
    parser.add_argument("--learning-starts", type=int, default=1_000,
                        help="warm-up steps before learning (subtracted) [default: 1000]")
    parser.add_argument("--repeats", type=int, default=3, help="runs per implementation")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="device of both sides' networks (ours keeps replay there too)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads for both sides (0: torch's default) [default: 1]")
    parser.add_argument("--update-precision", choices=("bf16", "auto"), default=None,
                        help="add a variant of ours with this update precision")
    parser.add_argument("--compile-update", action="store_true",
                        help="add a variant of ours with the update compiled (with "
                        "--update-precision: both)")
    parser.add_argument("--json", default=None, help="also write the results with provenance")
    args = parser.parse_args()
    recipe = preset(args.preset)
    n_envs, batch = recipe.num_envs, recipe.batch_size
    period = math.lcm(recipe.train_freq, n_envs)  # both sides update alike every period
    if args.steps < period or args.steps % period:
        parser.error(f"--steps must be a positive multiple of {period} (the envs and the "
                     f"update period); got {args.steps}")
    if args.learning_starts < batch or args.learning_starts % n_envs:
        parser.error(f"--learning-starts must be a multiple of {n_envs} and >= {batch} "
                     f"(the batch); got {args.learning_starts}")
    if args.repeats < 1 or args.threads < 0:
        parser.error(f"--repeats must be >= 1 and --threads >= 0; got {args.repeats} and "
                     f"{args.threads}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda asked, but torch sees no CUDA device; use --device cpu")
    if args.threads:
        torch.set_num_threads(args.threads)  # both sides; our config keeps it (torch_threads=0)

    # the warm-up run ends one vector step after learning starts (a config must learn at
    # least once); the long one --steps later, so that their difference is --steps
    warm = args.learning_starts
    short, total = warm + n_envs, warm + n_envs + args.steps
    nature = {"network": "single", "double_dqn": False}
    runs: dict[str, Callable[[DQNConfig], Timing]] = {OURS: ours, OURS_NATURE: ours, SB3: sb3}
    overrides: dict[str, dict[str, Any]] = {OURS: {}, OURS_NATURE: nature, SB3: {}}
    if args.update_precision or args.compile_update:  # the levers of DQNConfig
        lever = {"update_precision": args.update_precision or "fp32",
                 "compile_update": args.compile_update}
        name = f"ours ({lever['update_precision']}" + (", compiled)" if args.compile_update
                                                       else ")")
        runs[name], overrides[name] = ours, lever

    # One short untimed run each first: imports, ROM loading and torch's lazy set-up would
    # otherwise land in the first timed run (and, in a warm-up run, be subtracted).
    for name, run in runs.items():
        run(benchmark_config(args.preset, args.env_id, 2 * batch, batch, args.seed,
                             args.device, **overrides[name]))
    learn_wall: dict[str, list[float]] = {name: [] for name in runs}
    learn_cpu: dict[str, list[float]] = {name: [] for name in runs}
    warmup_wall: dict[str, list[float]] = {name: [] for name in runs}
    params: dict[str, int] = {}
    start = time.perf_counter()
    for r in range(args.repeats):  # interleaved: each repeat runs every implementation once
        for name, run in runs.items():
            seed = args.seed + r
            short_wall, short_cpu, _ = run(benchmark_config(
                args.preset, args.env_id, short, warm, seed, args.device, **overrides[name]))
            long_wall, long_cpu, params[name] = run(benchmark_config(
                args.preset, args.env_id, total, warm, seed, args.device, **overrides[name]))
            warmup_wall[name].append(short_wall)
            learn_wall[name].append(long_wall - short_wall)
            learn_cpu[name].append(long_cpu - short_cpu)
    wall = time.perf_counter() - start

    def rates(seconds: dict[str, list[float]]) -> dict[str, list[float]]:
        return {name: [args.steps / x if x > 0 else math.nan for x in values]
                for name, values in seconds.items()}

    sps_runs, cpu_runs = rates(learn_wall), rates(learn_cpu)
    sps = {name: float(np.median(values)) for name, values in sps_runs.items()}
    per_cpu = {name: float(np.median(values)) for name, values in cpu_runs.items()}

    load = os.getloadavg()[0]
    versions = {**library_versions(), "stable-baselines3": metadata.version("stable-baselines3")}
    print(f"{args.env_id}, {args.preset} recipe (both sides: {period // recipe.train_freq} "
          f"update(s) of batch {batch} per {period} env steps, {recipe.n_step}-step "
          f"returns), learning phase of {args.steps} env steps after {warm} warm-up "
          f"steps, {n_envs} envs, x {args.repeats} repeats (median SPS); "
          f"{args.device}, torch {versions['torch']} ({torch.get_num_threads()} threads), "
          f"SB3 {versions['stable-baselines3']}, load average {load:.1f}")
    print(f"  {'implementation':<31} {'params':>10} {'SPS':>6} {'steps/CPU-s':>12}   SPS runs")
    for name in runs:
        each = ", ".join(f"{v:.1f}" for v in sps_runs[name])
        print(f"  {name:<31} {params[name]:>10,} {sps[name]:>6.1f} {per_cpu[name]:>12.1f}"
              f"   ({each})")
    print(f"ratio ours / SB3:                              {sps[OURS] / sps[SB3]:.2f}x")
    print(f"ratio ours (Nature CNN, max target) / SB3:     {sps[OURS_NATURE] / sps[SB3]:.2f}x")
    for name in runs:
        if name not in (OURS, OURS_NATURE, SB3):
            print(f"ratio {name} / SB3: {sps[name] / sps[SB3]:.2f}x; / ours: "
                  f"{sps[name] / sps[OURS]:.2f}x")
    if args.json:
        write_provenance(args.json, provenance(
            device=args.device, wall_time_s=wall, versions=versions, preset=args.preset,
            env_id=args.env_id,
            steps=args.steps, learning_starts=warm, repeats=args.repeats, seed=args.seed,
            torch_threads=torch.get_num_threads(), cpu_count=os.cpu_count(),
            load_average_1min=round(load, 2), parameters=params,
            steps_per_second={name: round(v, 1) for name, v in sps.items()},
            steps_per_cpu_second={name: round(v, 1) for name, v in per_cpu.items()},
            learning_wall_seconds={n: [round(v, 2) for v in x] for n, x in learn_wall.items()},
            learning_cpu_seconds={n: [round(v, 2) for v in x] for n, x in learn_cpu.items()},
            warmup_wall_seconds={n: [round(v, 2) for v in x] for n, x in warmup_wall.items()},
            ratio_ours_over_sb3=round(sps[OURS] / sps[SB3], 3),
        ))


if __name__ == "__main__":
    main()
