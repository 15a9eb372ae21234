"""Environment throughput: preprocessed Atari steps per second, one env vs the vector env.

Random actions, the training preset of :mod:`duel_tutorial.envs` (no network in the
loop), each pipeline run for ``--seconds`` after a short warm-up. One "step" is one agent
step of one environment (4 emulator frames); the vector env's rate counts every
sub-environment's steps. Two rates per pipeline: steps per wall-clock second, and steps
per CPU-second of this process (all its threads), which says what the pipeline costs
and moves less than the wall-clock rate when other programs share the CPU.

    .venv/bin/python benchmarks/atari_env_throughput.py --env-id ALE/Pong-v5 --num-envs 8
    .venv/bin/python benchmarks/atari_env_throughput.py --json /tmp/throughput.json

Numbers depend on the machine and on what else runs on it: report them with both.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from duel_tutorial.envs import make_atari_env, make_atari_vector_env
from duel_tutorial.provenance import provenance, write_provenance


def _timed(step, seconds: float, warmup: int) -> tuple[int, float, float]:
    """Call ``step()`` ``warmup`` times, then for ``seconds``: (calls, wall s, CPU s)."""
    for _ in range(warmup):
        step()
    calls, wall0, cpu0 = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - wall0 < seconds:
        step()
        calls += 1
    return calls, time.perf_counter() - wall0, time.process_time() - cpu0


def single_env_sps(env_id: str, seconds: float, seed: int = 0) -> tuple[float, float]:
    """(steps per wall s, steps per CPU s) of :func:`make_atari_env`, random actions."""
    env = make_atari_env(env_id, seed=seed)
    env.reset(seed=seed)

    def step() -> None:
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()

    calls, wall, cpu = _timed(step, seconds, warmup=50)
    env.close()
    return calls / wall, calls / cpu


def vector_env_sps(
    env_id: str, num_envs: int, seconds: float, seed: int = 0, num_threads: int = 0
) -> tuple[float, float]:
    """(steps per wall s, steps per CPU s) of :func:`make_atari_vector_env`, all envs."""
    env = make_atari_vector_env(env_id, num_envs, seed=seed, num_threads=num_threads)
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    n_actions = int(env.single_action_space.n)

    def step() -> None:
        env.step(rng.integers(0, n_actions, size=num_envs, dtype=np.int64))  # autoresets

    calls, wall, cpu = _timed(step, seconds, warmup=20)
    env.close()
    return calls * num_envs / wall, calls * num_envs / cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env-id", default="ALE/Pong-v5")
    parser.add_argument("--num-envs", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0, help="timed run per pipeline")
    parser.add_argument("--num-threads", type=int, default=0, help="0: ale-py chooses")
    parser.add_argument("--json", default=None, help="also write the results with provenance")
    args = parser.parse_args()

    t0 = time.perf_counter()
    rows = [
        ("gymnasium wrappers, 1 env", single_env_sps(args.env_id, args.seconds)),
        ("AtariVectorEnv, 1 env", vector_env_sps(args.env_id, 1, args.seconds)),
        (f"AtariVectorEnv, {args.num_envs} envs",
         vector_env_sps(args.env_id, args.num_envs, args.seconds, num_threads=args.num_threads)),
    ]
    wall = time.perf_counter() - t0
    load = os.getloadavg()[0]
    print(f"{args.env_id}, random actions, {os.cpu_count()} CPUs, load average {load:.1f}, "
          f"{args.seconds:g} s each")
    print(f"{'pipeline':<28} {'steps/s':>9} {'steps/CPU-s':>12} {'frames/s':>9}")
    for name, (per_wall, per_cpu) in rows:
        print(f"{name:<28} {per_wall:>9.0f} {per_cpu:>12.0f} {4 * per_wall:>9.0f}")
    if args.json:
        write_provenance(args.json, provenance(
            wall_time_s=wall, env_id=args.env_id, num_envs=args.num_envs,
            num_threads=args.num_threads, seconds=args.seconds, cpu_count=os.cpu_count(),
            load_average_1min=round(load, 2),
            steps_per_second={name: round(w, 1) for name, (w, _) in rows},
            steps_per_cpu_second={name: round(c, 1) for name, (_, c) in rows},
        ))


if __name__ == "__main__":
    main()
