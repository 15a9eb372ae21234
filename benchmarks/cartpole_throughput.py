"""Training throughput on CartPole-v1: duel_tutorial's DQN against Stable-Baselines3's.

Both train the same thing in one process, interleaved run by run so that a busy
machine slows both alike: CartPole-v1, the same number of environment steps, the same
single-stream MLP (4 -> 64 -> 127 -> 2, 8,831 parameters: the parameter-matched
baseline of the book) and the hyperparameters of our CartPole preset (``DQNConfig()``:
batch, train frequency, gradient steps, target interval, replay capacity, learning
start, discount, learning rate annealed linearly to 0, gradient clipping, linear epsilon
schedule), read from the config so the two cannot drift apart. The one change: SB3's
DQN only has the Huber loss, so our side uses it too here (the preset's MSE costs the
same). Both use one torch thread (our ``train`` sets ``torch_threads=1``; SB3 runs
under ``torch.set_num_threads(1)`` too, its fastest setting for such a small network;
``--sb3-threads 0`` keeps torch's default).

Reported: steps per second (SPS, wall time of the whole ``learn``/``train`` call) for

- ``ours (single)``: ``duel_tutorial.train.train`` with ``network="single"``,
- ``ours (dueling)``: the same with the dueling network (8,835 parameters), for reference,
- ``SB3``: ``stable_baselines3.DQN`` with ``net_arch=[64, 127]``, as it ships,
- ``SB3 + fused Adam``: the same with ``optimizer_kwargs={"fused": True}``, to show how
  much of the difference is the optimizer (we use fused Adam) and how much the loop.

Usage (needs ``pip install -r benchmarks/requirements.txt``)::

    nice .venv/bin/python benchmarks/cartpole_throughput.py --repeats 3
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import gymnasium as gym
import numpy as np
import torch

from duel_tutorial.config import DQNConfig
from duel_tutorial.provenance import provenance
from duel_tutorial.train import train

HIDDEN = (64, 127)  # MLPQNetwork widths of our "single" network with hidden=64


def ours(steps: int, seed: int, network: str) -> float:
    """Seconds for ``train`` on the CartPole preset (in memory: no files, no checkpoints)."""
    config = DQNConfig(total_steps=steps, seed=seed, network=network, loss="huber",
                       device="cpu")
    start = time.perf_counter()
    train(config)
    return time.perf_counter() - start


def sb3(steps: int, seed: int, threads: int, fused: bool) -> float:
    """Seconds for SB3's ``DQN.learn`` with the same hyperparameters as our preset."""
    from stable_baselines3 import DQN

    c = DQNConfig()
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        model = DQN(
            "MlpPolicy", gym.make("CartPole-v1"),
            # SB3 calls a schedule with the fraction of training left: linear to 0 like ours
            learning_rate=(lambda left: c.lr * left) if c.anneal_lr else c.lr,
            buffer_size=c.buffer_capacity, learning_starts=c.learning_starts,
            batch_size=c.batch_size, tau=c.tau, gamma=c.gamma, train_freq=c.train_freq,
            gradient_steps=c.gradient_steps, target_update_interval=c.target_update_interval,
            exploration_fraction=c.exploration_fraction,
            exploration_initial_eps=c.epsilon_start, exploration_final_eps=c.epsilon_end,
            max_grad_norm=c.max_grad_norm, seed=seed, device="cpu", verbose=0,
            policy_kwargs={"net_arch": list(HIDDEN),
                           "optimizer_kwargs": {"fused": True} if fused else {}},
        )
        start = time.perf_counter()
        model.learn(total_timesteps=steps)
        return time.perf_counter() - start
    finally:
        torch.set_num_threads(before)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=DQNConfig().total_steps,
                        help="environment steps per run [default: the preset's total_steps]")
    parser.add_argument("--repeats", type=int, default=3, help="runs per implementation")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sb3-threads", type=int, default=1,
                        help="torch threads for SB3 (0: torch's default) [default: 1]")
    args = parser.parse_args()

    runs: dict[str, Callable[[int], float]] = {
        "ours (single)": lambda s: ours(args.steps, s, "single"),
        "ours (dueling)": lambda s: ours(args.steps, s, "dueling"),
        "SB3": lambda s: sb3(args.steps, s, args.sb3_threads, fused=False),
        "SB3 + fused Adam": lambda s: sb3(args.steps, s, args.sb3_threads, fused=True),
    }
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    start = time.perf_counter()
    for r in range(args.repeats):  # interleaved: each repeat runs every implementation once
        for name, run in runs.items():
            seconds[name].append(run(args.seed + r))
    sps = {name: args.steps / np.median(s) for name, s in seconds.items()}

    record = provenance(wall_time_s=time.perf_counter() - start)
    print(f"CartPole-v1, {args.steps} steps x {args.repeats} repeats (median SPS), "
          f"{record['device']}, torch {record['versions']['torch']}, "
          f"SB3 threads: {args.sb3_threads or torch.get_num_threads()}")
    for name, value in sps.items():
        each = ", ".join(f"{args.steps / s:.0f}" for s in seconds[name])
        print(f"  {name:18s} {value:7.0f} SPS   (runs: {each})")
    base = sps["SB3"]
    print(f"ratio ours (single) / SB3:              {sps['ours (single)'] / base:.2f}x")
    print(f"ratio ours (dueling) / SB3:             {sps['ours (dueling)'] / base:.2f}x")
    print(f"ratio ours (single) / SB3 + fused Adam: "
          f"{sps['ours (single)'] / sps['SB3 + fused Adam']:.2f}x")


if __name__ == "__main__":
    main()
