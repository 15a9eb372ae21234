"""Does Adam's epsilon alone decide how many hidden units die? A controlled test on Pong.

    nice python experiments/adam_eps_units.py              # -> experiments/adam_eps_units/
    nice python experiments/adam_eps_units.py --eps 1e-8 --lr 1e-5 --name adam_eps_units_lr1e-5

Chapter 15 found more than half of the dueling network's 512 hidden units dead in every
Pong run with Adam's ``eps = 1e-8``, from the first evaluation on, and at most one in the
finished runs with ``eps = 1.5e-4``. Those runs differ in what they played too. This test
holds everything else still: one replay of random play, filled once, the way a run's
replay stands at its first update (``learning_starts`` transitions, 20,000 for
``atari-fast``), and for each ``eps`` and seed a fresh network trained on it by the
trainer's own update (:func:`duel_tutorial.learn.train_phase`: ``atari-fast``'s 3-step
Double DQN targets, Huber loss, clipping at 10, the 1/sqrt(2) rescaling, Adam at lr 1e-4)
with the target copied every ``target_update_interval / train_freq`` updates, as in a
run. Every ``--every`` updates it counts the dead and dormant units
(:func:`duel_tutorial.model.hidden_unit_activity`) on 4,096 states of that replay, the
same states for every network.

The second command asks whether it is the epsilon itself or the larger steps a small
epsilon lets Adam take: the same test with ``eps = 1e-8`` and a learning rate ten times
smaller.

What it leaves out: a run's replay changes as the agent learns, and its epsilon falls;
here the data stay those of random play. So it tests the optimizer's share in the
dying, not the whole of a run.

Writes, in ``--out``:

- ``<name>.csv``: adam_eps, seed, update, dead, dormant, loss (the mean loss of the
  updates since the previous row; empty at update 0);
- ``<name>.json``: provenance (command, commit, device, processor, versions, wall time),
  the config, the replay's size and seed, and the settings.
"""

from __future__ import annotations

import argparse
import copy
import csv
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import torch

from duel_tutorial.config import DQNConfig, preset
from duel_tutorial.envs import EnvStepper, make_training_envs
from duel_tutorial.learn import train_phase
from duel_tutorial.model import hidden_unit_activity, make_network
from duel_tutorial.provenance import provenance, write_provenance
from duel_tutorial.replay import FrameReplayBuffer
from duel_tutorial.targets import polyak_update

OUT = Path(__file__).resolve().parent / "adam_eps_units"
COLUMNS = ("adam_eps", "seed", "update", "dead", "dormant", "loss")
PROBE_SEED = 2016  # the states the units are counted on


def random_replay(config: DQNConfig, transitions: int, seed: int
                  ) -> tuple[FrameReplayBuffer, tuple[int, ...], int]:
    """A replay holding ``transitions`` steps of uniformly random play in the config's
    vector env, stored as the trainer stores them; with its observation shape and the
    number of actions."""
    envs = EnvStepper(make_training_envs(config.env_id, config.num_envs, seed))
    buffer = FrameReplayBuffer(config.buffer_capacity, envs.num_envs, envs.obs_shape[1:],
                               envs.obs_shape[0], seed=seed)
    rng = np.random.default_rng(seed)
    buffer.start(envs.reset(seed=seed))
    while len(buffer) < transitions:
        transition, _, _ = envs.step(rng.integers(0, envs.n_actions, envs.num_envs))
        buffer.add(*transition)
    envs.close()
    return buffer, envs.obs_shape, envs.n_actions


def train_on_fixed_replay(config: DQNConfig, buffer: FrameReplayBuffer,
                          obs_shape: tuple[int, ...], n_actions: int, probe: torch.Tensor,
                          updates: int, every: int) -> list[dict]:
    """Rows of :data:`COLUMNS` for one network trained ``updates`` times on ``buffer``."""
    device = torch.device("cpu")
    torch.manual_seed(config.seed)
    online = make_network(config, obs_shape, n_actions)
    target = copy.deepcopy(online).requires_grad_(False)
    optimizer = torch.optim.Adam(online.parameters(), lr=config.lr, eps=config.adam_eps,
                                 fused=True)
    buffer.rng = np.random.default_rng(config.seed)  # each seed samples its own batches
    sync = config.target_update_interval // config.train_freq  # updates between copies

    def row(update: int, loss: float | str) -> dict:
        units = hidden_unit_activity(online, probe)
        return {"adam_eps": config.adam_eps, "seed": config.seed, "update": update,
                "dead": units["dead"], "dormant": units["dormant"], "loss": loss}

    rows, losses = [row(0, "")], []
    for update in range(1, updates + 1):
        losses.append(float(train_phase(online, target, optimizer, buffer, config, device)))
        if update % sync == 0:
            polyak_update(target, online, config.tau)
        if update % every == 0:
            rows.append(row(update, round(float(np.mean(losses)), 6)))
            losses = []
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eps", type=float, nargs="+", default=[1e-8, 1.5e-4],
                        help="Adam epsilons to compare [default: 1e-8 1.5e-4]")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0 .. SEEDS-1 per eps")
    parser.add_argument("--updates", type=int, default=2_000,
                        help="updates per network [default: 2000; a run of atari-fast "
                             "makes its first 2,001 by step 40,000]")
    parser.add_argument("--every", type=int, default=250,
                        help="updates between counts [default: 250]")
    parser.add_argument("--transitions", type=int, default=None,
                        help="random-play transitions in the replay [default: the "
                             "preset's learning_starts]")
    parser.add_argument("--observations", type=int, default=4096,
                        help="replayed states the units are counted on [default: 4096]")
    parser.add_argument("--lr", type=float, default=None,
                        help="Adam's learning rate [default: the preset's, 1e-4]")
    parser.add_argument("--preset", default="atari-fast")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--name", default="adam_eps_units")
    args = parser.parse_args(argv)
    for flag in ("seeds", "updates", "every", "observations"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag} must be a positive int; got {getattr(args, flag)}")
    if any(not eps > 0 for eps in args.eps):
        parser.error(f"--eps must be positive numbers; got {args.eps}")
    if args.lr is not None and not args.lr > 0:
        parser.error(f"--lr must be a positive number; got {args.lr}")
    try:
        base = preset(args.preset, torch_threads=1, device="cpu",
                      **({} if args.lr is None else {"lr": args.lr}))
    except ValueError as err:
        parser.error(str(err))
    transitions = args.transitions or base.learning_starts
    if transitions < base.batch_size:
        parser.error(f"--transitions must be at least the batch size, {base.batch_size}; "
                     f"got {transitions}")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # restored below: a caller's process keeps its own count
    try:
        measure(args, base, transitions, sys.argv[1:] if argv is None else argv)
    finally:
        torch.set_num_threads(threads)
    return 0


def measure(args: argparse.Namespace, base: DQNConfig, transitions: int,
            argv: list[str]) -> None:
    """Train every (eps, seed) network on one replay of random play; write the rows."""
    record = provenance(
        command=["python", "experiments/adam_eps_units.py", *argv],
        device=torch.device("cpu"), config=base.to_dict(), preset=args.preset,
        eps=args.eps, seeds=list(range(args.seeds)), updates=args.updates,
        every=args.every, replay={"what": "uniformly random play", "seed": 0,
                                  "transitions": transitions},
        probe={"observations": args.observations, "seed": PROBE_SEED},
        torch_threads=1)
    start = time.perf_counter()
    buffer, obs_shape, n_actions = random_replay(base, transitions, seed=0)
    probe = buffer.sample(args.observations, rng=np.random.default_rng(PROBE_SEED)).obs
    rows = []
    for eps in args.eps:
        for seed in range(args.seeds):
            config = dataclasses.replace(base, adam_eps=eps, seed=seed)
            rows += train_on_fixed_replay(config, buffer, obs_shape, n_actions, probe,
                                          args.updates, args.every)
            last = rows[-1]
            print(f"eps {eps:g}, seed {seed}: {last['dead']} dead, {last['dormant']} "
                  f"dormant of 512 after {args.updates:,} updates "
                  f"({time.perf_counter() - start:.0f} s so far)", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    with (args.out / f"{args.name}.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    record["wall_time_s"] = round(time.perf_counter() - start, 1)
    write_provenance(args.out / f"{args.name}.json", record)


if __name__ == "__main__":
    sys.exit(main())
