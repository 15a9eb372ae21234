"""Ship a trained run as package data: ``duel_tutorial/pretrained/NAME.*``.

    .venv/bin/python scripts/export_pretrained.py runs/pong-s0 --name pong --episodes 30

Loads the run's ``final`` checkpoint (or ``--checkpoint last``, the latest periodic one,
to ship a run that is still going) on the CPU in this (fresh) process, evaluates it
with the protocol of Wang et al. (2016) (:func:`duel_tutorial.evaluate.evaluate`: up to
30 no-op starts, epsilon 0.001, full games, raw scores), and writes

- ``NAME.safetensors``: the online network only (float32; ~6.7 MB for Pong), with the
  sidecar in its metadata, loadable by :func:`duel_tutorial.load_pretrained`;
- ``NAME.json``: the same sidecar, readable: the training run's config, steps, frames,
  wall time, device, library versions and git commit, plus ``evaluation`` (protocol,
  seed, every return, mean, std) and ``export`` (this command's provenance);
- ``NAME_metrics.csv`` and ``NAME_eval.csv``: the run's training log and its periodic
  evaluations up to the shipped checkpoint's step, which the Atari chapter plots.

It refuses to ship an agent whose mean return is below ``--min-return``.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import ale_py
import torch

from duel_tutorial.checkpoint import (
    PRETRAINED_DIR,
    load_policy,
    save_checkpoint,
    with_prefix,
)
from duel_tutorial.envs import EVAL_EPSILON, FRAME_SKIP
from duel_tutorial.evaluate import evaluate
from duel_tutorial.provenance import provenance


def copy_log(source: Path, dest: Path, last_step: int) -> None:
    """Copy a run's CSV log, keeping the header and the rows up to ``last_step``."""
    with source.open(newline="") as f_in, dest.open("w", newline="") as f_out:
        reader, writer = csv.reader(f_in), csv.writer(f_out, lineterminator="\n")
        writer.writerow(next(reader))
        writer.writerows(row for row in reader if int(row[0]) <= last_step)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="run directory with final.safetensors")
    parser.add_argument("--name", default="pong", help="name of the shipped agent")
    parser.add_argument("--checkpoint", default="final", choices=("final", "last"),
                        help="which checkpoint of the run to ship")
    parser.add_argument("--episodes", type=int, default=30, help="evaluation games")
    parser.add_argument("--seed", type=int, default=2016, help="evaluation seed")
    parser.add_argument("--min-return", type=float, default=19.0,
                        help="refuse to ship below this mean return")
    parser.add_argument("--out", type=Path, default=PRETRAINED_DIR)
    args = parser.parse_args(argv)
    ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)

    network, config, sidecar = load_policy(args.run, args.checkpoint, device="cpu")
    start = time.perf_counter()
    with torch.no_grad():
        returns = evaluate(network, config.env_id, args.episodes, seed=args.seed)
    wall = time.perf_counter() - start
    mean, std = float(returns.mean()), float(returns.std())
    print(f"{config.env_id}: {args.episodes} games, mean {mean:.2f}, std {std:.2f}, "
          f"min {returns.min():.0f}, max {returns.max():.0f} ({wall:.0f} s)")
    if mean < args.min_return:
        print(f"not shipped: mean {mean:.2f} < --min-return {args.min_return}")
        return 1

    # the network load_policy already read: the checkpoint (with its replay, for `last`,
    # hundreds of MB) is not read a second time
    online = with_prefix("online", network.state_dict())
    card = {
        **sidecar,
        "frames": sidecar["step"] * FRAME_SKIP,
        "evaluation": {
            "protocol": f"up to 30 no-op starts, epsilon {EVAL_EPSILON}, full games (no "
                        "episodic life), raw scores, 108,000-frame cap (Wang et al., 2016)",
            "episodes": args.episodes, "seed": args.seed,
            "returns": [float(r) for r in returns], "mean": round(mean, 3),
            "std": round(std, 3),
        },
        "export": provenance(device="cpu", wall_time_s=wall, run=str(args.run)),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = save_checkpoint(args.out / args.name, online, card)
    for log in ("metrics", "eval"):
        if (args.run / f"{log}.csv").exists():
            copy_log(args.run / f"{log}.csv", args.out / f"{args.name}_{log}.csv",
                     last_step=sidecar["step"])
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB) and {args.name}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
